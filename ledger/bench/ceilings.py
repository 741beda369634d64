"""The database's own ceilings, measured in the same run as the ledger's figures.

Raw rows shaped like the library's events table (a position, originator id and version unique
together, topic, JSON state of the ledger's median stored event size) written and read with the
driver alone: no ledger, no library. SQLite in WAL with synchronous=FULL, as the ledger runs it;
PostgreSQL with the server's settings (durability on). Each write measurement has a fresh table
and an untimed warm-up; rows are generated before the timer starts.
"""

import json
import shutil
import sqlite3
import statistics
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.bench.core import Backend, BenchConfig, Figure, Timing, progress, sampled, timed

SECTION = "ceilings"
TOPIC = "ledger.domain.account:MarginAccount.TransferredIn"
PAGE = 1000  # keyset page of the read ceiling
BATCH = 1000  # rows per transaction of the batch ceiling
WARMUP_ROWS = 50
EVENT_BYTES_SAMPLE = 20  # capped transfer-ins whose stored events give the row size

Row = tuple[Any, int, str, bytes]


class Ceilings(BaseModel):
    """One backend's ceilings, each over `runs` runs (rows/s; the 2-row one in txns/s)."""

    model_config = ConfigDict(frozen=True)

    backend: Backend
    row_bytes: int
    single_row: Timing
    two_row: Timing
    batch: Timing  # executemany on PostgreSQL
    copy_batch: Timing | None  # COPY, PostgreSQL only
    read_decode: Timing

    def figures(self) -> list[Figure]:
        named: list[tuple[str, str, Timing | None]] = [
            ("raw single-row INSERT+COMMIT", "rows/s", self.single_row),
            ("raw 2-row INSERT+COMMIT", "txns/s", self.two_row),
            (f"raw {BATCH}-row batch INSERT per txn", "rows/s", self.batch),
            (f"raw {BATCH}-row COPY per txn", "rows/s", self.copy_batch),
            (f"raw read+decode, pages of {PAGE}", "rows/s", self.read_decode),
        ]
        notes: dict[str, str | int | float] = {"row_state_bytes": self.row_bytes}
        return [
            Figure.judged(
                section=SECTION,
                name=name,
                backend=self.backend,
                unit=unit,
                value=value,
                notes=notes,
            )
            for name, unit, value in named
            if value is not None
        ]


def measure(backend: Backend, config: BenchConfig, row_bytes: int) -> Ceilings:
    table = raw_table_of(backend)
    runs = config.runs

    def writes(rows: int, write: Callable[[Any, list[Row]], int]) -> float:
        data = rows_of(rows + WARMUP_ROWS, row_bytes, backend)
        with table(config) as connection:
            write(connection, data[:WARMUP_ROWS])
            return timed(lambda: write(connection, data[WARMUP_ROWS:]))

    progress(f"{backend}: ceilings (rows of {row_bytes} bytes)")
    single = sampled(runs, lambda: writes(config.ceiling_rows, _single_rows(backend)))
    two = sampled(runs, lambda: writes(2 * config.ceiling_rows, two_row_txns(backend)))
    batch = sampled(runs, lambda: writes(config.ceiling_batch_rows, batches(backend)))
    copy = None
    if backend == "postgres":
        copy = sampled(runs, lambda: writes(config.ceiling_batch_rows, _copy_batches))
    with table(config) as connection:
        batches(backend)(connection, rows_of(config.read_rows, row_bytes, backend))
        reader = _reader(backend, connection, "raw_events", "position")
        read = sampled(runs, lambda: timed(lambda: reader(config.read_rows)))
    return Ceilings(
        backend=backend,
        row_bytes=row_bytes,
        single_row=single,
        two_row=_halved(two),
        batch=batch,
        copy_batch=copy,
        read_decode=read,
    )


def _halved(rows_per_second: Timing) -> Timing:
    """2-row transactions were counted in rows: two rows make one transaction."""
    return Timing(
        median=rows_per_second.median / 2,
        low=rows_per_second.low / 2,
        high=rows_per_second.high / 2,
        runs=rows_per_second.runs,
    )


def read_decode_rate(backend: Backend, url: str, rows: int | None = None) -> float:
    """Rows/s of reading and decoding an EXISTING ledger store's events table with the driver
    alone (keyset pages of 1,000, `json.loads` of each state; on SQLite also the uuid), at most
    `rows` rows from the first (all when None): the ceiling of a rebuild over that store."""
    from ledger.application import Ledger
    from ledger.persistence import env_for_url, postgres_connect, raw_position_column, raw_table

    with Ledger(url, read_only=True) as ledger:  # only for the table's name and position column
        table, column = raw_table(ledger.recorder), raw_position_column(ledger.recorder)
        total = ledger.recorder.max_notification_id() or 0
    limit = total if rows is None else min(rows, total)
    env = env_for_url(url)
    if backend == "sqlite":
        connection: Any = sqlite3.connect(env["SQLITE_DBNAME"])
    else:
        connection = postgres_connect(env)
    with connection:
        reader = _reader(backend, connection, table, column)
        reader(min(limit, PAGE))  # warm-up, untimed
        result = timed(lambda: reader(limit))
    if backend == "sqlite":
        connection.close()  # sqlite3's context manager only ends the transaction
    return result


def ledger_event_bytes(config: BenchConfig) -> int:
    """The median size of the ledger's stored event state for capped transfer-ins (the same on
    both backends: the JSON transcoder writes the same bytes), from a small scratch store."""
    from ledger.application import Ledger
    from ledger.bench.commands import capped_transfers, set_up_capped_asset
    from ledger.bench.core import fresh_store
    from ledger.persistence import raw_rows, raw_table

    with fresh_store("sqlite", config) as url, Ledger(url) as ledger:
        set_up_capped_asset(ledger, upper_limit="1000000000000")
        for command in capped_transfers(EVENT_BYTES_SAMPLE, "size"):
            ledger.execute(command)
        sizes = raw_rows(ledger.recorder, f"SELECT length(state) FROM {raw_table(ledger.recorder)}")
    return int(statistics.median(int(size) for (size,) in sizes))


# --- rows and tables --------------------------------------------------------------------------


def rows_of(count: int, row_bytes: int, backend: Backend) -> list[Row]:
    """`count` event-shaped rows, each of a new originator at version 1, states of `row_bytes`."""
    rows: list[Row] = []
    for number in range(count):
        originator = uuid.uuid4()
        rows.append(
            (
                str(originator) if backend == "sqlite" else originator,
                1,
                TOPIC,
                _state(number, originator, row_bytes),
            )
        )
    return rows


def _state(number: int, originator: uuid.UUID, row_bytes: int) -> bytes:
    body = {
        "originator_id": str(originator),
        "originator_version": 1,
        "asset": "ABC",
        "quantity": str(number),
        "effective_at": datetime.now(UTC).isoformat(),
        "pad": "",
    }
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"))
    body["pad"] = "x" * max(0, row_bytes - len(encoded))
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def raw_table_of(backend: Backend) -> Callable[[BenchConfig], AbstractContextManager[Any]]:
    """A fresh raw events table on `backend` (a context manager yielding its connection)."""
    return _sqlite_table if backend == "sqlite" else _postgres_table


@contextmanager
def _sqlite_table(config: BenchConfig) -> Iterator[sqlite3.Connection]:
    folder = tempfile.mkdtemp(prefix="ledger-bench-raw-")
    # Autocommit mode: every BEGIN and COMMIT below is the one sent, nothing implicit.
    connection = sqlite3.connect(str(Path(folder) / "raw.sqlite3"), isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")  # the ledger's durability, never OFF
        connection.execute(
            "CREATE TABLE raw_events (position INTEGER PRIMARY KEY, originator_id TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL, "
            "UNIQUE (originator_id, originator_version))"
        )
        yield connection
    finally:
        connection.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _postgres_table(config: BenchConfig) -> Iterator[Any]:
    import psycopg

    schema = f"bench_raw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(config.postgres_url, connect_timeout=5) as connection:
        try:
            connection.execute(f'CREATE SCHEMA "{schema}"')
            connection.execute(f'SET search_path TO "{schema}"')
            connection.execute(
                "CREATE TABLE raw_events (position bigserial PRIMARY KEY, "
                "originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
                "topic text NOT NULL, state bytea NOT NULL, "
                "UNIQUE (originator_id, originator_version))"
            )
            connection.commit()
            yield connection
        finally:
            connection.rollback()
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            connection.commit()


COLUMNS = "originator_id, originator_version, topic, state"


def _placeholders(backend: Backend, rows: int) -> str:
    mark = "?" if backend == "sqlite" else "%s"
    one = f"({', '.join([mark] * 4)})"
    return ", ".join([one] * rows)


def _single_rows(backend: Backend) -> Callable[[Any, list[Row]], int]:
    statement = f"INSERT INTO raw_events ({COLUMNS}) VALUES {_placeholders(backend, 1)}"

    def write(connection: Any, rows: list[Row]) -> int:
        for row in rows:
            _begin(backend, connection)
            connection.execute(statement, row)
            _commit(backend, connection)
        return len(rows)

    return write


def two_row_txns(backend: Backend) -> Callable[[Any, list[Row]], int]:
    """One two-row INSERT and a COMMIT per transaction; counts rows (halved by the caller)."""
    statement = f"INSERT INTO raw_events ({COLUMNS}) VALUES {_placeholders(backend, 2)}"

    def write(connection: Any, rows: list[Row]) -> int:
        for first in range(0, len(rows) - 1, 2):
            _begin(backend, connection)
            connection.execute(statement, (*rows[first], *rows[first + 1]))
            _commit(backend, connection)
        return len(rows) - len(rows) % 2

    return write


def batches(backend: Backend) -> Callable[[Any, list[Row]], int]:
    """1,000 rows per transaction with executemany (psycopg 3 pipelines it)."""
    statement = f"INSERT INTO raw_events ({COLUMNS}) VALUES {_placeholders(backend, 1)}"

    def write(connection: Any, rows: list[Row]) -> int:
        for first in range(0, len(rows), BATCH):
            _begin(backend, connection)
            connection.cursor().executemany(statement, rows[first : first + BATCH])
            _commit(backend, connection)
        return len(rows)

    return write


def _copy_batches(connection: Any, rows: list[Row]) -> int:
    for first in range(0, len(rows), BATCH):
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY raw_events ({COLUMNS}) FROM STDIN") as copy,
        ):
            for row in rows[first : first + BATCH]:
                copy.write_row(row)
        connection.commit()
    return len(rows)


def _begin(backend: Backend, connection: Any) -> None:
    if backend == "sqlite":
        connection.execute("BEGIN")  # psycopg opens its transaction with the first statement


def _commit(backend: Backend, connection: Any) -> None:
    if backend == "sqlite":
        connection.execute("COMMIT")
    else:
        connection.commit()


def _reader(backend: Backend, connection: Any, table: str, column: str) -> Callable[[int], int]:
    """A function reading and decoding up to `limit` rows from the first, in keyset pages."""
    mark = "?" if backend == "sqlite" else "%s"
    statement = (
        f"SELECT {column}, originator_id, originator_version, topic, state FROM {table} "
        f"WHERE {column} > {mark} ORDER BY {column} LIMIT {mark}"
    )

    def read(limit: int) -> int:
        after, count = 0, 0
        while count < limit:
            page: Sequence[Any] = connection.execute(
                statement, (after, min(PAGE, limit - count))
            ).fetchall()
            if not page:
                break
            for position, originator, _version, _topic, state in page:
                if backend == "sqlite":
                    uuid.UUID(originator)  # psycopg decodes uuid columns itself
                json.loads(state)
                after = position
            count += len(page)
        if backend == "postgres":
            connection.commit()  # end the read transaction psycopg opened
        return count

    return read
