"""Several HTTP clients transfer the same capped asset at once: the service decides them as some
one-at-a-time run would (the one in commit order), and the cap never overshoots."""

import itertools
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledger import Ledger
from ledger.http.roles import Role
from ledger.outcomes import Outcome
from tests.concurrency.store import assert_serial_replay_identical, recorded_requests
from tests.http.server import Server, fresh_store
from tests.support import at, command

ASSET = "HOT"
UPPER_LIMIT = Decimal("20000")  # U; F = 3,000 USDT at price 1: bands B and C admit 3,000 at most
CLIENTS = 4
TRANSFERS_PER_CLIENT = 12
SIZES = ["500", "1000", "1500", "2500", "3000", "4000"]
READS = 20
JOIN_SECONDS = 120


def test_concurrent_clients_never_overshoot_and_equal_a_serial_run(
    server: Server, tmp_path: Path
) -> None:
    setup = [
        command("list_asset", "s1", asset="USDT", collateral_rank=1),
        command("list_asset", "s2", asset=ASSET, collateral_rank=9),
        command(
            "set_collateral_cap",
            "s3",
            asset=ASSET,
            upper_limit=str(UPPER_LIMIT),
            fixed_quota_usdt="3000",
        ),
        command("mark_prices", "s4", prices={ASSET: "1"}),
    ]
    with server.client(Role.ADMIN) as admin:
        assert admin.post("/v1/commands:batch", json=setup).status_code == 200
    plans = [
        [_transfer(client, number) for number in range(TRANSFERS_PER_CLIENT)]
        for client in range(CLIENTS)
    ]
    answers: list[list[dict[str, Any]]] = [[] for _ in range(CLIENTS)]
    totals_seen: list[Decimal] = []
    start = threading.Barrier(CLIENTS + 1)

    def run(client: int) -> None:
        with server.client(Role.SERVICE) as http:
            start.wait()
            for data in plans[client]:
                answer = http.post("/v1/commands", json=data)
                assert answer.status_code == 200, answer.text
                answers[client].append(answer.json())

    def read() -> None:
        """Reads beside the writes: the read side's catch-up is shared by the server's threads."""
        with server.client(Role.AUDITOR) as http:
            start.wait()
            for _ in range(READS):
                answer = http.get("/v1/assets")
                assert answer.status_code == 200, answer.text
                (view,) = [a for a in answer.json() if a["asset"] == ASSET]
                totals_seen.append(Decimal(view["total"]))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENTS)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads)
    assert [len(a) for a in answers] == [TRANSFERS_PER_CLIENT] * CLIENTS
    assert len(totals_seen) == READS and all(t <= UPPER_LIMIT for t in totals_seen)
    assert totals_seen == sorted(totals_seen)  # transfers in only: T never goes back

    with Ledger(server.url) as ledger:
        recorded = recorded_requests(ledger)
    sent = [data["request_id"] for plan in plans for data in plan]
    transfers = [r for r in recorded if r.command_type == "transfer_in"]
    assert sorted(r.request_id for r in transfers) == sorted(sent)  # each once, none lost
    # The clients really ran at the same time: their commits interleave in the log.
    clients = [r.request_id.split("-")[0] for r in transfers]
    assert sum(a != b for a, b in itertools.pairwise(clients)) >= CLIENTS, clients
    by_id = {r.request_id: Outcome.model_validate(r.outcome).to_json_dict() for r in transfers}
    for outcomes in answers:
        for outcome in outcomes:
            assert outcome == by_id[outcome["request_id"]]  # what was answered is what was recorded
    # Zero overshoot: every accepted transfer fit under U, and so does the total now.
    accepted = [r.outcome for r in transfers if r.outcome["status"] == "accepted"]
    assert accepted and len(accepted) < len(transfers)
    for outcome in accepted:
        context = outcome["context"]
        assert Decimal(context["total"]) + Decimal(context["requested"]) <= UPPER_LIMIT
    total = sum(
        Decimal(r.command["quantity"]) for r in transfers if r.outcome["status"] == "accepted"
    )
    assert total <= UPPER_LIMIT
    with server.client(Role.AUDITOR) as auditor:
        (view,) = [a for a in auditor.get("/v1/assets").json() if a["asset"] == ASSET]
    assert Decimal(view["total"]) == total
    # The cap was in play (which of B, C and D the race visits depends on the interleaving).
    bands = {r.outcome["context"]["band"] for r in transfers}
    assert "A" in bands and bands & {"B", "C", "D"}, bands
    assert any(r.outcome.get("reason") == "collateral_cap" for r in transfers)
    # The same commands one at a time, in commit order, on a fresh store: the same outcomes.
    backend = "postgres" if server.url.startswith("postgresql") else "sqlite"
    with fresh_store(backend, tmp_path) as url:
        assert_serial_replay_identical(recorded, url)


def _transfer(client: int, number: int) -> dict[str, Any]:
    return {
        "type": "transfer_in",
        "request_id": f"c{client}-t{number}",
        "user": f"c{client}-u{number % 3}",
        "account": "cross",
        "asset": ASSET,
        "quantity": SIZES[(client + number) % len(SIZES)],
        "effective_at": at(10),  # given, so a replay decides at the same business time
    }
