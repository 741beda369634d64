"""The write path (ledger/write_transaction.py, ledger/log_writer.py) and `Ledger.execute_batch`,
tried against the same commands decided one at a time.

The design claims: a batch decides each command against the state the ones before it left and
records them all in one transaction; a command refused as invalid leaves no trace, even after its
handler changed a cached aggregate; duplicates answer with the first outcome; a decision reads the
parameters and prices in force at its business time, counting what the batch decided before it;
snapshots are right; another writer's events reach our cache (the tail) or the cache is forgotten;
a database failure records nothing and leaves no stale cache behind. Every test compares with a
run where the claim cannot fail (one command per transaction, a fresh store), on both backends.
"""

import functools
import itertools
import json
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from eventsourcing.utils import get_topic
from psycopg import sql

from ledger import Ledger, limits
from ledger.audit.decisions import verify_decisions
from ledger.audit.recorders import CHAIN_TABLE
from ledger.audit.snapshots import verify_snapshots
from ledger.audit.verify import verify_chain
from ledger.commands import AccrueInterest, CheckMargins, CommandBase, CommandInvalid, parse_command
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.log import log_events
from ledger.log_writer import PostgresLogWriter
from ledger.outcomes import Outcome
from ledger.persistence import env_for_url
from ledger.simulate.simulation import generate
from tests.cli.cli_support import ledger_script
from tests.conftest import POSTGRES_URL
from tests.failures import failing_inserts
from tests.support import T0, at

Answer = dict[str, Any]  # an outcome's JSON, or what made a command invalid
Logged = tuple[str, int, str, dict[str, Any]]  # aggregate, version, topic, payload

SIMULATION_SEED = 20260302
SIMULATION_ACCOUNTS = 60
SIMULATION_HOURS = 8
# Chunks of the simulated stream handed to execute_batch in turn (a job inside a chunk splits it:
# it runs on its own, in its place).
MIXED_BATCH_SIZES = (1, 7, 100, 1000)


# --- commands and answers ------------------------------------------------------------------------


def c(type_: str, request_id: str, minute: float, **fields: Any) -> CommandBase:
    """A command dated `minute` minutes after T0, through the parser the CLI uses."""
    data = {"type": type_, "request_id": request_id, "effective_at": at(minute), **fields}
    return parse_command(json.loads(json.dumps(data)))


def transfer(
    direction: str, request_id: str, minute: float, user: str, asset: str, quantity: str, **f: Any
) -> CommandBase:
    fields = {"user": user, "account": "cross", "asset": asset, "quantity": quantity} | f
    return c(f"transfer_{direction}", request_id, minute, **fields)


def market() -> list[CommandBase]:
    """USDT, BTC (not capped, 20,000), ETH (not capped, 3000), ABC (capped: U 1000 at price 1, so
    band A ends at T 800) and XYZ (capped, never priced: a capped transfer-in of it is invalid);
    USDT lends at 0.01% an hour. u1 holds 1 BTC and owes 10,000 USDT (CML 3, the hour of 09:00
    charged); u2 holds 100 ABC."""
    return [
        c("list_asset", "m-usdt", 0, asset="USDT", collateral_rank=1),
        c("list_asset", "m-btc", 0, asset="BTC", collateral_rank=2),
        c("list_asset", "m-eth", 0, asset="ETH", collateral_rank=2),
        c("list_asset", "m-abc", 0, asset="ABC", collateral_rank=8),
        c("list_asset", "m-xyz", 0, asset="XYZ", collateral_rank=9),
        c("set_collateral_cap", "m-cap-abc", 0, asset="ABC", upper_limit="1000"),
        c("set_collateral_cap", "m-cap-xyz", 0, asset="XYZ", upper_limit="1000"),
        c("mark_prices", "m-prices", 0, prices={"ABC": "1", "BTC": "20000", "ETH": "3000"}),
        c("set_borrow_terms", "m-terms", 0, asset="USDT", hourly_interest_rate="0.0001"),
        transfer("in", "m-u1-btc", 1, "u1", "BTC", "1"),
        c("borrow", "m-u1-borrow", 2, user="u1", account="cross", asset="USDT", quantity="10000"),
        transfer("in", "m-u2-abc", 3, "u2", "ABC", "100"),
    ]


def answer(result: Outcome | CommandInvalid) -> Answer:
    if isinstance(result, CommandInvalid):
        return {
            "invalid": [e.model_dump() for e in result.errors],
            "request_id": result.request_id,
        }
    return result.to_json_dict()


def one_by_one(ledger: Ledger, commands: Sequence[CommandBase]) -> list[Answer]:
    """The reference: one command per transaction."""
    answers = []
    for command in commands:
        try:
            answers.append(answer(ledger.execute(command)))
        except CommandInvalid as invalid:
            answers.append(answer(invalid))
    return answers


def in_batches(
    ledger: Ledger, commands: Sequence[CommandBase], sizes: Sequence[int]
) -> list[Answer]:
    """execute_batch on consecutive chunks whose sizes cycle through `sizes`."""
    answers: list[Answer] = []
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(commands):
            return answers
        chunk = commands[start : start + size]
        results = ledger.execute_batch(chunk)
        assert len(results) == len(chunk)
        answers.extend(answer(r) for r in results)
        start += size
    raise AssertionError("unreachable")


def logged(ledger: Ledger) -> list[Logged]:
    """Every event in log order, without its recorded time (the one thing two runs differ in)."""
    return [
        (
            str(event.originator_id),
            event.originator_version,
            get_topic(type(event)),
            event.model_dump(mode="json", exclude={"timestamp"}),
        )
        for _position, event in log_events(ledger)
    ]


def per_aggregate(log: list[Logged]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for aggregate_id, _version, topic, payload in log:
        found.setdefault(aggregate_id, []).append((topic, payload))
    return found


def event_count(ledger: Ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


def assert_same_answers(got: list[Answer], expected: list[Answer]) -> None:
    """Equal lists, reported at the first difference (a whole-list diff is unreadable)."""
    for index, (mine, theirs) in enumerate(zip(got, expected, strict=False)):
        assert mine == theirs, f"answer {index} differs"
    assert len(got) == len(expected)


def assert_same_log(got: list[Logged], expected: list[Logged]) -> None:
    """The same events per aggregate (what the design promises), and in the same log order (a
    batch appends in the order it decided, which is the one-by-one order)."""
    mine, theirs = per_aggregate(got), per_aggregate(expected)
    assert mine.keys() == theirs.keys()
    for aggregate_id, events in theirs.items():
        for index, (event, expected_event) in enumerate(
            zip(mine[aggregate_id], events, strict=False)
        ):
            assert event == expected_event, f"{aggregate_id}: event {index + 1} differs"
        assert len(mine[aggregate_id]) == len(events), aggregate_id
    assert [entry[:3] for entry in got] == [entry[:3] for entry in expected]


# Regressions (found by these tests, fixed in the same session): the transaction once kept the
# aggregates it decided only in the bounded cache, which could drop one before its commit; on
# PostgreSQL psycopg's own preparing deallocated the writer's prepared statements on any
# ROLLBACK; and the writer never reconnected after its session ended.


# --- stores --------------------------------------------------------------------------------------


@pytest.fixture
def new_store(database_url: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Fresh stores on the test's backend, besides `database_url` (schemas dropped afterwards)."""
    schemas: list[str] = []
    count = itertools.count()

    def make() -> str:
        if database_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path}/other-{next(count)}.sqlite3"
        schema = f"test_{uuid.uuid4().hex[:16]}"
        schemas.append(schema)
        return f"{POSTGRES_URL}?schema={schema}"

    yield make
    if schemas:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            for schema in schemas:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


@dataclass(frozen=True)
class Run:
    answers: list[Answer]
    log: list[Logged]


# One-by-one runs cost several seconds on PostgreSQL: each is made once per backend and shared.
_REFERENCES: dict[tuple[str, str], Run] = {}


def reference(name: str, url: str, make: Callable[[], str], run: Callable[[Ledger], Any]) -> Run:
    key = (backend(url), name)
    if key not in _REFERENCES:
        with Ledger(make()) as ledger:
            answers = run(ledger)
            _REFERENCES[key] = Run(answers, logged(ledger))
    return _REFERENCES[key]


# --- 1. the simulator's day: batches equal one by one --------------------------------------------


@functools.cache
def simulated(with_jobs: bool) -> tuple[CommandBase, ...]:
    commands = (
        parse_command(data)
        for data in generate(
            SIMULATION_SEED, accounts=SIMULATION_ACCOUNTS, hours=SIMULATION_HOURS, start=T0
        )
    )
    return tuple(
        command
        for command in commands
        if with_jobs or not isinstance(command, AccrueInterest | CheckMargins)
    )


def test_simulated_day_in_mixed_batches_equals_one_by_one(
    database_url: str, new_store: Callable[[], str]
) -> None:
    commands = simulated(with_jobs=True)
    expected = reference(
        "simulation", database_url, new_store, lambda ledger: one_by_one(ledger, commands)
    )
    with Ledger(database_url) as ledger:
        answers = in_batches(ledger, commands, MIXED_BATCH_SIZES)
        assert_same_answers(answers, expected.answers)
        assert_same_log(logged(ledger), expected.log)
        assert ledger.write_statistics.retries == 0
        assert verify_chain(ledger).is_intact
        decisions = verify_decisions(ledger)
    assert decisions.is_right, decisions
    assert decisions.requests_checked == len(commands)
    statuses = {a["status"] for a in answers}
    assert {"accepted", "rejected", "pending"} <= statuses, statuses  # a day worth comparing


@pytest.mark.parametrize("size", [7, 1000])
def test_simulated_day_without_jobs_in_big_batches_equals_one_by_one(
    database_url: str, new_store: Callable[[], str], size: int
) -> None:
    """Without jobs nothing splits a batch: 1000 puts the whole day in one transaction."""
    commands = simulated(with_jobs=False)
    assert len(commands) < 1000
    expected = reference(
        "simulation-no-jobs", database_url, new_store, lambda ledger: one_by_one(ledger, commands)
    )
    with Ledger(database_url) as ledger:
        answers = in_batches(ledger, commands, [size])
        assert_same_answers(answers, expected.answers)
        assert_same_log(logged(ledger), expected.log)
        transactions = ledger.write_statistics.transactions
        assert transactions == -(-len(commands) // size)
        assert verify_chain(ledger).is_intact
        if size == 1000:
            decisions = verify_decisions(ledger)
            assert decisions.is_right, decisions


def test_simulated_day_with_a_snapshot_every_few_versions_equals_one_by_one(
    database_url: str, new_store: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshots of every kind of aggregate, most taken from memory inside batches: each must
    equal a replay of its events, and taking them must change no decision."""
    commands = simulated(with_jobs=True)
    expected = reference(
        "simulation", database_url, new_store, lambda ledger: one_by_one(ledger, commands)
    )
    every_3 = {cls: 3 for cls in Ledger.snapshotting_intervals}
    monkeypatch.setattr(Ledger, "snapshotting_intervals", every_3)
    with Ledger(database_url) as ledger:
        answers = in_batches(ledger, commands, MIXED_BATCH_SIZES)
        report = verify_snapshots(ledger)
    assert report.is_right, report
    assert report.snapshots_checked > 100
    assert_same_answers(answers, expected.answers)


def test_a_call_past_the_batch_bound_is_split_into_transactions(
    database_url: str, new_store: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = simulated(with_jobs=False)
    expected = reference(
        "simulation-no-jobs", database_url, new_store, lambda ledger: one_by_one(ledger, commands)
    )
    monkeypatch.setattr(limits, "BATCH_SIZE_MAX", 50)
    with Ledger(database_url) as ledger:
        answers = [answer(r) for r in ledger.execute_batch(commands)]
        assert ledger.write_statistics.transactions == -(-len(commands) // 50)
        assert_same_log(logged(ledger), expected.log)
    assert_same_answers(answers, expected.answers)


# --- 2. an invalid command in the middle of a batch leaves no trace ------------------------------


def batch_around(invalid: Sequence[CommandBase]) -> list[CommandBase]:
    """Commands at 11:30 and after (u1 owes the interest of 10:00 and 11:00 by then) with the
    `invalid` ones in the middle; b-u1-usdt settles that interest, b-u4-abc meets the cap
    (T = 550: q_max 250), u9 never opened an account."""
    return [
        transfer("in", "b-u2-abc", 150, "u2", "ABC", "300"),
        transfer("in", "b-u3-abc", 150, "u3", "ABC", "200"),
        *invalid,
        transfer("in", "b-u1-usdt", 150, "u1", "USDT", "10"),
        transfer("out", "b-u1-btc", 151, "u1", "BTC", "0.1"),
        transfer("out", "b-u2-abc-out", 152, "u2", "ABC", "50"),
        transfer("in", "b-u4-abc", 153, "u4", "ABC", "400"),
        transfer("out", "b-u9-usdt", 154, "u9", "USDT", "1"),
        transfer("in", "b-u9-usdt-in", 155, "u9", "USDT", "5"),
        transfer("in", "b-u3-abc-2", 156, "u3", "ABC", "10"),
    ]


# name: (command, the field it is invalid in)
INVALID: dict[str, tuple[CommandBase, str]] = {
    "unknown_asset": (transfer("in", "x-unknown", 150, "u2", "ZZZ", "5"), "asset"),
    # u2's latest event (150) was decided earlier in this same batch.
    "earlier_than_latest_event": (
        transfer("in", "x-early", 100, "u2", "ABC", "5"),
        "effective_at",
    ),
    "request_id_reused": (transfer("in", "b-u2-abc", 150, "u2", "ABC", "301"), "request_id"),
    "asset_not_in_isolated_pair": (
        transfer("out", "x-pair", 150, "u5", "ABC", "1", account="isolated:BTCUSDT"),
        "asset",
    ),
    # Settles u1's two hours of interest on the cached account, then finds XYZ unpriced.
    "unpriced_after_interest_settled": (
        transfer("in", "x-unpriced", 150, "u1", "XYZ", "5"),
        "asset",
    ),
    # u3's account was opened earlier in this batch: restored from its events here, none committed.
    "unpriced_on_an_account_opened_in_this_batch": (
        transfer("in", "x-u3", 150, "u3", "XYZ", "5"),
        "asset",
    ),
    # Registers u9's account in memory, then finds XYZ unpriced.
    "unpriced_after_registering": (transfer("in", "x-new", 150, "u9", "XYZ", "5"), "asset"),
    # Settles the interest, then needs XYZ's price to value the auto-borrow.
    "trade_unpriced_after_interest_settled": (
        c(
            "settle_trade",
            "x-trade",
            150,
            user="u1",
            account="cross",
            sell_asset="USDT",
            sell_quantity="20000",
            buy_asset="XYZ",
            buy_quantity="10",
            fee_asset="XYZ",
            fee_quantity="0.01",
            auto_borrow=True,
            auto_repay=False,
        ),
        "sell_asset",
    ),
}


def run_market_then(ledger: Ledger, batch: Sequence[CommandBase]) -> list[Answer]:
    one_by_one(ledger, market())
    return [answer(r) for r in ledger.execute_batch(batch)]


def without_invalid(database_url: str, new_store: Callable[[], str]) -> Run:
    expected = reference(
        "batch-without-invalid",
        database_url,
        new_store,
        lambda ledger: run_market_then(ledger, batch_around([])),
    )
    # The scenario does what its comments say, or the comparisons below would prove little.
    by_id = {a["request_id"]: a for a in expected.answers}
    assert by_id["b-u4-abc"]["reason"] == "collateral_cap", by_id["b-u4-abc"]
    assert by_id["b-u4-abc"]["context"]["q_max"] == "250"
    assert by_id["b-u9-usdt"]["reason"] == "account_not_open"
    assert by_id["b-u1-btc"]["status"] == "accepted"
    charged_by = [
        payload["request_id"]
        for _id, _version, topic, payload in expected.log
        if topic.endswith("InterestCharged") and payload["effective_at"] > "2026-03-02T09:30"
    ]
    assert charged_by == ["b-u1-usdt", "b-u1-usdt"], charged_by
    return expected


@pytest.mark.parametrize("kind", sorted(INVALID))
def test_an_invalid_command_in_a_batch_leaves_no_trace(
    database_url: str, new_store: Callable[[], str], kind: str
) -> None:
    expected = without_invalid(database_url, new_store)
    invalid, field = INVALID[kind]
    with Ledger(database_url) as ledger:
        answers = run_market_then(ledger, batch_around([invalid]))
        log = logged(ledger)
        assert verify_chain(ledger).is_intact
    refused = answers.pop(2)
    assert refused["request_id"] == invalid.request_id
    assert [e["field"] for e in refused["invalid"]] == [field], refused
    assert_same_answers(answers, expected.answers)
    assert_same_log(log, expected.log)


def test_every_kind_of_invalid_command_in_one_batch_leaves_no_trace(
    database_url: str, new_store: Callable[[], str]
) -> None:
    """Several restores in one transaction, each after others changed the same aggregates."""
    expected = without_invalid(database_url, new_store)
    # Each before a valid command: the two that settle u1's interest before b-u1-usdt does, the
    # early one and the reused id after b-u2-abc, u3's after b-u3-abc opened it, the one
    # registering u9 before u9's commands.
    order = [
        "unpriced_after_interest_settled",
        "trade_unpriced_after_interest_settled",
        "unpriced_on_an_account_opened_in_this_batch",
        "earlier_than_latest_event",
        "request_id_reused",
        "unpriced_after_registering",
        "unknown_asset",
        "asset_not_in_isolated_pair",
    ]
    assert sorted(order) == sorted(INVALID)
    invalids = [INVALID[kind][0] for kind in order]
    batch = batch_around([])
    mixed = list(itertools.chain.from_iterable(zip(invalids, batch, strict=False)))
    mixed += batch[len(invalids) :]
    with Ledger(database_url) as ledger:
        answers = run_market_then(ledger, mixed)
        assert_same_log(logged(ledger), expected.log)
    valid = [a for a in answers if "invalid" not in a]
    assert_same_answers(valid, expected.answers)
    assert sorted(a["request_id"] for a in answers if "invalid" in a) == sorted(
        str(command.request_id) for command in invalids
    )


# --- 3. duplicates -------------------------------------------------------------------------------


def test_duplicates_inside_a_batch_across_batches_and_a_retried_batch(
    database_url: str, new_store: Callable[[], str]
) -> None:
    first_batch = [
        transfer("in", "d1", 10, "u3", "ABC", "10"),
        transfer("in", "d1", 10, "u3", "ABC", "10"),  # the same request again
        transfer("in", "d2", 10, "u4", "ABC", "20"),
        transfer("in", "d1", 10, "u3", "ABC", "11"),  # the same id, another payload
        transfer("in", "d3", 11, "u6", "USDT", "5", channel="client", risk_flagged=True),
        transfer("in", "d3", 11, "u6", "USDT", "5", channel="client", risk_flagged=True),
        transfer("in", "d4", 12, "u5", "ABC", "5000"),  # refused by the cap
        transfer("in", "d4", 12, "u5", "ABC", "5000"),
        transfer("in", "d1", 10, "u3", "ABC", "10"),
    ]
    second_batch = [
        transfer("in", "d2", 10, "u4", "ABC", "20"),
        transfer("in", "d5", 13, "u3", "ABC", "1"),
        c("accrue_interest", "d-job", 60, until=at(60)),
        transfer("in", "d1", 10, "u3", "ABC", "10"),
        c("accrue_interest", "d-job", 60, until=at(60)),
    ]
    with Ledger(database_url) as ledger:
        one_by_one(ledger, market())
        first = [answer(r) for r in ledger.execute_batch(first_batch)]
        second = [answer(r) for r in ledger.execute_batch(second_batch)]
        recorded = event_count(ledger)
        assert [a.get("duplicate") for a in first] == [
            False,
            True,
            False,
            None,
            False,
            True,
            False,
            True,
            True,
        ]
        assert [a.get("status") for a in first[::2]] == [
            "accepted",
            "accepted",
            "pending",
            "rejected",
            "accepted",
        ]
        assert first[3]["invalid"][0]["field"] == "request_id"
        for duplicate, original in ((1, 0), (5, 4), (7, 6), (8, 0)):
            assert first[duplicate] == first[original] | {"duplicate": True}
        assert second[0] == first[2] | {"duplicate": True}
        assert second[3] == first[0] | {"duplicate": True}
        assert second[4] == second[2] | {"duplicate": True}
        assert second[2]["context"]["hours_charged"] == 1  # u1's 10:00
        log = logged(ledger)
        # The whole thing again, in one batch: nothing new, every answer its first outcome.
        again = [answer(r) for r in ledger.execute_batch([*first_batch, *second_batch])]
        assert event_count(ledger) == recorded
    with Ledger(new_store()) as serial:
        expected = one_by_one(serial, [*market(), *first_batch, *second_batch])
        assert_same_log(log, logged(serial))
    assert_same_answers([*first, *second], expected[len(market()) :])
    firsts = {a["request_id"]: a for a in [*first, *second] if "invalid" not in a}
    for got in again:
        if "invalid" in got:
            assert got == first[3]
        else:
            assert got == firsts[got["request_id"]] | {"duplicate": True}


def test_an_id_refused_as_invalid_earlier_in_a_batch_is_still_free(database_url: str) -> None:
    """An invalid command leaves no Request behind, even for the rest of its own batch."""
    batch = [
        transfer("in", "e1", 10, "u3", "ZZZ", "10"),  # unknown asset
        transfer("in", "e1", 10, "u3", "ABC", "10"),
        transfer("in", "e1", 10, "u3", "ABC", "10"),
    ]
    with Ledger(database_url) as ledger:
        one_by_one(ledger, market())
        answers = [answer(r) for r in ledger.execute_batch(batch)]
    assert answers[0]["invalid"][0]["field"] == "asset"
    assert answers[1]["status"] == "accepted" and answers[1]["duplicate"] is False
    assert answers[2] == answers[1] | {"duplicate": True}


# --- 4. parameters and prices as of a time between events of the same batch ---------------------


def as_of_commands() -> list[CommandBase]:
    """u1 (1 BTC, owes 10,001 USDT, holds 10,000 USDT) between two BTC marks and three rates:
    each decision is right only at the price or rate in force at its own time."""
    return [
        c("mark_prices", "a-mark-30000", 30, prices={"BTC": "30000"}),
        c("mark_prices", "a-mark-10000", 50, prices={"BTC": "10000"}),
        # At 30,000: (15,000 + 10,000) / 10,001 > 2. At 20,000 or 10,000 it is 2 or less.
        transfer("out", "a-out-at-40", 40, "u1", "BTC", "0.5"),
        # At 30,000: (15,000 + 10,100) / 10,101 > 1.5. At 10,000: below 1.5.
        c("borrow", "a-borrow-at-45", 45, user="u1", account="cross", asset="USDT", quantity="100"),
        transfer("out", "a-out-at-55", 55, "u1", "BTC", "0.1"),  # at 10,000: refused
        c("set_borrow_terms", "a-rate-1030", 90, asset="USDT", hourly_interest_rate="0.001"),
        c("set_borrow_terms", "a-rate-1130", 150, asset="USDT", hourly_interest_rate="0.01"),
        # Settles 10:00 at 0.0001, 11:00 at 0.001 and 12:00 at 0.01.
        c("repay", "a-repay", 200, user="u1", account="cross", asset="USDT", quantity="100"),
    ]


@pytest.mark.parametrize("committed_first", [0, 1], ids=["all-in-batch", "first-mark-committed"])
def test_a_decision_reads_prices_and_rates_in_force_between_events_of_its_batch(
    database_url: str, new_store: Callable[[], str], committed_first: int
) -> None:
    commands = as_of_commands()
    expected = reference(
        "as-of",
        database_url,
        new_store,
        lambda ledger: one_by_one(ledger, [*market(), *commands]),
    )
    by_id = {a["request_id"]: a for a in expected.answers}
    assert by_id["a-out-at-40"]["status"] == "accepted", by_id["a-out-at-40"]
    assert by_id["a-borrow-at-45"]["status"] == "accepted", by_id["a-borrow-at-45"]
    assert by_id["a-out-at-55"]["reason"] == "margin_level", by_id["a-out-at-55"]
    rates = [
        payload["hourly_interest_rate"]
        for _id, _version, topic, payload in expected.log
        if topic.endswith("InterestCharged") and payload["request_id"] == "a-repay"
    ]
    assert rates == ["0.0001", "0.001", "0.01"], rates  # one loan (the borrow adds to it)
    with Ledger(database_url) as ledger:
        answers = one_by_one(ledger, [*market(), *commands[:committed_first]])
        answers += [answer(r) for r in ledger.execute_batch(commands[committed_first:])]
        assert_same_answers(answers, expected.answers)
        assert_same_log(logged(ledger), expected.log)


# --- 5. snapshots --------------------------------------------------------------------------------


def snapshot_versions(ledger: Ledger, aggregate_id: uuid.UUID) -> list[int]:
    assert ledger.snapshots is not None
    return [s.originator_version for s in ledger.snapshots.recorder.select_events(aggregate_id)]


def replayed(ledger: Ledger, aggregate_id: uuid.UUID) -> dict[str, Any]:
    aggregate: Any = None
    for stored in ledger.recorder.select_events(aggregate_id):
        aggregate = ledger.mapper.to_domain_event(stored).mutate(aggregate)  # type: ignore[attr-defined]
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def test_batches_past_snapshot_intervals_leave_right_snapshots(database_url: str) -> None:
    interval = limits.SNAPSHOT_INTERVAL
    big = AssetPool.create_id("BIG")
    u1 = MarginAccount.create_id("u1", "cross")
    listing = [
        c("list_asset", "s-big", 5, asset="BIG", collateral_rank=7),
        c("set_collateral_cap", "s-cap", 5, asset="BIG", upper_limit="1000000000"),
        c("mark_prices", "s-mark", 5, prices={"BIG": "1"}),
    ]
    users = [f"s{i}" for i in range(5)]

    def transfers(prefix: str, count: int, minute: float, user: str | None = None) -> list[Any]:
        return [
            transfer("in", f"{prefix}-{i}", minute, user or users[i % 5], "BIG", "1")
            for i in range(count)
        ]

    def version(ledger: Ledger, aggregate_id: uuid.UUID) -> int:
        return int(ledger.repository.get(aggregate_id).version)

    with Ledger(database_url) as ledger:
        one_by_one(ledger, [*market(), *listing])
        # One transaction takes the pool past 100 and 200: one snapshot, at the last (200).
        first = transfers("s1", 2 * interval + 1 - version(ledger, big), 10)
        # u1 to version 98, then one command charges 5 hours of interest and transfers: 98 to
        # 104, past 100 in the middle of a command (a snapshot the library takes from the log).
        second = transfers("s2", interval - 2 - version(ledger, u1), 10, "u1")
        second.append(transfer("in", "s2-late", 5 * 60 + 10, "u1", "BIG", "1"))
        for batch in (first, second):
            assert all("invalid" not in answer(r) for r in ledger.execute_batch(batch))
        assert version(ledger, u1) == interval + 4
        assert version(ledger, big) < 3 * interval
        # The pool to exactly 300 at the end of a command (a snapshot taken from memory).
        third = transfers("s3", 3 * interval - version(ledger, big), 6 * 60)
        assert all("invalid" not in answer(r) for r in ledger.execute_batch(third))
        assert snapshot_versions(ledger, big) == [2 * interval, 3 * interval]
        assert snapshot_versions(ledger, u1) == [interval]
        report = verify_snapshots(ledger)
        assert report.is_right, report
    with Ledger(database_url) as fresh:  # loads from the snapshots, not from a warm cache
        for aggregate_id in (big, u1):
            loaded: Any = fresh.repository.get(aggregate_id)
            state = {k: v for k, v in vars(loaded).items() if k != "_pending_events"}
            assert state == replayed(fresh, aggregate_id)


# --- 6. another process writes between our transactions -----------------------------------------


def submit_elsewhere(url: str, commands: Sequence[CommandBase], folder: Path) -> list[Answer]:
    """`ledger submit FILE` in another OS process: another writer, with its own cache."""
    path = folder / f"elsewhere-{uuid.uuid4().hex[:8]}.jsonl"
    path.write_text(
        "".join(
            json.dumps(command.model_dump(mode="json", exclude_none=True)) + "\n"
            for command in commands
        )
    )
    done = subprocess.run(
        [str(ledger_script()), "submit", str(path), "--db", url, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# Ours, then theirs, then ours again. u5 takes T to 600; u6 (theirs) to 750 (q_max 200); u7 then
# meets a q_max of 50, and u1's BTC is worth 10,000 (theirs), not the 20,000 we last saw.
OURS_BEFORE = [transfer("in", "p-u5", 10, "u5", "ABC", "500")]
THEIRS = [transfer("in", "p-u6", 11, "u6", "ABC", "150")]
THEIR_MARK = c("mark_prices", "p-btc", 13, prices={"BTC": "10000"})
OURS_AFTER = [
    transfer("in", "p-u7", 14, "u7", "ABC", "100"),
    transfer("out", "p-u1-btc", 15, "u1", "BTC", "0.1"),
]


def assert_ours_after_saw_theirs(answers: list[Answer]) -> None:
    u7, u1 = answers[-2:]
    assert (u7["reason"], u7["context"]["q_max"]) == ("collateral_cap", "50"), u7
    assert u1["reason"] == "margin_level", u1


def test_our_cache_takes_in_what_another_process_appended(
    database_url: str, new_store: Callable[[], str], tmp_path: Path
) -> None:
    """The pool (which we write: a stale copy would also conflict) and BTC's price (which we only
    read: a stale copy would go unnoticed) both changed in the other process."""
    theirs = [*OURS_BEFORE, *THEIRS, THEIR_MARK]  # ours again: a duplicate over there
    with Ledger(new_store()) as serial:
        expected = one_by_one(serial, [*market(), *OURS_BEFORE, *theirs, *OURS_AFTER, *THEIRS])
        expected_log = logged(serial)
    with Ledger(database_url) as ours:
        answers = one_by_one(ours, [*market(), *OURS_BEFORE])
        answers += submit_elsewhere(database_url, theirs, tmp_path)
        answers += one_by_one(ours, OURS_AFTER)
        answers += [answer(r) for r in ours.execute_batch(THEIRS)]  # theirs: a duplicate here
        assert ours.write_statistics.retries == 0  # decided right the first time
        log = logged(ours)
    assert_ours_after_saw_theirs(expected[:-1])
    assert [a["duplicate"] for a in (expected[len(market()) + 1], expected[-1])] == [True, True]
    assert_same_answers(answers, expected)
    assert_same_log(log, expected_log)


def test_an_aggregate_we_found_absent_and_another_writer_created_is_seen(
    database_url: str, tmp_path: Path
) -> None:
    """Our cache remembers that u1 had no UserProfile (the Pro switch was refused for the quiz);
    another process records the quiz, the terms and the jurisdiction (creating the profile): our
    next switch must see them and is accepted."""
    pro = {"user": "u1", "to": "pro"}
    with Ledger(database_url) as ours:
        one_by_one(ours, market())
        first = answer(ours.execute(c("switch_mode", "absent-s1", 10, **pro)))
        assert (first["status"], first["reason"]) == ("rejected", "pro_quiz_not_passed")
        theirs = submit_elsewhere(
            database_url,
            [
                c("record_pro_quiz", "absent-q", 11, user="u1", passed=True),
                c("agree_pro_terms", "absent-a", 11, user="u1"),
                c("set_pro_jurisdiction", "absent-j", 11, user="u1", supported=True),
            ],
            tmp_path,
        )
        assert [a["status"] for a in theirs] == ["accepted"] * 3
        again = answer(ours.execute(c("switch_mode", "absent-s2", 12, **pro)))
    assert again["status"] == "accepted", again  # u1 qualifies once the profile is seen


@pytest.mark.parametrize(
    "appended",
    [limits.TAIL_EVENTS_MAX, limits.TAIL_EVENTS_MAX + 2],
    ids=["exactly-the-tail-bound", "past-the-tail-bound"],
)
def test_a_tail_from_another_process_at_or_past_its_bound_is_never_half_applied(
    database_url: str, new_store: Callable[[], str], tmp_path: Path, appended: int
) -> None:
    """Up to TAIL_EVENTS_MAX events are applied to our cache, more make it forget everything.
    Their mark of BTC is the last thing they write: past the bound its event is beyond the first
    TAIL_EVENTS_MAX, so a cache that applied only what one read brought would miss it."""
    with Ledger(new_store()) as serial:
        expected = one_by_one(serial, [*market(), *OURS_BEFORE])
        expected += one_by_one(serial, THEIRS)
        # Marks pad theirs to `appended`: ETH's 2 events each (the asset's, the request's), and
        # ABC's 3 (its pool's too) once if the count is odd.
        padding_events = appended - len(expected[-1]["events"]) - 2
        odd = padding_events % 2
        padding = [c("mark_prices", "p-abc", 12, prices={"ABC": "1"})] * odd
        padding += [
            c("mark_prices", f"p-eth-{i}", 12, prices={"ETH": str(3000 + i)})
            for i in range((padding_events - 3 * odd) // 2)
        ]
        expected += [answer(r) for r in serial.execute_batch([*padding, THEIR_MARK])]
        expected += one_by_one(serial, OURS_AFTER)
        expected_log = logged(serial)
    with Ledger(database_url) as ours:
        answers = one_by_one(ours, [*market(), *OURS_BEFORE])
        before = event_count(ours)
        answers += submit_elsewhere(database_url, [*THEIRS, *padding, THEIR_MARK], tmp_path)
        assert event_count(ours) - before == appended
        answers += one_by_one(ours, OURS_AFTER)
        assert ours.write_statistics.retries == 0
        log = logged(ours)
    assert_ours_after_saw_theirs(expected)
    assert_same_answers(answers, expected)
    assert_same_log(log, expected_log)


# --- 7. failures that are not refusals -----------------------------------------------------------

# Decided in memory, never committed: T 600 and BTC at 10,000 must not outlive the failure.
DOOMED = [
    transfer("in", "f-u5", 10, "u5", "ABC", "500"),
    c("mark_prices", "f-btc", 11, prices={"BTC": "10000"}),
    transfer("out", "f-u1-btc", 12, "u1", "BTC", "0.1"),
]
# At T 100 u6's 650 is inside q_max 700 (at 600 it would meet 200); at 20,000 u1 may take out
# 0.1 BTC (at 10,000 it may not).
AFTER_FAILURE = [
    transfer("in", "g-u6", 13, "u6", "ABC", "650"),
    transfer("out", "g-u1-btc", 14, "u1", "BTC", "0.1"),
]


@contextmanager
def failing_chain_inserts(url: str) -> Iterator[None]:
    """Every insert into the hash chain's table fails: a database error inside the commit, after
    the events themselves were inserted in the same transaction."""
    with failing_inserts(url, CHAIN_TABLE):
        yield


def after_failure_reference(database_url: str, new_store: Callable[[], str]) -> Run:
    expected = reference(
        "after-failure",
        database_url,
        new_store,
        lambda ledger: one_by_one(ledger, [*market(), *AFTER_FAILURE]),
    )
    assert [a["status"] for a in expected.answers[-2:]] == ["accepted", "accepted"]
    return expected


def test_a_database_error_in_the_commit_records_nothing_and_leaves_no_stale_cache(
    database_url: str, new_store: Callable[[], str]
) -> None:
    expected = after_failure_reference(database_url, new_store)
    with Ledger(database_url) as ledger:
        one_by_one(ledger, market())
        count = event_count(ledger)
        with failing_chain_inserts(database_url), pytest.raises((sqlite3.Error, psycopg.Error)):
            ledger.execute_batch(DOOMED)
        assert event_count(ledger) == count
        assert all(ledger.first_outcome(command) is None for command in DOOMED)
        retries = ledger.write_statistics.retries
        answers = one_by_one(ledger, AFTER_FAILURE)
        assert ledger.write_statistics.retries == retries  # not saved by a version conflict
        log = logged(ledger)
        assert verify_chain(ledger).is_intact
    assert_same_answers(answers, expected.answers[len(market()) :])
    assert_same_log(log, expected.log)


def big_batch(prefix: str) -> list[CommandBase]:
    """New users' capped transfer-ins, more events than POSTGRES_COPY_EVENTS_MIN: on PostgreSQL
    the commit sends them by COPY (fewer events travel in one literal query with the COMMIT)."""
    count = limits.POSTGRES_COPY_EVENTS_MIN // 4 + 1  # >= 4 events each: request, account x2, pool
    return [transfer("in", f"{prefix}-{i}", 10, f"{prefix}{i}", "ABC", "1") for i in range(count)]


@pytest.mark.parametrize("failing_table", ["events", CHAIN_TABLE])
def test_a_database_error_in_a_big_batch_commit_records_nothing(
    database_url: str, new_store: Callable[[], str], failing_table: str
) -> None:
    """A failure while the events, or their links, are being sent: nothing of the batch stays,
    the positions it would have taken go to the next commit, and the log then equals a clean
    run's with an intact chain."""
    expected = reference(
        "big-batch",
        database_url,
        new_store,
        lambda ledger: one_by_one(ledger, [*market(), *big_batch("b")]),
    )
    with Ledger(database_url) as ledger:
        one_by_one(ledger, market())
        count = event_count(ledger)
        table = ledger.recorder.events_table_name if failing_table == "events" else CHAIN_TABLE  # type: ignore[attr-defined]
        with failing_inserts(database_url, table), pytest.raises((sqlite3.Error, psycopg.Error)):
            ledger.execute_batch(big_batch("b"))
        assert event_count(ledger) == count
        answers = [answer(a) for a in ledger.execute_batch(big_batch("b"))]
        assert sum(len(a["events"]) for a in answers) >= limits.POSTGRES_COPY_EVENTS_MIN
        log = logged(ledger)
        assert verify_chain(ledger).is_intact
    assert_same_answers(answers, expected.answers[len(market()) :])
    assert_same_log(log, expected.log)


def test_a_snapshot_that_cannot_be_stored_does_not_fail_the_committed_batch(
    database_url: str,
) -> None:
    """Snapshots are stored after the commit: their failure is counted and logged, the batch's
    outcomes are returned (it was recorded), and the next interval's snapshot is taken again."""
    interval = limits.SNAPSHOT_INTERVAL
    big = AssetPool.create_id("BIG")
    listing = [
        c("list_asset", "f-big", 5, asset="BIG", collateral_rank=7),
        c("set_collateral_cap", "f-cap", 5, asset="BIG", upper_limit="1000000000"),
        c("mark_prices", "f-mark", 5, prices={"BIG": "1"}),
    ]

    def transfers(prefix: str, count: int) -> list[CommandBase]:
        return [transfer("in", f"{prefix}-{i}", 10, f"f{i % 5}", "BIG", "1") for i in range(count)]

    with Ledger(database_url) as ledger:
        one_by_one(ledger, [*market(), *listing])
        first = transfers("f1", interval + 1 - int(ledger.repository.get(big).version))
        assert ledger.snapshots is not None
        snapshots_table = ledger.snapshots.recorder.events_table_name.split(".")[-1]
        with failing_inserts(database_url, snapshots_table):
            results = ledger.execute_batch(first)
        assert [answer(r)["status"] for r in results] == ["accepted"] * len(first)
        assert ledger.write_statistics.snapshot_failures == 1
        assert snapshot_versions(ledger, big) == []
        assert all(ledger.first_outcome(command) is not None for command in first)
        second = transfers("f2", interval)
        assert all(answer(r)["status"] == "accepted" for r in ledger.execute_batch(second))
        assert ledger.write_statistics.snapshot_failures == 1
        assert snapshot_versions(ledger, big) == [2 * interval]
        assert verify_snapshots(ledger).is_right
        assert verify_chain(ledger).is_intact


def test_a_lock_timeout_records_nothing_and_the_ledger_works_on_postgres(
    postgres_url: str, tmp_path: Path
) -> None:
    """Another session holds the events table: our batch waits out its lock timeout and fails."""
    schema = env_for_url(postgres_url)["POSTGRES_SCHEMA"]
    with Ledger(postgres_url, env={"POSTGRES_LOCK_TIMEOUT": "1"}) as ledger:
        one_by_one(ledger, market())
        count = event_count(ledger)
        events = sql.Identifier(schema, ledger.recorder.events_table_name)  # type: ignore[attr-defined]
        with psycopg.connect(POSTGRES_URL) as other:
            other.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(events))
            with pytest.raises(OperationalError):
                ledger.execute_batch([*DOOMED, *AFTER_FAILURE])
            other.rollback()
        assert event_count(ledger) == count
        answers = one_by_one(ledger, AFTER_FAILURE)
        log = logged(ledger)
    with Ledger(f"sqlite:///{tmp_path}/serial.sqlite3") as serial:
        expected = one_by_one(serial, [*market(), *AFTER_FAILURE])
        assert_same_log(log, logged(serial))
    assert_same_answers(answers, expected[len(market()) :])


def test_the_ledger_writes_again_after_its_writer_connection_was_terminated_on_postgres(
    postgres_url: str, tmp_path: Path
) -> None:
    """A PostgreSQL restart, a failover or an idle timeout ends the writer's session."""
    with Ledger(postgres_url) as ledger:
        one_by_one(ledger, market())
        writer = ledger._writer
        assert isinstance(writer, PostgresLogWriter)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (writer.connection.info.backend_pid,))
        with pytest.raises((OperationalError, psycopg.Error)):
            ledger.execute_batch(DOOMED)  # in flight when the session ended: may fail
        answers = one_by_one(ledger, AFTER_FAILURE)
        log = logged(ledger)
    with Ledger(f"sqlite:///{tmp_path}/serial.sqlite3") as serial:
        expected = one_by_one(serial, [*market(), *AFTER_FAILURE])
        assert_same_log(log, logged(serial))
    assert_same_answers(answers, expected[len(market()) :])


# --- 8. the aggregate cache's bound --------------------------------------------------------------


def assert_one_batch_equals_one_by_one(
    database_url: str, new_store: Callable[[], str], batch: list[CommandBase]
) -> None:
    """After the market, `batch` in one call answers and logs what it does one by one on a fresh
    store (whose last command is accepted)."""
    with Ledger(new_store()) as serial:
        expected = run_market_then(serial, [])
        expected += one_by_one(serial, batch)
        expected_log = logged(serial)
    assert expected[-1]["status"] == "accepted"
    with Ledger(database_url) as ledger:
        answers = run_market_then(ledger, [])
        answers += [answer(r) for r in ledger.execute_batch(batch)]
        log = logged(ledger)
    assert_same_answers(answers, expected)
    assert_same_log(log, expected_log)


def test_a_batch_touching_more_aggregates_than_the_cache_holds_equals_one_by_one(
    database_url: str, new_store: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGGREGATE_CACHE_SIZE (10,000) is below what a batch of BATCH_SIZE_MAX (10,000) commands
    can touch; the same with a bound of 8: v0 opens first, eleven accounts later v0 withdraws."""
    monkeypatch.setattr(limits, "AGGREGATE_CACHE_SIZE", 8)
    batch = [transfer("in", f"v-{i}", 10, f"v{i}", "ABC", "10") for i in range(12)]
    batch.append(transfer("out", "v-out", 11, "v0", "ABC", "5"))
    assert_one_batch_equals_one_by_one(database_url, new_store, batch)


def test_a_batch_touching_more_aggregates_than_the_cache_holds_commits(
    database_url: str, new_store: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with u2, whose account was committed before the batch: evicted, it is read again
    without the batch's own transfer, and what is decided on it conflicts with that transfer."""
    monkeypatch.setattr(limits, "AGGREGATE_CACHE_SIZE", 8)
    batch = [transfer("in", "w-u2", 10, "u2", "ABC", "10")]
    batch += [transfer("in", f"w-{i}", 10, f"w{i}", "ABC", "10") for i in range(12)]
    batch.append(transfer("out", "w-out", 11, "u2", "ABC", "105"))
    assert_one_batch_equals_one_by_one(database_url, new_store, batch)
