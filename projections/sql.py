"""One SQL text for both backends: table declarations, placeholders, and Decimal columns.

Read models do their arithmetic in Python with Decimal (SQLite has no exact decimal type, and
its SUM would go through floats), so SQL here only stores and fetches rows.
"""

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from itertools import chain
from typing import Any

from ledger.money import format_plain

# logical column type -> (SQLite, PostgreSQL)
COLUMN_TYPES = {
    "text": ("TEXT", "text"),
    "int": ("INTEGER", "bigint"),
    "dec": ("TEXT", "numeric"),  # Decimal: plain text on SQLite, exact numeric on PostgreSQL
}

IN_LIST_SIZE_MAX = 500  # SQLite builds before 3.32 allow 999 variables per statement
SQL_VARIABLES_MAX = 999  # variables in one SQLite statement (builds before 3.32)
WRITES_QUEUED_MAX = 16  # writes waiting for the writer thread: memory stays bounded


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, logical type); NOT NULL unless type ends "?"
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _type in self.columns)

    def create_statements(self, qualified: str, is_postgres: bool) -> list[str]:
        return [
            self.table_statement(qualified, is_postgres),
            *self.index_statements(qualified),
        ]

    def table_statement(self, qualified: str, is_postgres: bool) -> str:
        columns = []
        for name, logical in self.columns:
            nullable = logical.endswith("?")
            sql_type = COLUMN_TYPES[logical.rstrip("?")][1 if is_postgres else 0]
            columns.append(f"{name} {sql_type}{'' if nullable else ' NOT NULL'}")
        # SQLite: a table keyed by anything but one integer keeps its rows in its key's tree
        # (WITHOUT ROWID) instead of a rowid tree plus a key index: one tree written per row.
        rowid_alias = (
            len(self.primary_key) == 1 and dict(self.columns)[self.primary_key[0]] == "int"
        )
        layout = "" if is_postgres or rowid_alias else " WITHOUT ROWID"
        return (
            f"CREATE TABLE IF NOT EXISTS {qualified} ({', '.join(columns)}, "
            f"PRIMARY KEY ({', '.join(self.primary_key)})){layout}"
        )

    def index_statements(self, qualified: str) -> list[str]:
        """The secondary indexes: a rebuild creates them after loading the rows (one sort
        instead of an index insert per row)."""
        return [
            f"CREATE INDEX IF NOT EXISTS {self.name}_{'_'.join(columns)}_idx "
            f"ON {qualified} ({', '.join(columns)})"
            for columns in self.indexes
        ]


@lru_cache(maxsize=4096)  # the events of one command share their times: a batch repeats them
def time_key(moment: datetime) -> str:
    """A business time as fixed-width UTC text, so that text order is time order."""
    assert moment.tzinfo is not None, moment
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time_key(key: str) -> datetime:
    return datetime.fromisoformat(key.replace("Z", "+00:00"))


class Db:
    """A cursor inside one read-model transaction, speaking either backend's dialect.

    SQL is written once with `?` placeholders and `{table}` names; PostgreSQL gets `%s` and
    schema-qualified names. `bulk` is set while a rebuild loads freshly created tables: rows
    that are only ever appended are then inserted without conflict handling (COPY on
    PostgreSQL), as no row can be there already.
    """

    def __init__(
        self, cursor: Any, *, is_postgres: bool, names: dict[str, str], bulk: bool = False
    ) -> None:
        self.cursor = cursor
        self.is_postgres = is_postgres
        self.names = names
        self.bulk = bulk
        self.zero: Any = Decimal(0) if is_postgres else "0"  # a zero Decimal column's value
        # The ledger's events table and its position column, when it is in the same database
        # (the read models beside the events, not a scratch replay elsewhere): rows computed
        # from the events alone can then be filled in SQL.
        self.events: tuple[str, str] | None = None
        self.writer: Writer | None = None  # when set, writes run in its thread

    def sql(self, text: str) -> str:
        text = text.format(**self.names)
        return text.replace("?", "%s") if self.is_postgres else text

    def execute(self, text: str, params: Sequence[Any] = ()) -> None:
        statement, values = self.sql(text), tuple(params)
        self._write(lambda: self.cursor.execute(statement, values))

    def executemany(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(row) for row in rows]  # now: the writer must not see later changes
        if rows:
            statement = self.sql(text)
            self._write(lambda: self.cursor.executemany(statement, rows))

    def query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.wait()  # every write asked for before is in what it reads
        self.cursor.execute(self.sql(text), tuple(params))
        rows = self.cursor.fetchall()
        if self.is_postgres:
            return [tuple(row.values()) for row in rows]
        return [tuple(row) for row in rows]

    def wait(self) -> None:
        """Until every write asked for has run (they may run in a writer thread)."""
        if self.writer is not None:
            self.writer.wait()

    def _write(self, work: Callable[[], Any]) -> None:
        if self.writer is None:
            work()
        else:
            self.writer.submit(work)

    def query_in(
        self, text: str, keys: Iterable[Any], params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows for many keys: `text` has one `({keys})` where the key list goes, after params."""
        found: list[tuple[Any, ...]] = []
        keys = sorted(set(keys))
        for start in range(0, len(keys), IN_LIST_SIZE_MAX):
            chunk = keys[start : start + IN_LIST_SIZE_MAX]
            marks = ", ".join("?" for _ in chunk)
            found.extend(self.query(text.replace("({keys})", f"({marks})"), [*params, *chunk]))
        return found

    def dec(self, value: Decimal | None) -> Any:
        if value is None:
            return None
        return value if self.is_postgres else format_plain(value)

    def upsert(
        self, table: Table, rows: Iterable[Sequence[Any]], *, update: Sequence[str] | None = None
    ) -> None:
        """Insert rows, replacing those whose primary key exists."""
        columns = table.column_names
        update = [c for c in columns if c not in table.primary_key] if update is None else update
        marks = ", ".join("?" for _ in columns)
        conflict = ", ".join(table.primary_key)
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in update)
            if update
            else "DO NOTHING"
        )
        self.executemany(
            f"INSERT INTO {{{table.name}}} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({conflict}) {action}",
            rows,
        )

    def append(self, table: Table, rows: Sequence[Sequence[Any]], *, replace: bool = False) -> None:
        """Insert rows that are new by construction (each event's own rows): a row already
        there is left as it is (or replaced), and in bulk mode cannot be there."""
        if not rows:
            return
        if not self.bulk:
            self.upsert(table, rows, update=None if replace else ())
        elif self.is_postgres:
            self._write(lambda: self._copy(table, rows))
        else:
            self._write(lambda: self._insert_many(table, rows))

    def _copy(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        """PostgreSQL's COPY: the cheapest way to load many rows."""
        statement = f"COPY {self.names[table.name]} ({', '.join(table.column_names)}) FROM STDIN"
        with self.cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def _insert_many(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        """SQLite: many rows per INSERT (one statement step for each, not one per row)."""
        width = len(table.columns)
        per_statement = max(1, SQL_VARIABLES_MAX // width)
        one = f"({', '.join('?' * width)})"
        name = self.names[table.name]
        full = len(rows) - len(rows) % per_statement
        if full:
            statement = f"INSERT INTO {name} VALUES {', '.join([one] * per_statement)}"
            self.cursor.executemany(
                statement,
                (
                    tuple(chain.from_iterable(rows[start : start + per_statement]))
                    for start in range(0, full, per_statement)
                ),
            )
        if full < len(rows):
            self.cursor.executemany(f"INSERT INTO {name} VALUES {one}", rows[full:])


class Writer:
    """The writes of a rebuild's transaction, run in a thread of their own while the next
    events are decoded and applied: the database's work (SQLite's B-trees, PostgreSQL's
    server) overlaps Python's, as both drivers let other threads run while they wait.

    Writes run in the order asked; a query waits for all of them first (`Db.query`). The first
    error stops the writes after it and is raised to the asking thread at the next call.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], Any] | None] = queue.Queue(WRITES_QUEUED_MAX)
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="read-model-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            try:
                if work is None:
                    return
                if self._error is None and not self._closing:
                    work()
            except BaseException as error:  # handed to the asking thread
                self._error = error
            finally:
                self._queue.task_done()

    def submit(self, work: Callable[[], Any]) -> None:
        self._raise()
        self._queue.put(work)

    def wait(self) -> None:
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Stop the thread: the write running finishes, those still waiting are dropped (call
        `wait` first to run them all). Before the transaction ends, so that no write of it
        can run after a rollback, on a connection back in autocommit."""
        self._closing = True
        self._queue.put(None)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def dec(value: Any) -> Decimal:
    """A Decimal column's value from either backend (text on SQLite, numeric on PostgreSQL)."""
    return value if isinstance(value, Decimal) else Decimal(value)


def dec_or_none(value: Any) -> Decimal | None:
    return None if value is None else dec(value)
