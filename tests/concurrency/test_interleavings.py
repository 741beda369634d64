"""Chosen interleavings of two writers, made deterministic.

The process tests (test_hot_asset.py) let the scheduler pick the interleavings; here another writer
(a second, independent Ledger on the same store, with its own connections) tries to write at one
chosen instant: after a command was decided and before it is committed, or between two of its
reads. Those are exactly the windows a concurrent process would have, if the write path let it in:
it holds the log's write lock from its first read to its commit (ledger/log_writer.py), so the
other writer must wait, and then decides on what this one committed. Each test shows that the
other writer waited, and that the run equals a serial one in commit order. Last, a
`ledger submit` whose store fails to open at that moment.
"""

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.handoff import HandedOff, Offer
from ledger.write_transaction import WriteTransaction
from tests.concurrency.store import (
    assert_serial_replay_identical,
    events_of_type,
    recorded_requests,
)
from tests.conftest import POSTGRES_URL
from tests.support import command, run, setup_capped_asset, transfer_in

LOCK_WAIT_POLLS_MAX = 200_000  # each poll is one query: a bound of tens of seconds, never a hang
CLI_SECONDS_MAX = 120
OTHER_WRITER_SECONDS_MAX = 60
# SQLite cannot say who waits on its lock: a writer not done after this long is waiting (a
# command takes milliseconds); one that was merely slow to start makes the check weaker, never
# wrong, and the serial replay still checks what was decided.
SQLITE_WAITING_SECONDS = 0.5

T = TypeVar("T")


class InterleavingLedger(Ledger):
    """A Ledger that lets another writer try to write at a chosen instant: once, between deciding
    a command and committing it (`before_commit`), or just before it next reads one aggregate
    (`before_reading[aggregate_id]`)."""

    name = Ledger.name  # the library names tables after the application: keep the same store
    before_commit: Callable[[], None] | None = None

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.before_reading: dict[UUID, Callable[[], None]] = {}
        # These interleavings are those of a transaction that holds the lock while it decides;
        # a lone writer's decision before locking has its own (test_postgres_speculation.py).
        if self._writer is not None:
            self._writer.speculate = lambda after: None  # type: ignore[method-assign]

    def _write(
        self, work: Callable[[WriteTransaction], T], ask: Sequence[UUID], offer: Offer | None
    ) -> T | HandedOff:
        def hooked(transaction: WriteTransaction) -> T:
            read = transaction.get

            def get(aggregate_id: UUID) -> Any:
                hook = self.before_reading.pop(aggregate_id, None)
                if hook is not None:
                    hook()
                return read(aggregate_id)

            transaction.get = get  # type: ignore[method-assign]
            result = work(transaction)
            hook, self.before_commit = self.before_commit, None
            if hook is not None:
                hook()
            return result

        return super()._write(hooked, ask, offer)


class OtherWriter:
    """Another writer's work, started in a thread while `holder` holds the write lock; it
    returns once that writer waits on the lock."""

    def __init__(self, holder: Ledger, work: Callable[[], Any]) -> None:
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()
        _wait_until_waiting(holder, self.thread)

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.results.append(work())
        except BaseException as error:  # re-raised in the test's thread by outcome()
            self.errors.append(error)

    def outcome(self) -> Any:
        self.thread.join(OTHER_WRITER_SECONDS_MAX)
        assert not self.thread.is_alive(), "the other writer never got the lock"
        if self.errors:
            raise self.errors[0]
        return self.results[0]


def _wait_until_waiting(holder: Ledger, thread: threading.Thread) -> None:
    writer = holder._writer  # the write path's own connection, holding the lock now
    connection = getattr(writer, "connection", None)
    if isinstance(connection, psycopg.Connection):
        _wait_until_blocked_by(connection.info.backend_pid)
        return
    thread.join(SQLITE_WAITING_SECONDS)
    assert thread.is_alive(), "the other writer did not wait for the lock"


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


def test_a_transfer_sent_while_another_is_decided_waits_and_sees_its_total(
    database_url: str, fresh_url: str
) -> None:
    """Goal: a transfer can never be decided against a total another transfer is changing: it
    waits for that one's commit and decides on the new T, so the cap holds (DOMAIN.md §3) and
    the run equals a serial one. (Under the former optimistic design it was decided, conflicted
    and was decided again; now it is not let in.)

    Method: U = 1000, T = 900 (band C, q_max = 100). u2 asks for 100; after it is decided and
    before it commits, u3 asks for 50 from another Ledger: u3 waits; u2's 100 is accepted (T =
    1000), then u3 is decided on T = 1000, band D, and refused.
    """
    with InterleavingLedger(database_url) as ledger, Ledger(database_url) as other:
        setup_capped_asset(ledger, upper_limit="1000", fixed_quota_usdt="3000")
        assert transfer_in(ledger, "u0", "800").is_accepted
        assert transfer_in(ledger, "u1", "100").is_accepted
        waiting: list[OtherWriter] = []
        ledger.before_commit = lambda: waiting.append(
            OtherWriter(ledger, lambda: transfer_in(other, "u3", "50"))
        )

        outcome = transfer_in(ledger, "u2", "100")
        (writer,) = waiting
        late = writer.outcome()

        assert outcome.is_accepted, outcome
        assert outcome.context["q_max"] == "100"
        assert late.status == "rejected", late
        assert late.reason == "collateral_cap"
        assert late.context["total"] == "1000"
        assert late.context["band"] == "D"
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
        assert pool.platform_total == Decimal(1000)
        recorded = recorded_requests(ledger)
        assert [r.request_id for r in recorded][-2:] == [outcome.request_id, late.request_id]
    assert_serial_replay_identical(recorded, fresh_url)


def test_a_request_racing_its_own_retry_is_applied_once(database_url: str, fresh_url: str) -> None:
    """Goal: the same request sent twice at once (a client retry) is applied once; the later
    attempt answers the first one's outcome as a duplicate.

    Method: between deciding r-dup and committing it, the other writer sends the same r-dup: it
    waits for the lock, then finds the Request record.
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
        waiting: list[OtherWriter] = []
        ledger.before_commit = lambda: waiting.append(OtherWriter(ledger, lambda: run(other, data)))

        outcome = run(ledger, data)
        (writer,) = waiting
        retry = writer.outcome()

        assert outcome.is_accepted and not outcome.duplicate
        assert retry.duplicate
        assert retry.model_copy(update={"duplicate": False}) == outcome
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


@pytest.mark.parametrize("instant", ["before_commit", "between_reads"])
def test_a_price_mark_sent_while_a_transfer_is_decided_waits_for_it(
    database_url: str, fresh_url: str, instant: str
) -> None:
    """Goal: DOMAIN.md §3/§8: F is the fixed quota at the price in force at the transfer's
    effective_at, and concurrent writers must be equivalent to a serial run in commit order. A
    mark sent while a transfer is decided (after it read the asset's price and before it read
    the pool, or after it decided) waits: the transfer decides on one consistent price, the one
    in force when it started, and the mark follows it.
    (Regression, former design: transfers once read the price from the Asset, which they do not
    save, so a mark committed meanwhile was no conflict and the transfer kept the old price.)

    Method: U = 100000, F = 3000 USDT, price 1, T = 85000 (band B, q_max = F = 3000 tokens). u9
    asks for 2500; the other writer marks the price 2 at the same effective_at. Serially
    (transfer, then mark) the 2500 is accepted at price 1.
    """
    with InterleavingLedger(database_url) as ledger, Ledger(database_url) as other:
        setup_capped_asset(ledger, upper_limit="100000", fixed_quota_usdt="3000")
        assert transfer_in(ledger, "u0", "80000").is_accepted
        assert transfer_in(ledger, "u1", "3000").is_accepted
        assert transfer_in(ledger, "u2", "2000").is_accepted
        waiting: list[OtherWriter] = []

        def mark() -> None:
            waiting.append(
                OtherWriter(ledger, lambda: run(other, command("mark_prices", prices={"ABC": "2"})))
            )

        if instant == "before_commit":
            ledger.before_commit = mark
        else:
            ledger.before_reading[AssetPool.create_id("ABC")] = mark

        outcome = transfer_in(ledger, "u9", "2500")
        (writer,) = waiting
        assert writer.outcome().is_accepted

        assert outcome.is_accepted, outcome
        assert outcome.context["price_usdt"] == "1", outcome.context
        assert outcome.context["q_max"] == "3000", outcome.context
        recorded = recorded_requests(ledger)
        assert [r.command_type for r in recorded][-2:] == ["transfer_in", "mark_prices"]
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
