"""Persistence: the pydantic mapper and JSON transcoder, and LEDGER_DATABASE_URL -> library env."""

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import BaseModel

from ledger import limits

if TYPE_CHECKING:
    import psycopg

DATABASE_URL_ENV = "LEDGER_DATABASE_URL"
DATABASE_URL_DEFAULT = "sqlite:///ledger.sqlite3"


class PydanticMapper(Mapper[UUID]):
    """Events are pydantic models: stored as their JSON (Decimals as strings), validated back.

    The JSON keeps every object's keys in the order the event holds them, so an aggregate
    replayed from the store holds its dicts in the same order as the aggregate that decided the
    event in memory (the write path keeps that one: ledger/write_transaction.py). Stores written
    before held key-sorted JSON, which replays the same way it always did.
    """

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=_topic_of(domain_event.__class__),
            state=cast(BaseModel, domain_event).__pydantic_serializer__.to_json(domain_event),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        # Parsed and validated in one pass by pydantic-core: 2-2.5x faster than json.loads and
        # then validating the objects it built (the write path's catch-up, replays, as-of reads).
        event = resolve_topic(stored_event.topic).model_validate_json(stored_event.state)
        return cast(DomainEventProtocol[Any], event)


@lru_cache(maxsize=1024)
def _topic_of(event_class: type) -> str:
    return get_topic(event_class)


class JSONTranscoder(Transcoder):
    """Compact, key-sorted JSON (for whatever is not an event: events are their models' JSON)."""

    def encode(self, obj: Any) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


def is_postgres(env: Mapping[str, str]) -> bool:
    return env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"


def raw_table(recorder: Any, name: str | None = None) -> str:
    """A table of `recorder`'s store (its events table by default) for hand-written SQL:
    schema-qualified on PostgreSQL."""
    table = name or recorder.events_table_name
    schema = getattr(recorder.datastore, "schema", None)  # PostgreSQL datastores only
    return table if schema is None else f'"{schema}"."{table}"'


def raw_position_column(recorder: Any) -> str:
    """The column holding an event's log position: SQLite's rowid, PostgreSQL's bigserial."""
    return "rowid" if getattr(recorder.datastore, "schema", None) is None else "notification_id"


def raw_rows(recorder: Any, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of hand-written SQL (`?` placeholders) on `recorder`'s store, as plain tuples; for
    reading the stored bytes as they are, where the library has no query."""
    is_postgres_store = getattr(recorder.datastore, "schema", None) is not None
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(text.replace("?", "%s") if is_postgres_store else text, params)
        rows = cursor.fetchall()
    return [tuple(row.values()) if is_postgres_store else tuple(row) for row in rows]


class DatabaseUrlError(ValueError):
    """LEDGER_DATABASE_URL / --db is not a URL the ledger can use."""


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get(DATABASE_URL_ENV) or DATABASE_URL_DEFAULT


def env_for_url(url: str) -> dict[str, str]:
    """The eventsourcing library's settings for a `sqlite:///path` or `postgresql://` URL.

    PostgreSQL URLs may name a schema with `?schema=NAME` (created when missing); tests use it to
    give every test a fresh, isolated store in one database.
    """
    parsed = urlparse(url)
    common = {
        "MAPPER_TOPIC": get_topic(PydanticMapper),
        "TRANSCODER_TOPIC": get_topic(JSONTranscoder),
        # A pool gains an event per transfer: replaying it on every command grows with history.
        # The cache keeps aggregates in memory; fast-forward (one indexed query per get) picks
        # up what other processes wrote, so it stays correct with many writers.
        "AGGREGATE_CACHE_MAXSIZE": str(limits.AGGREGATE_CACHE_SIZE),
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }
    if parsed.scheme == "sqlite":
        path = unquote(url[len("sqlite://") :])
        if path.startswith("/") and not path.startswith("//"):
            path = path[1:]  # sqlite:///rel.db -> rel.db; sqlite:////abs.db -> /abs.db
        if not path:
            raise DatabaseUrlError(f"no file path in {url!r} (e.g. sqlite:///ledger.sqlite3)")
        return {
            **common,
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "APPLICATION_RECORDER_TOPIC": "ledger.audit.recorders:ChainedSQLiteRecorder",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    if parsed.scheme in ("postgresql", "postgres"):
        query = parse_qs(parsed.query)
        dbname = parsed.path.lstrip("/")
        if not dbname:
            raise DatabaseUrlError(f"no database name in {url!r}")
        return {
            **common,
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": "ledger.audit.recorders:ChainedPostgresRecorder",
            "POSTGRES_DBNAME": unquote(dbname),
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", [""])[0],
            "POSTGRES_CONNECT_TIMEOUT": "5",
            # Writers queue on the library's table lock; a bounded wait turns a stuck writer into
            # an error instead of a hang (notes/eventsourcing-9.5.md §9).
            "POSTGRES_LOCK_TIMEOUT": "30",
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "4",
        }
    raise DatabaseUrlError(
        f"unsupported database URL {url!r}: use sqlite:///path/file.db or postgresql://user@host/db"
    )


def postgres_connect(env: dict[str, str]) -> "psycopg.Connection[Any]":
    import psycopg

    return psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
        connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
        autocommit=True,
    )


@contextmanager
def schema_setup_lock(env: dict[str, str]) -> Iterator[None]:
    """Serialise table creation among processes opening the same store at once.

    PostgreSQL: the library runs CREATE ... IF NOT EXISTS and CREATE OR REPLACE FUNCTION on
    every start; two processes doing it at once fail ("tuple concurrently updated", or a
    duplicate schema). A session advisory lock per schema makes them take turns.
    SQLite: switching a new file to WAL fails at once ("database is locked") while another
    process does the same; an exclusive lock on a file beside the database serialises it.
    """
    module = env.get("PERSISTENCE_MODULE")
    if is_postgres(env):
        with _postgres_setup_lock(env):
            yield
    elif module == "eventsourcing.sqlite" and ":memory:" not in env["SQLITE_DBNAME"]:
        with _file_lock(f"{env['SQLITE_DBNAME']}-setup.lock"):
            yield
    else:
        yield


@contextmanager
def _postgres_setup_lock(env: dict[str, str]) -> Iterator[None]:
    import psycopg
    from psycopg import sql

    schema = env.get("POSTGRES_SCHEMA") or "public"
    key = int.from_bytes(hashlib.sha256(f"ledger-setup:{schema}".encode()).digest()[:8], "big")
    key -= 1 << 63  # a signed 64-bit advisory lock key
    with postgres_connect(env) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            if schema != "public":
                # Created meanwhile by a session outside the lock: it exists, as wanted.
                with suppress(psycopg.errors.UniqueViolation):
                    connection.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                    )
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    import fcntl

    try:
        handle = open(path, "a")  # noqa: SIM115 - closed by the with below
    except OSError:
        yield  # no folder to lock in: opening the database itself will say what is wrong
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield
