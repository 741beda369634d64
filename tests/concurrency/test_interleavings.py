"""Chosen interleavings of two writers, made deterministic.

The process tests (test_hot_asset.py) let the scheduler pick the interleavings; here another writer
(a second, independent Ledger on the same store, with its own connections) commits at one chosen
instant: after a command was decided and before it is saved, or between two of its reads. Those
are exactly the windows a concurrent process has, so each test shows what the ledger does with
them, every run. Last, a `ledger submit` whose store fails to open at that moment.
"""

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from tests.concurrency.store import (
    assert_serial_replay_identical,
    events_of_type,
    recorded_requests,
)
from tests.conftest import POSTGRES_URL
from tests.support import command, run, setup_capped_asset, transfer_in

LOCK_WAIT_POLLS_MAX = 200_000  # each poll is one query: a bound of tens of seconds, never a hang
CLI_SECONDS_MAX = 120


class InterleavingLedger(Ledger):
    """A Ledger that lets another writer commit at a chosen instant: once, between deciding a
    command and saving it (`before_next_save`), or just before it next reads one aggregate
    (`before_reading[aggregate_id]`)."""

    name = Ledger.name  # the library names tables after the application: keep the same store
    before_next_save: Callable[[], None] | None = None

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.before_reading: dict[UUID, Callable[[], None]] = {}
        read = self.repository.get

        def get(aggregate_id: UUID, *args: Any, **kwargs: Any) -> Any:
            hook = self.before_reading.pop(aggregate_id, None)
            if hook is not None:
                hook()
            return read(aggregate_id, *args, **kwargs)

        self.repository.get = get  # type: ignore[method-assign]

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        hook, self.before_next_save = self.before_next_save, None
        if hook is not None:
            hook()
        return super().save(*objs, **kwargs)


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty store on the same backend as `database_url`, for serial replays."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/replay.sqlite3"
        return
    schema = f"test_replay_{uuid.uuid4().hex[:16]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def test_a_transfer_decided_on_a_stale_total_is_decided_again(
    database_url: str, fresh_url: str
) -> None:
    """Goal: a transfer decided against T, then beaten by another user's transfer, is decided
    again against the new T: the cap holds (DOMAIN.md §3) and the run equals a serial one.

    Method: U = 1000, T = 900 (band C, q_max = 100). u2 asks for 100 (fits the stale T); before
    it is saved, u3's 50 commits (T = 950). The save conflicts on the pool, the retry sees
    q_max = 50 and rejects the 100 whole.
    """
    with InterleavingLedger(database_url) as ledger, Ledger(database_url) as other:
        setup_capped_asset(ledger, upper_limit="1000", fixed_quota_usdt="3000")
        assert transfer_in(ledger, "u0", "800").is_accepted
        assert transfer_in(ledger, "u1", "100").is_accepted
        ledger.before_next_save = lambda: _accept(transfer_in(other, "u3", "50"))

        outcome = transfer_in(ledger, "u2", "100")

        assert ledger.before_next_save is None, "the other writer ran"
        assert outcome.status == "rejected", outcome
        assert outcome.reason == "collateral_cap"
        assert outcome.context["total"] == "950"
        assert outcome.context["q_max"] == "50"
        assert outcome.context["band"] == "C"
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
        assert pool.platform_total == Decimal(950)
        recorded = recorded_requests(ledger)
    assert_serial_replay_identical(recorded, fresh_url)


def test_a_request_racing_its_own_retry_is_applied_once(database_url: str, fresh_url: str) -> None:
    """Goal: the same request sent twice at once (a client retry) is applied once; the losing
    attempt answers the winner's outcome as a duplicate.

    Method: between deciding r-dup and saving it, the other writer executes the same r-dup and
    commits; the first save then conflicts, and the retry finds the Request record.
    """
    with InterleavingLedger(database_url) as ledger, Ledger(database_url) as other:
        setup_capped_asset(ledger, upper_limit="1000", fixed_quota_usdt="3000")
        data = command(
            "transfer_in",
            request_id="r-dup",
            user="u1",
            account="cross",
            asset="ABC",
            quantity="300",
        )
        first: list[Any] = []
        ledger.before_next_save = lambda: first.append(run(other, data))

        outcome = run(ledger, data)

        assert len(first) == 1 and first[0].is_accepted and not first[0].duplicate
        assert outcome.duplicate
        assert outcome.model_copy(update={"duplicate": False}) == first[0]
        account = ledger.get_aggregate(MarginAccount, MarginAccount.create_id("u1", "cross"))
        assert account.holding("ABC") == Decimal(300)
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
        assert pool.platform_total == Decimal(300)
        assert [e.request_id for e in events_of_type(ledger, MarginAccount.TransferredIn)] == [
            "r-dup"
        ]
        recorded = recorded_requests(ledger)
        assert [r.request_id for r in recorded].count("r-dup") == 1
    assert_serial_replay_identical(recorded, fresh_url)


def test_a_price_mark_committed_before_a_transfer_is_the_price_it_decides_on(
    database_url: str, fresh_url: str
) -> None:
    """Goal: DOMAIN.md §3/§8: F is the fixed quota at the price in force at the transfer's
    effective_at, and concurrent writers must be equivalent to a serial run in commit order.
    (Regression: transfers once read the price from the Asset, which they do not save, so a
    mark committed meanwhile was no conflict and the transfer kept the old price.)

    Method: U = 100000, F = 3000 USDT, price 1, T = 85000 (band B, q_max = F = 3000). u9 asks
    for 2500; before it is saved, another writer marks the price 2 at the same effective_at
    (F = 1500 tokens) and commits. Serially (mark, then transfer) the 2500 is refused with
    q_max 1500, and so must it be here: the mark conflicts with the decision, which is retried.
    """
    with InterleavingLedger(database_url) as ledger, Ledger(database_url) as other:
        setup_capped_asset(ledger, upper_limit="100000", fixed_quota_usdt="3000")
        assert transfer_in(ledger, "u0", "80000").is_accepted
        assert transfer_in(ledger, "u1", "3000").is_accepted
        assert transfer_in(ledger, "u2", "2000").is_accepted
        ledger.before_next_save = lambda: _accept(
            run(other, command("mark_prices", prices={"ABC": "2"}))
        )

        outcome = transfer_in(ledger, "u9", "2500")

        assert ledger.before_next_save is None, "the other writer ran"
        recorded = recorded_requests(ledger)
        assert [r.command_type for r in recorded][-2:] == ["mark_prices", "transfer_in"]
        assert outcome.context["price_usdt"] == "2", outcome.context
        assert outcome.status == "rejected", outcome
    assert_serial_replay_identical(recorded, fresh_url)


def test_a_price_mark_committed_between_a_transfers_reads_is_decided_again(
    database_url: str, fresh_url: str
) -> None:
    """Goal: a price mark that commits while a transfer is reading its state is just another
    concurrent write: the transfer decides on one consistent price (here the new one, since the
    mark commits first) and the run equals a serial one.

    Method: as above (band B, u9 asks for 2500), but the other writer marks the price 2 after the
    transfer read the asset and before it reads the pool.
    """
    with InterleavingLedger(database_url) as ledger, Ledger(database_url) as other:
        setup_capped_asset(ledger, upper_limit="100000", fixed_quota_usdt="3000")
        assert transfer_in(ledger, "u0", "80000").is_accepted
        assert transfer_in(ledger, "u1", "3000").is_accepted
        assert transfer_in(ledger, "u2", "2000").is_accepted
        ledger.before_reading[AssetPool.create_id("ABC")] = lambda: _accept(
            run(other, command("mark_prices", prices={"ABC": "2"}))
        )

        outcome = transfer_in(ledger, "u9", "2500")

        assert not ledger.before_reading, "the other writer ran"
        assert outcome.context["price_usdt"] == "2", outcome.context
        assert outcome.status == "rejected", outcome
        assert outcome.context["q_max"] == "1500", outcome.context
        recorded = recorded_requests(ledger)
    assert_serial_replay_identical(recorded, fresh_url)


def test_submit_that_cannot_open_its_store_exits_2_never_1(postgres_url: str) -> None:
    """Goal: exit code 1 means an invalid line; a database failure exits 2 with one error line.
    (Regression: an opening that failed with the library's InternalError 'tuple concurrently
    updated', which two processes opening one store at once used to hit, died with a traceback
    and exit code 1.)

    Method: hold, in an open transaction, the CREATE OR REPLACE FUNCTION that opening a store
    runs; start `ledger submit -` with one valid line; once it waits on that catalog row, commit:
    its own statement then fails. It must fail cleanly (2, no traceback) or succeed (0).
    """
    holder, blocked_backend = _hold_the_opening_statement(postgres_url)
    line = '{"type": "list_asset", "request_id": "r1", "asset": "USDT", "collateral_rank": 1}\n'
    submit = subprocess.Popen(
        [str(Path(sys.executable).with_name("ledger")), "submit", "-", "--db", postgres_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_blocked_by(blocked_backend)
    finally:
        holder.commit()
        holder.close()
    stdout, stderr = submit.communicate(line, timeout=CLI_SECONDS_MAX)
    assert submit.returncode in (0, 2), (submit.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    if submit.returncode == 0:
        assert '"status":"accepted"' in stdout.replace(" ", ""), stdout


# --- helpers -------------------------------------------------------------------------------------


def _accept(outcome: Any) -> None:
    assert outcome.is_accepted, outcome


def _hold_the_opening_statement(url: str) -> tuple[psycopg.Connection[Any], int]:
    """Create the store, then run its CREATE OR REPLACE FUNCTION again in a transaction left
    open: the state another process is in, in the middle of Ledger()."""
    with Ledger(url) as ledger:
        statements = [
            s
            for s in ledger.recorder.sql_create_statements  # the library's own DDL, as run
            if "CREATE OR REPLACE FUNCTION" in s.as_string()
        ]
    assert statements, "the library no longer creates a function: revisit this test"
    holder = psycopg.connect(POSTGRES_URL)
    for statement in statements:
        holder.execute(statement)
    return holder, holder.info.backend_pid


def _wait_until_blocked_by(backend_pid: int) -> None:
    """Return once some other session waits on a lock held by `backend_pid`."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as watcher:
        for _poll in range(LOCK_WAIT_POLLS_MAX):
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (backend_pid,),
            ).fetchone()
            if row is not None and row[0] > 0:
                return
    raise AssertionError(f"no session blocked on backend {backend_pid}")
