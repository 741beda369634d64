"""The rebuild's fast path, and figure 4 of `scripts/bench`, on both backends. No timing is
asserted.

A rebuild loads the read models differently from a catch-up (many pages per transaction,
plain inserts or COPY, the event index filled in SQL on PostgreSQL, writes in a thread of their
own, secondary indexes created at the end). What it loads must be what a catch-up applying
one event per transaction writes, byte for byte: every column of every read model table is
compared as the database stores it (SQLite's `quote`, PostgreSQL's text of the value, so that
a type or a numeric scale that differs shows), on a `ledger simulate` history (liquidations,
top-ups, margin calls, verifications, mode switches, the insurance fund) and on a bulk one.
"""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger, limits
from ledger.bench.core import Backend, BenchConfig
from ledger.bench.rebuild import SECTION, TARGET_RATIO, run
from ledger.cli.simulate import run_commands
from ledger.domain.account import MarginAccount
from ledger.money import format_plain
from ledger.simulate import generate
from ledger.simulate.bulk import generate_bulk_history
from projections.events import plain_of, time_key_of
from projections.runner import MODELS, ReadModels
from projections.sql import Db, Writer, parse_time_key, time_key
from tests.concurrency.store import events_of_type
from tests.conftest import POSTGRES_URL, postgres_required

Dump = dict[str, list[tuple[Any, ...]]]


def dump(read_models: ReadModels) -> Dump:
    """Every row of every read model table in key order, each value as the database stores it."""
    rows: Dump = {}
    with read_models.store.transaction(commit=False) as db:
        for model in MODELS:
            for table in model.tables:
                shown = ", ".join(
                    f"{column}::text" if db.is_postgres else f"quote({column})"
                    for column in table.column_names
                )
                rows[table.name] = db.query(
                    f"SELECT {shown} FROM {{{table.name}}} ORDER BY {', '.join(table.primary_key)}"
                )
    return rows


def catch_up_from_scratch(read_models: ReadModels, batch: int) -> None:
    with read_models.store.transaction() as db:
        for name, model in read_models.models.items():
            read_models.store.drop_tables(db, model.tables)
            read_models.store.forget(db, read_models.key(name))
            read_models.store.ensure_tracked(db, read_models.key(name))
            read_models.store.create_tables(db, model.tables)
    saved = limits.PROJECTION_BATCH_SIZE
    limits.PROJECTION_BATCH_SIZE = batch
    try:
        read_models.catch_up()
    finally:
        limits.PROJECTION_BATCH_SIZE = saved


def assert_rebuild_equals_catch_up(url: str, batch: int) -> Dump:
    with Ledger(url) as ledger, ReadModels(ledger) as read_models:
        head = read_models.head()
        assert read_models.rebuild() == head
        rebuilt = dump(read_models)
        catch_up_from_scratch(read_models, batch)
        assert read_models.positions() == dict.fromkeys(read_models.models, head)
        caught_up = dump(read_models)
    for name in rebuilt:
        assert len(rebuilt[name]) == len(caught_up[name]), name
        for found, expected in zip(rebuilt[name], caught_up[name], strict=True):
            assert found == expected, name
    assert rebuilt == caught_up
    return rebuilt


@pytest.fixture
def simulated(database_url: str) -> str:
    commands = generate(3, accounts=30, hours=8, start=datetime(2026, 3, 2, tzinfo=UTC))
    with Ledger(database_url) as ledger:
        outcomes = run_commands(ledger, list(commands), show_progress=False)
        assert {outcome["status"] for outcome in outcomes} == {"accepted", "rejected", "pending"}
        for event_class in (MarginAccount.Liquidated, MarginAccount.ToppedUp):
            assert events_of_type(ledger, event_class), event_class.__name__
    return database_url


def test_a_rebuild_loads_what_a_catch_up_event_by_event_writes(simulated: str) -> None:
    rebuilt = assert_rebuild_equals_catch_up(simulated, batch=1)
    assert all(rebuilt[table.name] for model in MODELS for table in model.tables), (
        "every table has rows"
    )


def test_a_rebuild_of_a_bulk_history_loads_what_a_catch_up_writes(database_url: str) -> None:
    """Many pages per transaction (the rebuild's) against pages of 97 events (a catch-up's
    transactions end elsewhere: what is written must not depend on where)."""
    with Ledger(database_url) as ledger:
        generate_bulk_history(ledger, events=4_000, users=60, seed=5)
    saved = limits.PROJECTION_BATCH_SIZE
    limits.PROJECTION_BATCH_SIZE = 250  # the rebuild reads pages of 250: several per transaction
    try:
        assert_rebuild_equals_catch_up(database_url, batch=97)
    finally:
        limits.PROJECTION_BATCH_SIZE = saved


def test_a_model_rebuilt_alone_catches_up_with_the_others(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        generate_bulk_history(ledger, events=1_500, users=30, seed=6)
        with ReadModels(ledger) as read_models:
            read_models.catch_up()
            before = dump(read_models)
            read_models.rebuild(["journal"])
            assert dump(read_models) == before
            generate_bulk_history(ledger, events=500, users=10, seed=7)
            read_models.rebuild(["accounts", "event_index"])
            read_models.catch_up()
            after = dump(read_models)
        with ReadModels(ledger) as read_models:
            read_models.rebuild()
            assert dump(read_models) == after


# --- the pieces of the fast path ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123456Z",
        "2026-01-01T00:00:00.500000Z",
        "2026-01-01T02:00:00+02:00",
        "2026-01-01T02:00:00.25+02:00",
        "2025-12-31T23:59:59.999999-01:30",
    ],
)
def test_a_stored_time_gives_the_key_of_the_time_it_names(text: str) -> None:
    assert time_key_of(text) == time_key(parse_time_key(text))


@pytest.mark.parametrize(
    "text", ["0", "-0", "0.00000000", "100", "3757.50000000", "-0.50", "1E+2", "0E-8", "1.0e3"]
)
def test_a_stored_decimal_gives_the_plain_text_of_its_value(text: str) -> None:
    assert plain_of(text) == format_plain(Decimal(text))


def test_a_failed_write_in_the_writer_thread_is_raised_to_the_asking_thread() -> None:
    done: list[int] = []

    def fail() -> None:
        raise ValueError("no such table")

    writer = Writer()
    try:
        writer.submit(lambda: done.append(1))
        writer.submit(fail)
        writer.submit(lambda: done.append(2))  # after an error: not run
        with pytest.raises(ValueError, match="no such table"):
            writer.wait()
        assert done == [1]
    finally:
        writer.close()


def test_closing_the_writer_drops_the_writes_still_waiting() -> None:
    """What a failed transaction does before its rollback: no write of it may run after."""
    started, release, done = threading.Event(), threading.Event(), []

    def slow() -> None:
        started.set()
        release.wait(10)
        done.append("running")

    writer = Writer()
    writer.submit(slow)
    writer.submit(lambda: done.append("waiting"))
    assert started.wait(10)
    closing = threading.Thread(target=writer.close)
    closing.start()
    time.sleep(0.05)  # close() has asked the thread to stop while `slow` runs
    release.set()
    closing.join(10)
    assert not closing.is_alive() and done == ["running"]


def test_a_query_sees_every_write_the_writer_thread_was_given(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger, ReadModels(ledger) as read_models:
        with read_models.store.transaction() as db:
            assert isinstance(db, Db)
            db.writer = writer = Writer()
            try:
                for position in range(1, 301):
                    db.execute(
                        "INSERT INTO {reconcile_checkpoints} (position, checked_at) VALUES (?, ?)",
                        (position, "now"),
                    )
                [(count,)] = db.query("SELECT count(*) FROM {reconcile_checkpoints}")
                db.wait()
            finally:
                writer.close()
        assert count == 300


# --- figure 4 ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "postgres" and not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    yield request.param


def test_the_rebuild_figures_of_a_quick_run(backend: Backend) -> None:
    config = BenchConfig(
        backends=(backend,),
        postgres_url=POSTGRES_URL,
        runs=1,
        quick=True,
        rebuild_events=(600, 1_800),
        growth_users=20,
    )
    figures = run(config)
    assert {figure.section for figure in figures} == {SECTION}
    assert all(figure.backend == backend for figure in figures)
    rates = [f for f in figures if f.unit == "events/s" and f.target == TARGET_RATIO]
    assert len(rates) == 2
    for figure in rates:
        assert figure.value.median > 0 and figure.ceiling is not None
        assert figure.ratio == pytest.approx(figure.value.median / figure.ceiling.median)
        assert int(figure.notes["events"]) >= 600
    memory = [f for f in figures if f.unit == "MB"]
    assert len(memory) == 3  # each size's peak, and their growth
    growth = memory[-1]
    assert growth.target is not None and growth.better == "lower" and growth.ratio is not None
    assert all(f.value.median > 0 for f in memory)
