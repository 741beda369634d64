"""A real `ledger serve` process on a free loopback port, and what the HTTP tests share."""

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from ledger import Ledger
from ledger.http.keys import KeyStore
from ledger.http.roles import Role
from ledger.persistence import raw_rows, raw_table
from tests.conftest import POSTGRES_URL, postgres_required

STARTUP_SECONDS_MAX = 30
POLL_SECONDS = 0.05
STOP_SECONDS_MAX = 10
BACKENDS = ["sqlite", "postgres"]


@dataclass
class Server:
    url: str  # the store's database URL
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path
    keys: dict[Role, str] = field(default_factory=dict)

    def client(self, role: Role | None = None, key: str | None = None) -> httpx.Client:
        """A client sending `role`'s key (or `key`; neither: no key at all)."""
        key = key or (self.keys[role] if role is not None else None)
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(url: str, folder: Path, *extra: str) -> Iterator[Server]:
    """`ledger serve --db url` in its own process, up when its health route answers (200, or
    503 for a store that cannot be reached), killed afterwards."""
    port = free_port()
    log = folder / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ledger")),
                "serve",
                "--db",
                url,
                "--port",
                str(port),
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(url=url, base_url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(STOP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"ledger serve exited: {server.log.read_text()}")
        try:
            httpx.get(f"{server.base_url}/openapi.json", timeout=1)
        except httpx.TransportError:
            time.sleep(POLL_SECONDS)
            continue
        return
    raise AssertionError(f"ledger serve did not answer in {STARTUP_SECONDS_MAX} s")


@contextmanager
def fresh_store(backend: str, folder: Path) -> Iterator[str]:
    """The URL of an empty store: a SQLite file in `folder` or a PostgreSQL schema (dropped)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder}/ledger-{uuid.uuid4().hex[:8]}.sqlite3"
        return
    if not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    schema = f"test_http_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def create_keys(url: str) -> dict[Role, str]:
    with Ledger(url) as ledger:
        store = KeyStore(ledger)
        return {role: store.create(role, f"test-{role.value}").key for role in Role}


def event_count(url: str) -> int:
    """Rows of the store's own events table (not a read model)."""
    with Ledger(url) as ledger:
        return events_in(ledger)


def events_in(ledger: Ledger) -> int:
    table = raw_table(ledger.recorder)
    ((count,),) = raw_rows(ledger.recorder, f"SELECT COUNT(*) FROM {table}")
    return int(count)
