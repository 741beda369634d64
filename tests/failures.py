"""Real database failures injected by a trigger: every insert into a table fails (or only those
whose stored state holds a marker), on SQLite or on a PostgreSQL test schema."""

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg
from psycopg import sql

from ledger.persistence import env_for_url
from tests.conftest import POSTGRES_URL


@contextmanager
def failing_inserts(url: str, table: str, *, marker: str | None = None) -> Iterator[None]:
    """Inserts into `table` fail with a database error while inside; with `marker`, only rows
    whose stored state (an events table's JSON) holds it."""
    env = env_for_url(url)
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        when = "" if marker is None else f"WHEN CAST(NEW.state AS TEXT) LIKE '%{marker}%' "
        with closing(sqlite3.connect(env["SQLITE_DBNAME"])) as connection:
            # abs() of the smallest integer fails when run: an OperationalError, only when the
            # WHEN clause holds (a missing table would fail every insert, at prepare time).
            connection.execute(
                f"CREATE TRIGGER test_fail BEFORE INSERT ON {table} {when}"
                "BEGIN SELECT abs(-9223372036854775807 - 1); END"
            )
            connection.commit()
        yield
        with closing(sqlite3.connect(env["SQLITE_DBNAME"])) as connection:
            connection.execute("DROP TRIGGER test_fail")
            connection.commit()
        return
    schema = sql.Identifier(env["POSTGRES_SCHEMA"])
    target = sql.SQL("{}.{}").format(schema, sql.Identifier(table))
    function = sql.SQL("{}.test_fail").format(schema)
    when = (
        sql.SQL("")
        if marker is None
        else sql.SQL("WHEN (convert_from(NEW.state, 'UTF8') LIKE {}) ").format(
            sql.Literal(f"%{marker}%")
        )
    )
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
            ).format(function)
        )
        connection.execute(
            sql.SQL(
                "CREATE TRIGGER test_fail BEFORE INSERT ON {} FOR EACH ROW {}EXECUTE FUNCTION {}()"
            ).format(target, when, function)
        )
    yield
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP TRIGGER test_fail ON {}").format(target))
