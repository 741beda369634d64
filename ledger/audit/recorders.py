"""The library's application recorders, extended to write the hash chain's links in the same
transaction as the events, and to refuse changes to the log in the database itself.

Both backends already serialise writers of the events table (SQLite has one writer; the
PostgreSQL recorder locks the table), so reading the last link and appending the next ones
inside the insert transaction gives one chain in log order.
"""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ledger.audit.chain import GENESIS, chain_link

CHAIN_TABLE = "event_chain"
# PostgreSQL: commands handed to the write lock's holder, and its answers (ledger/handoff.py).
QUEUE_TABLE = "ledger_handoff_queue"
ANSWERS_TABLE = "ledger_handoff_answers"
EXPECT_FUNCTION = "ledger_expect_unmoved"


def links_for(
    previous: str, positions: Sequence[int], stored_events: Sequence[StoredEvent]
) -> list[tuple[int, str]]:
    links = []
    for position, stored in zip(positions, stored_events, strict=True):
        originator_id = stored.originator_id
        previous = chain_link(
            previous,
            position,
            originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id)),
            stored.originator_version,
            stored.topic,
            stored.state,
        )
        links.append((position, previous))
    return links


class ChainedSQLiteRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        events = self.events_table_name
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} "
            "(position INTEGER PRIMARY KEY, hash TEXT NOT NULL)"
        )
        for table in (events, CHAIN_TABLE):
            for operation in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_{operation.lower()} "
                    f"BEFORE {operation} ON {table} BEGIN SELECT RAISE(ABORT, "
                    f"'the event log is append-only: {operation} refused on {table}'); END"
                )
        # REPLACE deletes the row it conflicts with without firing DELETE triggers (SQLite's
        # recursive_triggers is off by default): refuse an insert onto an existing row.
        # A duplicate (aggregate, version) is then this constraint error rather than the
        # primary key's: both are integrity errors, so a racing writer still decides again.
        for table, existing in (
            (
                events,
                f"SELECT 1 FROM {events} WHERE rowid = NEW.rowid OR (originator_id = "
                "NEW.originator_id AND originator_version = NEW.originator_version)",
            ),
            (CHAIN_TABLE, f"SELECT 1 FROM {CHAIN_TABLE} WHERE position = NEW.position"),
        ):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_replace BEFORE INSERT ON {table} "
                f"WHEN EXISTS ({existing}) BEGIN SELECT RAISE(ABORT, "
                f"'the event log is append-only: a row of {table} cannot be replaced'); END"
            )
        return statements

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        if not stored_events:
            return positions
        assert positions is not None
        c.execute(f"SELECT hash FROM {CHAIN_TABLE} ORDER BY position DESC LIMIT 1")
        row = c.fetchone()
        previous = GENESIS if row is None else str(row[0])
        c.executemany(
            f"INSERT INTO {CHAIN_TABLE} (position, hash) VALUES (?, ?)",
            links_for(previous, positions, stored_events),
        )
        return positions


class ChainedPostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.chain_table = SQL("{0}.{1}").format(schema, Identifier(CHAIN_TABLE))
        function = SQL("{0}.{1}").format(schema, Identifier("ledger_refuse_change"))
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (position bigint PRIMARY KEY, "
                    "hash text NOT NULL)"
                ).format(self.chain_table),
                # A write decided before taking the lock (ledger/log_writer.py) commits only if
                # the log is still where the writer last saw it, and
                # if the ids it assumed new still are (else a unique violation, as inserting
                # their first event would be).
                SQL(
                    "CREATE OR REPLACE FUNCTION {0}(unmoved boolean, still_new boolean) "
                    "RETURNS void LANGUAGE plpgsql AS $$ BEGIN IF NOT unmoved THEN RAISE "
                    "EXCEPTION 'the log moved since this writer last read it' "
                    "USING ERRCODE = 'serialization_failure'; END IF; IF NOT still_new THEN "
                    "RAISE EXCEPTION 'an aggregate assumed new has events' "
                    "USING ERRCODE = 'unique_violation'; END IF; END $$"
                ).format(SQL("{0}.{1}").format(schema, Identifier(EXPECT_FUNCTION))),
                # Commands handed to the lock's holder and its answers (ledger/handoff.py):
                # unlogged, so queueing costs no fsync; what a crash empties was never answered.
                SQL(
                    "CREATE UNLOGGED TABLE IF NOT EXISTS {0} (seq bigserial PRIMARY KEY, "
                    "ticket uuid NOT NULL UNIQUE, commands text NOT NULL, ask uuid[] NOT NULL)"
                ).format(SQL("{0}.{1}").format(schema, Identifier(QUEUE_TABLE))),
                SQL(
                    "CREATE UNLOGGED TABLE IF NOT EXISTS {0} (ticket uuid PRIMARY KEY, "
                    "answers text NOT NULL)"
                ).format(SQL("{0}.{1}").format(schema, Identifier(ANSWERS_TABLE))),
                SQL(
                    "CREATE OR REPLACE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN RAISE EXCEPTION 'the event log is append-only: % refused on %', "
                    "TG_OP, TG_TABLE_NAME; END $$"
                ).format(function),
            ]
        )
        for table in (self.events_table_name, CHAIN_TABLE):
            qualified = SQL("{0}.{1}").format(schema, Identifier(table))
            for suffix, event, level in (
                ("refuse_change", "UPDATE OR DELETE", "ROW"),
                ("refuse_truncate", "TRUNCATE", "STATEMENT"),
            ):
                self.sql_create_statements.append(
                    SQL(
                        "CREATE OR REPLACE TRIGGER {0} BEFORE {1} ON {2} "
                        "FOR EACH {3} EXECUTE FUNCTION {4}()"
                    ).format(
                        Identifier(f"{table}_{suffix}"),
                        SQL(event),
                        qualified,
                        SQL(level),
                        function,
                    )
                )

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if not stored_events:
            return positions
        assert positions is not None
        # The events table is locked by this transaction: no other writer is between.
        curs.execute(
            SQL("SELECT hash FROM {0} ORDER BY position DESC LIMIT 1").format(self.chain_table)
        )
        row = curs.fetchone()
        previous = GENESIS if row is None else str(row["hash"])
        curs.executemany(
            SQL("INSERT INTO {0} (position, hash) VALUES (%s, %s)").format(self.chain_table),
            links_for(previous, positions, stored_events),
        )
        return positions
