"""Where the read models live: tables beside the events, and the library's tracking records.

Every read model is an `eventsourcing.projection.Projection` whose view is one ReadStore: a
tracking recorder of the library (SQLite `tracking` table, PostgreSQL `read_models_tracking`)
that also owns the read models' tables. A batch of events is applied to a model and its
tracking row advanced in one transaction, so each event is applied exactly once.
"""

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL

from projections.events import Record
from projections.sql import Db, Table


class ReadStore:
    """What both backends' stores offer the read models and the runner."""

    tables: ClassVar[tuple[Table, ...]] = ()
    is_postgres: ClassVar[bool]

    def table_names(self) -> dict[str, str]:
        raise NotImplementedError

    @contextmanager
    def transaction(self, *, commit: bool = True, bulk: bool = False) -> Iterator[Db]:
        with self.datastore.transaction(commit=commit) as cursor:  # type: ignore[attr-defined]
            yield Db(cursor, is_postgres=self.is_postgres, names=self.table_names(), bulk=bulk)

    def advance(self, db: Db, key: str, position: int) -> None:
        """Record that `key`'s model has applied everything up to `position` (IntegrityError if
        it already had: another runner got there first, and this transaction must roll back)."""
        db.wait()
        self._insert_tracking(db.cursor, Tracking(key, position))  # type: ignore[attr-defined]

    def ensure_tracked(self, db: Db, key: str) -> None:
        """Give the model a tracking row (position 0) if it has none: the row is its lock."""
        db.execute(
            "INSERT INTO {tracking} (application_name, notification_id) VALUES (?, 0) "
            "ON CONFLICT (application_name) DO NOTHING",
            (key,),
        )

    def locked_position(self, db: Db, key: str) -> int:
        """The model's position, read under a write lock held to the end of the transaction,
        so that two runners never both apply the events after it (SQLite: the write lock is
        the whole database's; PostgreSQL: the tracking row's)."""
        db.execute(
            "UPDATE {tracking} SET notification_id = notification_id WHERE application_name = ?",
            (key,),
        )
        rows = db.query("SELECT notification_id FROM {tracking} WHERE application_name = ?", (key,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def forget(self, db: Db, key: str) -> None:
        """Drop a model's tracking row, so that it starts again from the first event."""
        db.execute(
            "DELETE FROM {tracking} WHERE application_name = ?",
            (key,),
        )

    def create_tables(self, db: Db, tables: Sequence[Table], *, indexes: bool = True) -> None:
        for table in tables:
            db.execute(table.table_statement(db.names[table.name], self.is_postgres))
        if indexes:
            self.create_indexes(db, tables)

    def create_indexes(self, db: Db, tables: Sequence[Table]) -> None:
        for table in tables:
            for statement in table.index_statements(db.names[table.name]):
                db.execute(statement)

    def drop_tables(self, db: Db, tables: Sequence[Table]) -> None:
        for table in tables:
            db.execute(f"DROP TABLE IF EXISTS {{{table.name}}}")


class SQLiteReadStore(SQLiteTrackingRecorder, ReadStore):
    is_postgres = False

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        for table in self.tables:
            statements.extend(table.create_statements(table.name, is_postgres=False))
        return statements

    def table_names(self) -> dict[str, str]:
        return {"tracking": "tracking"} | {t.name: t.name for t in self.tables}


class PostgresReadStore(PostgresTrackingRecorder, ReadStore):
    is_postgres = True

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        for table in self.tables:
            for statement in table.create_statements(self._qualified(table.name), True):
                self.sql_create_statements.append(SQL(statement))  # type: ignore[arg-type]

    def _qualified(self, name: str) -> str:
        return f'"{self.datastore.schema}"."{name}"'

    def table_names(self) -> dict[str, str]:
        return {"tracking": self._qualified(self.tracking_table_name)} | {
            t.name: self._qualified(t.name) for t in self.tables
        }


class ReadModel(Projection[ReadStore]):  # type: ignore[type-var]
    """A read model: its tables, and how a batch of events changes them.

    A catch-up calls `begin`, then per transaction `apply` (once or more) and `flush`, and
    `finish` after reaching the end of the log. Between `begin` and the end of the catch-up a
    model may keep what it read or computed in memory (bounded), instead of reading its rows
    again for every batch: `flush` writes what it changed before each commit, and `begin`
    forgets it all (after a rollback too, or when another runner moved the model on).
    """

    tables: ClassVar[tuple[Table, ...]] = ()
    topics: tuple[str, ...] = ()
    description: ClassVar[str] = ""

    def begin(self, *, fresh: bool) -> None:
        """Forget what is kept in memory; `fresh`: the tables were just created, empty, so a
        row not in memory is not in the tables either."""

    def apply(self, db: Db, records: Sequence[Record]) -> None:
        raise NotImplementedError

    def flush(self, db: Db) -> None:
        """Write the rows `apply` changed in memory only. Nothing by default."""

    def finish(self, db: Db) -> bool:
        """One chunk of deferred work; True while more is left. Nothing by default."""
        return False

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """The library's one-event entry point (e.g. its ProjectionRunner on PostgreSQL)."""
        self.begin(fresh=False)
        try:
            with self.view.transaction() as db:
                self.view.advance(db, tracking.application_name, tracking.notification_id)
                self.apply(db, [Record.of_event(tracking.notification_id, domain_event)])
                self.flush(db)
                self.finish(db)
        finally:
            self.begin(fresh=False)


Key = TypeVar("Key")
Row = TypeVar("Row")
KEPT_ROWS_MAX = 100_000  # rows of one table a model keeps in memory during a catch-up


class Kept(Generic[Key, Row]):
    """Rows of one table that a model keeps in memory during a catch-up, by key: read once,
    changed in memory, written back by `flush`. Bounded: past `limit` rows they are forgotten
    after a flush (and read again when needed), so memory stays flat however long the log.

    `complete` means every row of the table is here (the table was created empty and nothing
    was forgotten since): a key not here has no row, and nothing needs to be read.
    """

    def __init__(self, limit: int = KEPT_ROWS_MAX) -> None:
        self.rows: dict[Key, Row] = {}
        self.complete = False
        self.limit = limit

    def reset(self, *, fresh: bool) -> None:
        self.rows = {}
        self.complete = fresh

    def missing(self, keys: Iterable[Key]) -> set[Key]:
        """The keys whose rows must be read from the table (none when complete)."""
        if self.complete:
            return set()
        rows = self.rows
        return {key for key in keys if key not in rows}

    def trim(self) -> None:
        """After a flush: forget everything if there is too much."""
        if len(self.rows) > self.limit:
            self.reset(fresh=False)
