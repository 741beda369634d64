"""`ledger verify --decisions` (ledger/audit/decisions.py) on both backends: every recorded
request decided again, in log order, against a scratch store, and the cap invariant over
history (no capped pool's T past U through a transfer-in or a top-up).

The rich history (`build_history`, all through the normal commands, times after T0 =
2026-03-02T09:00Z): USDT (2 decimals), ABC (rank 8, 2 decimals, capped at U = 6,000 with a
fixed quota of 500 USDT, price 1) and BTC (rank 2, price 20,000); USDT and BTC lend.
- minute 1: the insurance fund gets 100 USDT;
- minutes 2-7: u1 and u2 open leveraged longs (1,000 ABC in, 1,500 / 1,000 USDT borrowed and
  bought ABC with): T = 4,500; u2 turns auto top-up on from ABC;
- minutes 9-11: u3:portfolio brings 200 ABC (T = 4,700), borrows 50 USDT, and a 1 USDT borrow
  is refused (below_min_borrow);
- minutes 12-17: transfers walk ABC through the bands: u4 100 (T = 4,800, band A -> B), u5 500
  in band B (T = 5,300), u6 300 (T = 5,600, band C), u7 500 refused in band C (q_max 400), u7
  400 (T = 6,000 = U, band D), u8 1 refused in band D (q_max 0); u8's isolated ABCUSDT account
  takes 50 ABC outside the totals;
- minutes 19-23: a client-channel first transfer waits for facial verification and completes,
  an api one is refused by the opening risk check, another client one fails verification;
- minutes 24-28: u13 is refused Pro (quiz), qualifies, switches to Pro and back to Classic 5x;
- minutes 30-34: u14 buys BTC with an auto-borrow of USDT; u4 transfers 50 ABC out; u1's
  transfer-out of 2,000 ABC is refused (margin level);
- minute 125: the interest job; minute 130: u3 repays 20 USDT; minute 131: u14 sells BTC with
  an auto-repay;
- minute 140: ABC crashes to 0.65; minute 150: `check_margins` liquidates u1 (T falls back to
  band A) and margin-calls u2, whose auto top-up is limited by its 200 ABC spot wallet;
- last: a command without effective_at (decided at the clock's time, which the verification
  must take from the recorded outcome).

Wrong decisions are made in SQL (past the append-only triggers: SQLite drops them in the same
connection, PostgreSQL sets session_replication_role = replica as postgres), or forged through
the domain aggregates (no rules). Every verification watches its scratch store: a
`ledger-reconcile-*` folder in the temporary directory or a `reconcile_<hex>` schema, which
exists while the requests are decided again and is gone afterwards.

Bugs found (strict xfail, see each test): a job stopped half-way and run again is reported as a
wrong decision; an auto top-up past U is not a cap overshoot (its movement is "auto_top_up",
the check looks for "top_up"); a report that stops at a wrong decision says no pool passed U;
a forged Request without an outcome context crashes the verification (KeyError).
"""

import contextlib
import importlib
import json
import os
import re
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.utils import get_topic

from ledger import Ledger, jobs
from ledger.audit import reconcile as reconcile_module
from ledger.audit.chain import GENESIS, ChainedRecord, link_of
from ledger.audit.decisions import DecisionReport, cap_overshoots, verify_decisions
from ledger.audit.verify import head_digest, verify_chain
from ledger.commands import parse_command
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import Stamp
from ledger.domain.request import Request, payload_digest
from ledger.handlers.interest import settle_interest
from ledger.outcomes import Outcome, Status
from ledger.persistence import env_for_url
from tests.cli.cli_support import EXIT_INVALID, EXIT_OK, invoke, json_lines, ledger_script, submit
from tests.conftest import POSTGRES_URL
from tests.support import T0, at, command, run, setup_capped_asset, transfer_in

for _module in ("audit", "simulate"):  # `verify` and `simulate` register on the app on import
    importlib.import_module(f"ledger.cli.{_module}")

EXIT_WRONG = 1
HISTORY_COMMANDS = {  # every command type the rich history runs
    "list_asset",
    "set_collateral_cap",
    "mark_prices",
    "set_borrow_terms",
    "fund_insurance",
    "transfer_in",
    "complete_verification",
    "transfer_out",
    "borrow",
    "repay",
    "accrue_interest",
    "settle_trade",
    "set_auto_top_up",
    "record_pro_quiz",
    "agree_pro_terms",
    "set_pro_jurisdiction",
    "switch_mode",
    "check_margins",
}
# _first_difference's wording: "<field path>: recorded <json>, decided now <json>"
PROBLEM = re.compile(
    r"^(?P<path>[a-z_.]+): recorded (?P<recorded>.*), decided now (?P<decided>.*)$"
)


# --- the rich history ----------------------------------------------------------------------------


@dataclass
class History:
    url: str
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # request id -> command
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def do(
        self, ledger: Ledger, data: dict[str, Any], status: str, reason: str | None = None
    ) -> Outcome:
        outcome = run(ledger, data)
        assert (outcome.status, outcome.reason) == (status, reason), outcome
        self.sent[data["request_id"]] = data
        self.outcomes[data["request_id"]] = outcome
        return outcome


def build_history(ledger: Ledger, url: str) -> History:
    h = History(url)

    def ok(type_: str, minute: float, request_id: str | None = None, **fields: Any) -> Outcome:
        return h.do(
            ledger, command(type_, request_id, effective_at=at(minute), **fields), "accepted"
        )

    def refused(
        type_: str, minute: float, reason: str, request_id: str | None = None, **fields: Any
    ) -> Outcome:
        data = command(type_, request_id, effective_at=at(minute), **fields)
        return h.do(ledger, data, "rejected", reason)

    for asset, rank, decimals in (("USDT", 1, 2), ("ABC", 8, 2), ("BTC", 2, 8)):
        ok("list_asset", 0, asset=asset, collateral_rank=rank, quantity_decimals=decimals)
    ok("set_collateral_cap", 0, asset="ABC", upper_limit="6000", fixed_quota_usdt="500")
    ok("mark_prices", 0, prices={"ABC": "1", "BTC": "20000"})
    ok("set_borrow_terms", 0, asset="USDT", hourly_interest_rate="0.0001")
    ok("set_borrow_terms", 0, asset="BTC", hourly_interest_rate="0.00001")
    ok("fund_insurance", 1, amount_usdt="100", actor="admin:treasury")
    for user, minute, borrowed in (("u1", 2, "1500"), ("u2", 5, "1000")):
        where = {"user": user, "account": "cross"}
        ok("transfer_in", minute, **where, asset="ABC", quantity="1000")
        ok("borrow", minute + 1, **where, asset="USDT", quantity=borrowed)
        trade = {"sell_asset": "USDT", "sell_quantity": borrowed, "buy_asset": "ABC"}
        trade |= {"buy_quantity": borrowed, "fee_asset": "USDT", "fee_quantity": "0"}
        ok("settle_trade", minute + 2, **where, **trade)
    ok("set_auto_top_up", 8, user="u2", account="cross", enabled=True, asset="ABC")
    u3 = {"user": "u3", "account": "portfolio"}
    ok("transfer_in", 9, **u3, asset="ABC", quantity="200")
    ok("borrow", 10, **u3, asset="USDT", quantity="50")
    refused("borrow", 11, "below_min_borrow", **u3, asset="USDT", quantity="1")

    def abc_in(
        user: str, quantity: str, minute: float, request_id: str | None = None
    ) -> dict[str, Any]:
        return command(
            "transfer_in",
            request_id,
            effective_at=at(minute),
            user=user,
            account="cross",
            asset="ABC",
            quantity=quantity,
        )

    bands = [("A", "100"), ("B", "500"), ("B", "500"), ("C", "400"), ("C", "400"), ("D", "0")]
    for (user, quantity, minute, request_id, status), (band, q_max) in zip(
        [
            ("u4", "100", 12, "t-band-a", "accepted"),
            ("u5", "500", 13, "t-band-b", "accepted"),
            ("u6", "300", 14, None, "accepted"),
            ("u7", "500", 15, "refused-band-c", "rejected"),
            ("u7", "400", 16, None, "accepted"),
            ("u8", "1", 17, "refused-band-d", "rejected"),
        ],
        bands,
        strict=True,
    ):
        reason = "collateral_cap" if status == "rejected" else None
        outcome = h.do(ledger, abc_in(user, quantity, minute, request_id), status, reason)
        assert (outcome.context["band"], outcome.context["q_max"]) == (band, q_max), outcome
    isolated = {"user": "u8", "account": "isolated:ABCUSDT"}
    ok("transfer_in", 18, **isolated, asset="ABC", quantity="50")

    flagged = {"account": "cross", "asset": "USDT", "quantity": "100", "risk_flagged": True}
    data = command("transfer_in", "t-pend", effective_at=at(19), user="u10", channel="client")
    h.do(ledger, data | flagged, "pending")
    done = ok(
        "complete_verification",
        20,
        user="u10",
        account="cross",
        transfer_request_id="t-pend",
        passed=True,
    )
    assert done.context["transfer"] == "completed"
    refused("transfer_in", 21, "opening_risk_check", user="u11", **flagged)
    data = command("transfer_in", "t-fail", effective_at=at(22), user="u12", channel="client")
    h.do(ledger, data | flagged, "pending")
    failed = ok(
        "complete_verification",
        23,
        user="u12",
        account="cross",
        transfer_request_id="t-fail",
        passed=False,
    )
    assert failed.context["transfer"] == "cancelled"

    ok("transfer_in", 24, user="u13", account="cross", asset="USDT", quantity="6000")
    refused("switch_mode", 25, "pro_quiz_not_passed", user="u13", to="pro")
    ok("record_pro_quiz", 26, user="u13", passed=True)
    ok("agree_pro_terms", 26, user="u13")
    ok("set_pro_jurisdiction", 26, user="u13", supported=True)
    ok("switch_mode", 27, user="u13", to="pro")
    ok("switch_mode", 28, user="u13", to="classic_5x")

    u14 = {"user": "u14", "account": "cross"}
    ok("transfer_in", 30, **u14, asset="USDT", quantity="10")
    ok("transfer_in", 31, **u14, asset="BTC", quantity="1")
    buy = {"sell_asset": "USDT", "sell_quantity": "30", "buy_asset": "BTC"}
    buy |= {"buy_quantity": "0.0015", "fee_asset": "BTC", "fee_quantity": "0.0000015"}
    bought = ok("settle_trade", 32, **u14, **buy, auto_borrow=True)
    assert bought.context["auto_borrowed"] == "20", bought
    ok("transfer_out", 33, user="u4", account="cross", asset="ABC", quantity="50")
    refused(
        "transfer_out", 34, "margin_level", user="u1", account="cross", asset="ABC", quantity="2000"
    )

    accrual = ok("accrue_interest", 125, "accrual-1", until=at(125))
    assert accrual.context["hours_charged"] > 0, accrual
    ok("repay", 130, **u3, asset="USDT", quantity="20")
    sell = {"sell_asset": "BTC", "sell_quantity": "0.0011", "buy_asset": "USDT"}
    sell |= {"buy_quantity": "22", "fee_asset": "USDT", "fee_quantity": "0.02"}
    sold = ok("settle_trade", 131, **u14, **sell, auto_repay=True)
    assert sold.context["auto_repaid_principal"] == "20", sold

    ok("mark_prices", 140, prices={"ABC": "0.65"})
    sweep = ok("check_margins", 150, "sweep-1", spot_available={"u2:cross": {"ABC": "200"}})
    assert (sweep.context["margin_calls"], sweep.context["liquidations"]) == (1, 1), sweep
    assert sweep.context["top_ups"] == {"topped_up": 0, "limited": 1, "blocked": 0}, sweep

    now = {"type": "record_pro_quiz", "request_id": "quiz-now", "user": "late", "passed": True}
    h.do(ledger, now, "accepted")
    return h


@pytest.fixture
def history(database_url: str) -> History:
    with Ledger(database_url) as ledger:
        return build_history(ledger, database_url)


def request_positions(ledger: Ledger) -> dict[str, int]:
    """Every Request.Recorded in the log: request id -> log position, in log order."""
    notifications = ledger.recorder.select_notifications(
        start=0, limit=100_000, topics=[get_topic(Request.Recorded)], inclusive_of_start=False
    )
    return {ledger.mapper.to_domain_event(n).request_id: n.id for n in notifications}


def positions_before(positions: dict[str, int], position: int) -> int:
    return sum(1 for p in positions.values() if p < position)


# --- the scratch stores --------------------------------------------------------------------------


def postgres_schemas(pattern: str) -> set[str]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
            (pattern,),
        ).fetchall()
    return {row[0] for row in rows}


def scratch_exists(env: dict[str, str]) -> bool:
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        return env["POSTGRES_SCHEMA"] in postgres_schemas("reconcile%")
    return Path(env["SQLITE_DBNAME"]).exists()


@dataclass
class Scratch:
    """Every scratch store verify_decisions makes: whether it existed while in use, and that it
    is gone afterwards."""

    temp_dir: Path
    made: list[dict[str, str]] = field(default_factory=list)
    in_use: list[bool] = field(default_factory=list)

    def assert_removed(self, count: int) -> None:
        assert len(self.made) == count, self.made
        assert self.in_use == [True] * count
        for env in self.made:
            if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
                schema = env["POSTGRES_SCHEMA"]
                assert re.fullmatch(r"reconcile_[0-9a-f]{16}", schema), schema
                assert schema not in postgres_schemas("reconcile_%"), schema
            else:
                folder = Path(env["SQLITE_DBNAME"]).parent
                assert folder.parent == self.temp_dir, folder
                assert folder.name.startswith("ledger-reconcile-"), folder
                assert not folder.exists(), folder
        assert list(self.temp_dir.glob("ledger-reconcile-*")) == []


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scratch:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))  # gettempdir() answers this
    watcher = Scratch(temp_dir)
    real_scratch_env = reconcile_module.scratch_env

    @contextlib.contextmanager
    def watched(ledger: Ledger) -> Iterator[dict[str, str]]:
        with real_scratch_env(ledger) as env:
            watcher.made.append(env)
            yield env
            watcher.in_use.append(scratch_exists(env))

    monkeypatch.setattr(reconcile_module, "scratch_env", watched)
    return watcher


# --- running the verification --------------------------------------------------------------------


def verify(url: str) -> DecisionReport:
    """verify_decisions on a freshly opened Ledger; the log itself is left as it was."""
    with Ledger(url) as ledger:
        head = head_digest(ledger)
        report = verify_decisions(ledger)
        assert head_digest(ledger) == head, "verifying wrote to the verified store"
    return report


def verify_cli(url: str) -> tuple[int, dict[str, Any]]:
    result = invoke("verify", "--decisions", "--db", url, "--json", "--quiet")
    [document] = json_lines(result.stdout)
    return result.exit_code, document


def verify_cli_text(url: str) -> tuple[int, str]:
    result = invoke("verify", "--decisions", "--db", url, "--quiet")
    return result.exit_code, result.stdout


def assert_names_the_difference(report: DecisionReport, path: str) -> None:
    """The problem names `path` (dotted), and the two values it quotes are the recorded and the
    decided values there, which differ."""
    assert report.problem is not None
    match = PROBLEM.match(report.problem)
    assert match is not None, report.problem
    assert match["path"] == path, report.problem
    recorded: Any = report.recorded
    decided: Any = report.decided
    for key in path.split("."):
        recorded, decided = recorded.get(key), decided.get(key)
    assert recorded != decided
    assert (json.loads(match["recorded"]), json.loads(match["decided"])) == (recorded, decided)


def says_wrong_at(text: str, position: int) -> bool:
    return "WRONG" in text and re.search(rf"first bad position\W+{position}\b", text) is not None


# --- direct database access ----------------------------------------------------------------------


@dataclass
class Raw:
    """A connection straight to the store, past the append-only triggers."""

    connection: Any
    is_postgres: bool
    schema: str = ""

    def execute(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.is_postgres:
            names = {
                "events": f'"{self.schema}"."ledger_events"',
                "chain": f'"{self.schema}"."event_chain"',
                "pos": "notification_id",
            }
            text = text.format(**names).replace("?", "%s")
        else:
            text = text.format(events="stored_events", chain="event_chain", pos="rowid")
        cursor = self.connection.execute(text, params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def state(self, position: int) -> bytes:
        [(state,)] = self.execute("SELECT state FROM {events} WHERE {pos} = ?", (position,))
        return bytes(state)

    def set_state(self, position: int, state: bytes) -> None:
        self.execute("UPDATE {events} SET state = ? WHERE {pos} = ?", (state, position))

    def relink_from(self, position: int) -> None:
        """Write the chain's links again from `position` on, with chain.py's own formula: the
        chain then verifies intact over the altered log."""
        rows = self.execute(
            "SELECT hash FROM {chain} WHERE position < ? ORDER BY position DESC LIMIT 1",
            (position,),
        )
        previous = rows[0][0] if rows else GENESIS
        events = self.execute(
            "SELECT {pos}, originator_id, originator_version, topic, state FROM {events} "
            "WHERE {pos} >= ? ORDER BY {pos}",
            (position,),
        )
        for at_position, originator_id, version, topic, state in events:
            record = ChainedRecord(
                position=int(at_position),
                originator_id=UUID(str(originator_id)),
                originator_version=int(version),
                topic=str(topic),
                state=bytes(state),
            )
            previous = link_of(previous, record)
            self.execute("UPDATE {chain} SET hash = ? WHERE position = ?", (previous, at_position))


@contextlib.contextmanager
def tamper(url: str) -> Iterator[Raw]:
    """SQLite: DROP TRIGGER in this connection; PostgreSQL: session_replication_role = replica
    as postgres. Committed on a clean exit."""
    env = env_for_url(url)
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        connection = sqlite3.connect(env["SQLITE_DBNAME"])
        try:
            triggers = connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name IN ('stored_events', 'event_chain')"
            ).fetchall()
            assert len(triggers) == 6, triggers
            for (name,) in triggers:
                connection.execute(f"DROP TRIGGER {name}")
            yield Raw(connection, is_postgres=False)
            connection.commit()
        finally:
            connection.close()
        return
    with psycopg.connect(POSTGRES_URL) as connection:
        connection.execute("SET session_replication_role = replica")
        yield Raw(connection, is_postgres=True, schema=env["POSTGRES_SCHEMA"])


def edit_outcome(
    url: str, position: int, edit: Callable[[dict[str, Any]], None], *, relink: bool
) -> None:
    """Change the recorded outcome inside a Request.Recorded's stored JSON."""
    with tamper(url) as db:
        data = json.loads(db.state(position))
        assert data["originator_topic"].endswith(":Request"), data
        edit(data["outcome"])
        db.set_state(position, json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
        if relink:
            db.relink_from(position)


# --- forging through the aggregates ---------------------------------------------------------------


def stamp(minute: float, request_id: str, actor: str = "user:forger") -> Stamp:
    return Stamp(effective_at=T0 + timedelta(minutes=minute), actor=actor, request_id=request_id)


@dataclass(frozen=True)
class Forged:
    pool_position: int  # the AssetPool.TotalIncreased
    pool_event_id: str
    request_position: int  # the Request.Recorded


def forge_accepted_transfer(
    ledger: Ledger, *, user: str, quantity: str, minute: float, request_id: str
) -> Forged:
    """A transfer-in of ABC written through MarginAccount and AssetPool (no rules), with a
    Request whose outcome says accepted, saved with ledger.save."""
    given = stamp(minute, request_id, actor=f"user:{user}")
    account = MarginAccount.register(user=user, account="cross", pair_assets=(), stamp=given)
    account.open(transfer_request_id=request_id, stamp=given)
    decision = {"asset": "ABC", "requested": quantity, "band": "A"}
    account.transfer_in(asset="ABC", quantity=Decimal(quantity), decision=decision, stamp=given)
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    pool.increase(
        account_id=f"{user}:cross",
        movement="transfer_in",
        quantity=Decimal(quantity),
        decision=decision,
        stamp=given,
    )
    data = command(
        "transfer_in",
        request_id,
        effective_at=at(minute),
        user=user,
        account="cross",
        asset="ABC",
        quantity=quantity,
    )
    parsed = parse_command(data)
    request_event = f"{Request.create_id(request_id)}:1"
    outcome = Outcome(
        request_id=request_id,
        status=Status.ACCEPTED,
        account=f"{user}:cross",
        events=[*account.pending_event_ids(), *pool.pending_event_ids(), request_event],
        context=decision | {"effective_at": at(minute)},
    )
    request = Request.record(
        command_type="transfer_in",
        command=parsed.model_dump(mode="json"),
        digest=payload_digest(parsed.payload_digest_source()),
        outcome=outcome.model_dump(mode="json"),
        stamp=given,
    )
    [pool_event_id] = pool.pending_event_ids()
    [*_account, pool_recording, request_recording] = ledger.save(account, pool, request)
    return Forged(
        pool_position=pool_recording.notification.id,
        pool_event_id=pool_event_id,
        request_position=request_recording.notification.id,
    )


def small_market(ledger: Ledger) -> None:
    """ABC capped at U = 1,000 (price 1): u1 500 accepted, u2 400 refused (band A, q_max 300)."""
    setup_capped_asset(ledger, upper_limit="1000")
    assert transfer_in(ledger, "u1", "500", effective_at=at(1)).is_accepted
    refused = transfer_in(ledger, "u2", "400", effective_at=at(2))
    assert (refused.reason, refused.context["q_max"]) == ("collateral_cap", "300"), refused


# --- 1. a right history --------------------------------------------------------------------------


def test_a_rich_history_verifies_right_through_the_api_and_the_cli(
    history: History, scratch: Scratch
) -> None:
    url = history.url
    with Ledger(url) as ledger:
        positions = request_positions(ledger)
    assert list(positions)[-1] == "quiz-now"
    assert set(positions) == set(history.sent), "every command recorded exactly once"
    kinds = {data["type"] for data in history.sent.values()}
    assert kinds == HISTORY_COMMANDS

    report = verify(url)
    assert report == DecisionReport(
        is_right=True,
        requests_checked=len(positions),
        first_bad_position=None,
        request_id=None,
        problem=None,
        cap_overshoots=[],
    )
    scratch.assert_removed(1)

    code, document = verify_cli(url)
    assert code == EXIT_OK, document
    assert document["decisions"] == report.model_dump(mode="json")
    assert document["chain"]["is_intact"] is True
    assert document["chain"]["events_checked"] == max(positions.values())
    code, text = verify_cli_text(url)
    assert code == EXIT_OK, text
    assert "right" in text and "WRONG" not in text
    scratch.assert_removed(3)

    # The console script, the way an operator runs it; its SQLite scratch goes to TMPDIR.
    temp_dir = scratch.temp_dir / "script"
    temp_dir.mkdir()
    done = subprocess.run(
        [str(ledger_script()), "verify", "--decisions", "--db", url, "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"TMPDIR": str(temp_dir)},
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["decisions"] == report.model_dump(mode="json")
    assert list(temp_dir.iterdir()) == []


def test_a_simulated_store_verifies_right(database_url: str, scratch: Scratch) -> None:
    simulated = invoke(
        "simulate", "--db", database_url, "--accounts", "40", "--hours", "12", "--quiet", "--json"
    )
    assert simulated.exit_code == EXIT_OK, simulated.stderr
    with Ledger(database_url) as ledger:
        requests = len(request_positions(ledger))
        head = ledger.recorder.max_notification_id()
    assert requests > 100

    code, document = verify_cli(database_url)

    assert code == EXIT_OK, document
    assert document["chain"]["is_intact"] is True
    assert document["chain"]["events_checked"] == head
    assert document["decisions"]["is_right"] is True
    assert document["decisions"]["requests_checked"] == requests
    assert document["decisions"]["cap_overshoots"] == []
    scratch.assert_removed(1)


# --- 2. wrong decisions --------------------------------------------------------------------------


def test_a_refusal_whose_q_max_was_altered_is_found_though_the_relinked_chain_is_intact(
    history: History, scratch: Scratch
) -> None:
    """The band C refusal said q_max 400; the stored JSON now says 500 and every link from there
    on is recomputed: the chain cannot tell, the re-execution can."""
    url = history.url
    with Ledger(url) as ledger:
        positions = request_positions(ledger)
    position = positions["refused-band-c"]

    def raise_q_max(outcome: dict[str, Any]) -> None:
        assert outcome["context"]["q_max"] == "400"
        outcome["context"]["q_max"] = "500"

    edit_outcome(url, position, raise_q_max, relink=True)

    with Ledger(url) as ledger:
        assert verify_chain(ledger).is_intact
        assert (
            ledger.get_aggregate(Request, Request.create_id("refused-band-c")).outcome["context"][
                "q_max"
            ]
            == "500"
        )
    report = verify(url)
    assert not report.is_right
    assert report.first_bad_position == position
    assert report.request_id == "refused-band-c"
    assert report.requests_checked == positions_before(positions, position)
    assert_names_the_difference(report, "context.q_max")
    assert report.problem == 'context.q_max: recorded "500", decided now "400"'
    assert report.recorded is not None and report.decided is not None
    assert report.recorded["status"] == report.decided["status"] == "rejected"
    scratch.assert_removed(1)

    code, document = verify_cli(url)
    assert code == EXIT_WRONG, document
    assert document["chain"]["is_intact"] is True
    assert document["decisions"] == report.model_dump(mode="json")
    code, text = verify_cli_text(url)
    assert code == EXIT_WRONG
    assert says_wrong_at(text, position), text
    scratch.assert_removed(3)


def test_an_accepted_transfer_recorded_as_rejected_is_found(
    history: History, scratch: Scratch
) -> None:
    """The chain is left as it was: both checks name the same position."""
    url = history.url
    with Ledger(url) as ledger:
        positions = request_positions(ledger)
    position = positions["t-band-b"]

    def reject(outcome: dict[str, Any]) -> None:
        assert outcome["status"] == "accepted"
        outcome["status"] = "rejected"

    edit_outcome(url, position, reject, relink=False)

    report = verify(url)
    assert (report.is_right, report.first_bad_position) == (False, position)
    assert report.request_id == "t-band-b"
    assert report.requests_checked == positions_before(positions, position)
    assert_names_the_difference(report, "status")
    assert report.problem == 'status: recorded "rejected", decided now "accepted"'
    code, document = verify_cli(url)
    assert code == EXIT_WRONG
    assert document["chain"]["is_intact"] is False
    assert document["chain"]["first_bad_position"] == position
    assert document["decisions"] == report.model_dump(mode="json")
    scratch.assert_removed(2)


def test_a_history_forged_through_the_aggregates_is_found(
    database_url: str, scratch: Scratch
) -> None:
    """u9 transfers in 900 ABC at T = 500, U = 1,000 (q_max 300): written straight through
    MarginAccount.transfer_in and AssetPool.increase, with a Request saying accepted. A later,
    genuine command follows."""
    with Ledger(database_url) as ledger:
        small_market(ledger)
        forged = forge_accepted_transfer(
            ledger, user="u9", quantity="900", minute=3, request_id="forged-1"
        )
        later = transfer_in(ledger, "u3", "10", effective_at=at(4))
        assert (later.reason, later.context["band"]) == ("collateral_cap", "D")
        positions = request_positions(ledger)
        assert verify_chain(ledger).is_intact  # saved by the ledger: links and all

        overshoots = cap_overshoots(ledger)
    request_position = forged.request_position
    assert forged.pool_position < request_position
    assert overshoots == [
        {
            "position": str(forged.pool_position),
            "event_id": forged.pool_event_id,
            "account": "u9:cross",
            "platform_total_after": "1400",
            "upper_limit": "1000",
        }
    ]

    report = verify(database_url)
    assert not report.is_right
    assert (report.first_bad_position, report.request_id) == (request_position, "forged-1")
    assert report.requests_checked == positions_before(positions, request_position)
    assert report.recorded is not None and report.decided is not None
    assert report.recorded["status"] == "accepted"
    assert (report.decided["status"], report.decided["reason"]) == ("rejected", "collateral_cap")
    assert report.decided["context"]["q_max"] == "300"
    path = PROBLEM.match(report.problem or "")
    assert path is not None, report.problem
    assert_names_the_difference(report, path["path"])
    code, document = verify_cli(database_url)
    assert code == EXIT_WRONG
    assert document["chain"]["is_intact"] is True
    assert document["decisions"]["first_bad_position"] == request_position
    scratch.assert_removed(2)


def test_a_pool_forged_past_u_without_a_request_fails_on_the_cap_invariant(
    database_url: str, scratch: Scratch
) -> None:
    """Every decision is right (the forgery has no Request), but T passed U by a transfer-in."""
    with Ledger(database_url) as ledger:
        small_market(ledger)
        given = stamp(3, "no-request")
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
        pool.increase(
            account_id="u9:cross",
            movement="transfer_in",
            quantity=Decimal(600),
            decision=None,
            stamp=given,
        )
        [recording] = ledger.save(pool)
        requests = len(request_positions(ledger))
    position = recording.notification.id

    report = verify(database_url)
    assert not report.is_right
    assert report.requests_checked == requests
    assert report.first_bad_position == position
    assert report.request_id is None
    assert [
        (o["position"], o["platform_total_after"], o["upper_limit"]) for o in report.cap_overshoots
    ] == [(str(position), "1100", "1000")]
    assert report.problem is not None
    assert "1100" in report.problem and "1000" in report.problem
    code, document = verify_cli(database_url)
    assert code == EXIT_WRONG
    assert document["decisions"] == report.model_dump(mode="json")
    scratch.assert_removed(2)


# --- 3. invalid commands and duplicates ----------------------------------------------------------


def test_invalid_commands_and_duplicates_later_do_not_disturb_the_verification(
    history: History, scratch: Scratch
) -> None:
    url = history.url
    with Ledger(url) as ledger:
        before = request_positions(ledger)
        head = ledger.recorder.max_notification_id()
    again = [
        history.sent[r]
        for r in ("t-band-b", "refused-band-c", "t-pend", "accrual-1", "sweep-1", "quiz-now")
    ]
    reused = history.sent["t-band-b"] | {"quantity": "1"}
    backdated = command(
        "transfer_out", effective_at=at(5), user="u4", account="cross", asset="ABC", quantity="1"
    )
    unknown = command(
        "complete_verification",
        effective_at=at(200),
        user="u1",
        account="cross",
        transfer_request_id="nope",
        passed=True,
    )
    negative = command(
        "transfer_in", effective_at=at(200), user="u1", account="cross", asset="ABC", quantity="-5"
    )
    new = command(
        "transfer_in",
        "new-1",
        effective_at=at(200),
        user="u13",
        account="cross",
        asset="USDT",
        quantity="1",
    )

    submitted = submit(url, [*again, "{not json", reused, backdated, unknown, negative, new])

    assert submitted.exit_code == EXIT_INVALID, submitted
    duplicates, invalid, [accepted] = (
        submitted.outcomes[: len(again)],
        submitted.outcomes[len(again) : -1],
        submitted.outcomes[-1:],
    )
    assert duplicates == [
        history.outcomes[d["request_id"]].to_json_dict() | {"duplicate": True} for d in again
    ]
    assert [o["status"] for o in invalid] == ["invalid"] * 5
    assert [[e["field"] for e in o["errors"]] for o in invalid] == [
        ["line"],
        ["request_id"],
        ["effective_at"],
        ["transfer_request_id"],
        ["quantity"],
    ]
    assert (accepted["status"], accepted["request_id"]) == ("accepted", "new-1")
    with Ledger(url) as ledger:
        after = request_positions(ledger)
        # The one new command added its account's event and its Request, nothing else.
        assert ledger.recorder.max_notification_id() == head + 2
    assert list(after) == [*before, "new-1"]
    assert {k: after[k] for k in before} == before

    report = verify(url)
    assert report.is_right, report
    assert report.requests_checked == len(before) + 1
    code, document = verify_cli(url)
    assert code == EXIT_OK, document
    assert document["decisions"] == report.model_dump(mode="json")
    scratch.assert_removed(2)


# --- bugs ---------------------------------------------------------------------------------------


def test_a_job_stopped_half_way_and_run_again_verifies_right(database_url: str) -> None:
    """jobs.py: each account's part of a job is saved on its own and the Request last; a job
    stopped half-way is run again with the same request_id and does not charge twice. Here the
    interest job saved its first account's hours (the job's own per-account step), stopped, and
    was run again: its Request says 1 account charged, which is what happened."""
    with Ledger(database_url) as ledger:
        assert run(ledger, command("list_asset", asset="USDT", collateral_rank=1)).is_accepted
        terms = command("set_borrow_terms", asset="USDT", hourly_interest_rate="0.0001")
        assert run(ledger, terms).is_accepted
        for user in ("u1", "u2"):
            assert transfer_in(ledger, user, "1000", asset="USDT", effective_at=at(1)).is_accepted
            loan = command(
                "borrow",
                user=user,
                account="cross",
                asset="USDT",
                quantity="100",
                effective_at=at(2),
            )
            assert run(ledger, loan).is_accepted
        job = parse_command(
            command("accrue_interest", "job-1", until=at(180), effective_at=at(180))
        )
        first = next(iter(jobs.borrower_ids(ledger)))
        list(
            jobs.on_accounts(
                ledger,
                job,
                [first],
                lambda unit, a: settle_interest(unit, a, job.until),
                stop_on_invalid=True,
            )
        )
        rerun = ledger.execute(job)
        assert (rerun.context["accounts_charged"], rerun.context["hours_charged"]) == (1, 3)

    report = verify(database_url)

    assert report.is_right, report.problem


def test_an_auto_top_up_forged_past_u_is_a_cap_overshoot(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        small_market(ledger)
        given = stamp(3, "forged-top-up", actor="job:risk")
        account = ledger.get_aggregate(MarginAccount, MarginAccount.create_id("u1", "cross"))
        account.top_up(
            asset="ABC", quantity=Decimal(700), is_limited=False, decision={}, stamp=given
        )
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
        pool.increase(
            account_id="u1:cross",
            movement="auto_top_up",
            quantity=Decimal(700),
            decision=None,
            stamp=given,
        )
        [_account, recording] = ledger.save(account, pool)
        found = cap_overshoots(ledger)
    assert [(o["position"], o["platform_total_after"], o["upper_limit"]) for o in found] == [
        (str(recording.notification.id), "1200", "1000")
    ]


def test_a_wrong_decision_report_does_not_deny_a_cap_overshoot(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        small_market(ledger)
        forge_accepted_transfer(ledger, user="u9", quantity="900", minute=3, request_id="forged-1")
        expected = cap_overshoots(ledger)
    assert len(expected) == 1

    report = verify(database_url)

    assert not report.is_right
    assert report.cap_overshoots == expected


def test_a_forged_request_without_a_context_is_reported_not_a_crash(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        small_market(ledger)
        data = {"type": "record_pro_quiz", "request_id": "bare", "user": "u5", "passed": True}
        parsed = parse_command(data)
        request = Request.record(
            command_type="record_pro_quiz",
            command=parsed.model_dump(mode="json"),
            digest=payload_digest(parsed.payload_digest_source()),
            outcome={"request_id": "bare", "status": "accepted"},
            stamp=stamp(3, "bare"),
        )
        [recording] = ledger.save(request)

    report = verify(database_url)

    assert (report.is_right, report.first_bad_position) == (False, recording.notification.id)
