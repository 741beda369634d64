"""Where the read models live: tables beside the events, and the library's tracking records.

Every read model is an `eventsourcing.projection.Projection` whose view is one ReadStore: a
tracking recorder of the library (SQLite `tracking` table, PostgreSQL `read_models_tracking`)
that also owns the read models' tables. A batch of events is applied to a model and its
tracking row advanced in one transaction, so each event is applied exactly once.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL

from projections.sql import Db, Table

Positioned = tuple[int, Any]  # (log position, domain event)


class ReadStore:
    """What both backends' stores offer the read models and the runner."""

    tables: ClassVar[tuple[Table, ...]] = ()
    is_postgres: ClassVar[bool]

    def table_names(self) -> dict[str, str]:
        raise NotImplementedError

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[Db]:
        with self.datastore.transaction(commit=commit) as cursor:  # type: ignore[attr-defined]
            yield Db(cursor, is_postgres=self.is_postgres, names=self.table_names())

    def advance(self, db: Db, key: str, position: int) -> None:
        """Record that `key`'s model has applied everything up to `position` (IntegrityError if
        it already had: another runner got there first, and this transaction must roll back)."""
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

    def create_tables(self, db: Db, tables: Sequence[Table]) -> None:
        for table in tables:
            for statement in table.create_statements(db.names[table.name], self.is_postgres):
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

    `apply` runs inside the runner's transaction; `finish` runs after a catch-up reached the end
    of the log, for work worth doing once rather than per batch.
    """

    tables: ClassVar[tuple[Table, ...]] = ()
    topics: tuple[str, ...] = ()
    description: ClassVar[str] = ""

    def apply(self, db: Db, events: Sequence[Positioned]) -> None:
        raise NotImplementedError

    def finish(self, db: Db) -> bool:
        """One chunk of deferred work; True while more is left. Nothing by default."""
        return False

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """The library's one-event entry point (e.g. its ProjectionRunner on PostgreSQL)."""
        with self.view.transaction() as db:
            self.view.advance(db, tracking.application_name, tracking.notification_id)
            self.apply(db, [(tracking.notification_id, domain_event)])
            self.finish(db)
