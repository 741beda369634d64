"""One hot capped asset, many writers: real OS processes transferring it at the same time.

DOMAIN.md §3: the cap is a platform-wide invariant across accounts; two concurrent transfers by
different users must never together push T over the limit the rule allows. The write side decides
against the AssetPool aggregate (optimistic versions, retried on conflict), so the run must be
equivalent to some one-at-a-time run: the one in commit (notification log) order.
"""

import itertools
import json
import multiprocessing
import random
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger
from ledger.commands import parse_command
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.domain.request import Request
from ledger.queries import account_view
from projections.queries import assets_view
from tests.concurrency import workers
from tests.concurrency.store import (
    assert_serial_replay_identical,
    events_of_type,
    recorded_requests,
)
from tests.conftest import POSTGRES_URL, postgres_required
from tests.support import command

ASSET = "ABC"
UPPER_LIMIT = Decimal("100000")  # U
FIXED_QUOTA_USDT = "3000"  # F at price 1: bands B and C admit at most 3000 per transfer
PROCESS_COUNT = 4
TRANSFERS_PER_PROCESS = 30
# Multiples of 250, so T - U stays a multiple of 250 and the 250s can fill the pool exactly (D).
SIZES = (
    ["250"] * 5
    + ["500"] * 3
    + ["1000", "1500", "1750", "2000", "2500", "2750", "3000"]
    + ["4000", "5000", "7500", "10000"]
)
PROCESS_JOIN_SECONDS = 180


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(params=["postgres", "sqlite"])
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of URLs of fresh, empty stores on one backend (schemas dropped afterwards)."""
    schemas: list[str] = []

    def fresh() -> str:
        name = f"store{len(schemas)}"
        if request.param == "sqlite":
            schemas.append(name)
            return f"sqlite:///{tmp_path}/{name}.sqlite3"
        schema = f"test_conc_{uuid.uuid4().hex[:16]}"
        schemas.append(schema)
        return f"{POSTGRES_URL}?schema={schema}"

    if request.param == "postgres" and not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    yield fresh
    if request.param == "postgres":
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            for schema in schemas:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


# --- tests ---------------------------------------------------------------------------------------


def test_concurrent_transfers_of_a_hot_asset_never_overshoot_and_are_serialisable(
    make_url: Callable[[], str], tmp_path: Path
) -> None:
    """Goal: several processes transfer one capped asset for different users at once, across
    bands A to D; the cap holds, pool == sum of accounts, and the outcome equals a serial run.

    Method: set up the asset, start PROCESS_COUNT spawned processes on a barrier, each sending its
    own users' transfers; then read the Request records in notification-log (commit) order and
    replay their commands one at a time into a fresh store: every outcome must be identical.
    """
    url = make_url()
    setup = _setup_commands()
    with Ledger(url) as ledger:
        for data in setup:
            assert ledger.execute(parse_command(data)).is_accepted
    per_process = [_transfers_for_process(i) for i in range(PROCESS_COUNT)]

    answered = _run_processes(url, per_process, tmp_path)

    sent = setup + [data for commands in per_process for data in commands]
    with Ledger(url) as ledger:
        recorded = recorded_requests(ledger)
        # (d) nothing applied twice, nothing lost.
        assert len(recorded) == len(sent)
        assert len({r.request_id for r in recorded}) == len(recorded)
        assert {r.request_id for r in recorded} == {data["request_id"] for data in sent}
        # The writers really ran at the same time: their commits interleave in the log.
        writers = [r.request_id.split("-")[0] for r in recorded if r.command_type == "transfer_in"]
        switches = sum(a != b for a, b in itertools.pairwise(writers))
        assert switches >= PROCESS_COUNT, writers
        for outcomes in answered:
            assert not any(o["duplicate"] for o in outcomes)
        _assert_answers_match_records(answered, recorded)

        # (a) no overshoot, and every accepted transfer-in was within the q_max it was decided on.
        transfer_outcomes = [r.outcome for r in recorded if r.command_type == "transfer_in"]
        _assert_cap_respected(ledger, transfer_outcomes)
        bands = {o["context"]["band"] for o in transfer_outcomes}
        assert bands == {"A", "B", "C", "D"}, bands
        assert sum(o["status"] == "accepted" for o in transfer_outcomes) > 0
        assert sum(o["status"] == "rejected" for o in transfer_outcomes) > 0

        # (b) pool == sum of the cross and portfolio accounts holding the asset.
        _assert_pool_equals_accounts(ledger, sent)

    # (c) serial equivalence: replaying in commit order gives exactly the same outcomes.
    assert_serial_replay_identical(recorded, make_url())


@pytest.mark.parametrize(
    "with_price_marks",
    [
        pytest.param(False, id="fixed-price"),
        pytest.param(True, id="price-marks"),
    ],
)
def test_concurrent_transfers_in_and_out_on_shared_accounts_are_serialisable(
    with_price_marks: bool, make_url: Callable[[], str], tmp_path: Path
) -> None:
    """Goal: as above, with the processes also sharing users (so accounts conflict as well as
    the pool), moving the asset out again (T falls, then fills up again) and, in one variant,
    the price changing under them (F in tokens changes: the cap decides at the price in force).

    Method: every third command of every process names one of two shared users; every fifth is a
    transfer-out; one process may mark the price between 1 and 2. Afterwards: nothing lost or
    doubled, no overshoot, pool == accounts, and the run equals its serial replay in commit order.
    """
    url = make_url()
    setup = _setup_commands()
    with Ledger(url) as ledger:
        for data in setup:
            assert ledger.execute(parse_command(data)).is_accepted
    per_process = [_mixed_for_process(i, with_price_marks) for i in range(PROCESS_COUNT)]

    answered = _run_processes(url, per_process, tmp_path)

    sent = setup + [data for commands in per_process for data in commands]
    with Ledger(url) as ledger:
        recorded = recorded_requests(ledger)
        assert len(recorded) == len(sent)
        assert {r.request_id for r in recorded} == {data["request_id"] for data in sent}
        _assert_answers_match_records(answered, recorded)
        transfer_outcomes = [r.outcome for r in recorded if r.command_type == "transfer_in"]
        _assert_cap_respected(ledger, transfer_outcomes)
        outs = [r.outcome for r in recorded if r.command_type == "transfer_out"]
        assert any(o["status"] == "accepted" for o in outs), outs
        _assert_pool_equals_accounts(ledger, sent)
    assert_serial_replay_identical(recorded, make_url())


def test_concurrent_retries_of_the_same_requests_apply_each_once(
    make_url: Callable[[], str], tmp_path: Path
) -> None:
    """Goal: processes submitting the SAME request_ids with the same payloads at the same time
    apply each request exactly once; every other answer is a duplicate carrying the first outcome.

    Method: four processes get one list of transfers (two in order, one reversed, one shuffled),
    start on a barrier; afterwards each request_id has one non-duplicate answer, one Request
    record, and the store equals a serial replay in commit order.
    """
    url = make_url()
    setup = _setup_commands()
    with Ledger(url) as ledger:
        for data in setup:
            assert ledger.execute(parse_command(data)).is_accepted
    shared = _transfers_for_process(0, users_per_process=8, count=40, prefix="shared")
    shuffled = list(shared)
    random.Random(7).shuffle(shuffled)
    orders = [shared, list(shared), list(reversed(shared)), shuffled]

    answered = _run_processes(url, orders, tmp_path)

    by_request: dict[str, list[dict[str, Any]]] = {}
    for outcomes in answered:
        assert len(outcomes) == len(shared)
        for outcome in outcomes:
            by_request.setdefault(outcome["request_id"], []).append(outcome)
    assert set(by_request) == {data["request_id"] for data in shared}
    for request_id, answers in by_request.items():
        assert len(answers) == len(orders), request_id
        first = [a for a in answers if not a["duplicate"]]
        assert len(first) == 1, (request_id, answers)
        for answer in answers:
            assert answer | {"duplicate": False} == first[0], (request_id, answer, first[0])

    with Ledger(url) as ledger:
        recorded = recorded_requests(ledger)
        assert len(recorded) == len(setup) + len(shared)
        assert len({r.request_id for r in recorded}) == len(recorded)
        _assert_answers_match_records(answered, recorded)
        transfer_outcomes = [r.outcome for r in recorded if r.command_type == "transfer_in"]
        _assert_cap_respected(ledger, transfer_outcomes)
        _assert_pool_equals_accounts(ledger, setup + shared)
        accepted = sum(
            Decimal(o["context"]["requested"])
            for o in transfer_outcomes
            if o["status"] == "accepted"
        )
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(ASSET))
        assert pool.platform_total == accepted
        # Each accepted transfer credited once: one TransferredIn event per accepted request.
        credits = events_of_type(ledger, MarginAccount.TransferredIn)
        assert sorted(e.request_id for e in credits) == sorted(
            o["request_id"] for o in transfer_outcomes if o["status"] == "accepted"
        )

    assert_serial_replay_identical(recorded, make_url())


# --- workload ------------------------------------------------------------------------------------


def _setup_commands() -> list[dict[str, Any]]:
    return [
        command("list_asset", request_id="setup-usdt", asset="USDT", collateral_rank=1),
        command("list_asset", request_id="setup-abc", asset=ASSET, collateral_rank=8),
        command(
            "set_collateral_cap",
            request_id="setup-cap",
            asset=ASSET,
            upper_limit=str(UPPER_LIMIT),
            fixed_quota_usdt=FIXED_QUOTA_USDT,
        ),
        command("mark_prices", request_id="setup-price", prices={ASSET: "1"}),
    ]


def _transfers_for_process(
    index: int,
    *,
    users_per_process: int = 5,
    count: int = TRANSFERS_PER_PROCESS,
    prefix: str = "p",
) -> list[dict[str, Any]]:
    """Transfers of varied sizes for this process's own users, all at the same business time."""
    rng = random.Random(1000 + index)
    transfers = []
    for number in range(count):
        user = f"{prefix}{index}-u{number % users_per_process}"
        transfers.append(
            command(
                "transfer_in",
                request_id=f"{prefix}{index}-t{number}",
                user=user,
                account="portfolio" if number % 4 == 3 else "cross",
                asset=ASSET,
                quantity=rng.choice(SIZES),
            )
        )
    return transfers


def _mixed_for_process(
    index: int, with_price_marks: bool, count: int = TRANSFERS_PER_PROCESS
) -> list[dict[str, Any]]:
    """Transfers in and out, a third of them for users every process shares; the first process
    may also mark the price now and then (F in tokens: 3000 at price 1, 1500 at price 2)."""
    rng = random.Random(2000 + index)
    commands = []
    for number in range(count):
        request_id = f"m{index}-t{number}"
        if with_price_marks and index == 0 and number % 6 == 5:
            price = "2" if number % 12 == 5 else "1"
            commands.append(command("mark_prices", request_id=request_id, prices={ASSET: price}))
            continue
        user = f"all-u{number % 2}" if number % 3 == 0 else f"m{index}-u{number % 3}"
        is_out = number % 5 == 4
        commands.append(
            command(
                "transfer_out" if is_out else "transfer_in",
                request_id=request_id,
                user=user,
                account="cross" if number % 2 else "portfolio",
                asset=ASSET,
                quantity=rng.choice(["250", "500", "1000", "3000"] if is_out else SIZES),
            )
        )
    return commands


def _run_processes(
    url: str, per_process: list[list[dict[str, Any]]], tmp_path: Path
) -> list[list[dict[str, Any]]]:
    """Run each command list in its own spawned process, all released together by a barrier."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(per_process))
    result_paths = [tmp_path / f"outcomes-{i}.json" for i in range(len(per_process))]
    processes = [
        context.Process(
            target=workers.submit_commands,
            args=(url, commands, barrier, str(path)),
            name=f"ledger-writer-{i}",
        )
        for i, (commands, path) in enumerate(zip(per_process, result_paths, strict=True))
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(PROCESS_JOIN_SECONDS)
    finally:
        for process in processes:
            if process.is_alive():  # only our own children, by handle
                process.kill()
                process.join()
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return [json.loads(path.read_text()) for path in result_paths]


# --- reading the store back ----------------------------------------------------------------------


def _assert_answers_match_records(
    answered: list[list[dict[str, Any]]], recorded: list[Request.Recorded]
) -> None:
    """What each process was told is what the store recorded (apart from the duplicate flag)."""
    by_id = {r.request_id: r.outcome for r in recorded}
    for outcomes in answered:
        for outcome in outcomes:
            assert outcome | {"duplicate": False} == by_id[outcome["request_id"]]


def _assert_cap_respected(ledger: Ledger, transfer_outcomes: list[dict[str, Any]]) -> None:
    for outcome in transfer_outcomes:
        context = outcome["context"]
        requested, quantity_max = Decimal(context["requested"]), Decimal(context["q_max"])
        total = Decimal(context["total"])
        if outcome["status"] == "accepted":
            assert requested <= quantity_max, outcome
            assert total + requested <= UPPER_LIMIT, outcome
        else:
            assert outcome["reason"] == "collateral_cap", outcome
            assert requested > quantity_max, outcome
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(ASSET))
    assert 0 <= pool.platform_total <= UPPER_LIMIT, pool.platform_total
    # Every increase was decided against the very T it was applied to (no stale read of T).
    for stored in ledger.recorder.select_events(AssetPool.create_id(ASSET)):
        event = ledger.mapper.to_domain_event(stored)
        if isinstance(event, AssetPool.TotalIncreased):
            assert event.platform_total_after <= UPPER_LIMIT, event
            assert event.decision is not None
            assert Decimal(event.decision["total"]) == event.platform_total_after - event.quantity
            assert event.quantity <= Decimal(event.decision["q_max"]), event
    assets = {view.asset: view for view in assets_view(ledger)}
    assert Decimal(assets[ASSET].total) == pool.platform_total
    assert Decimal(assets[ASSET].total) <= UPPER_LIMIT


def _assert_pool_equals_accounts(ledger: Ledger, sent: list[dict[str, Any]]) -> None:
    accounts = {(data["user"], data["account"]) for data in sent if data["type"] == "transfer_in"}
    holdings = Decimal(0)
    for user, account in sorted(accounts):
        aggregate = ledger.get_aggregate(MarginAccount, MarginAccount.create_id(user, account))
        if aggregate is None:
            continue
        assert aggregate.holding(ASSET) >= 0
        view = account_view(ledger, f"{user}:{account}")
        assert Decimal(view.holdings.get(ASSET, "0")) == aggregate.holding(ASSET)
        holdings += aggregate.holding(ASSET)
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(ASSET))
    assert pool.platform_total == holdings, (pool.platform_total, holdings)
