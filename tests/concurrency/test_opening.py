"""Several processes opening one store at the same moment (two `ledger submit` runs, workers).

Opening runs the eventsourcing library's CREATE ... statements (on PostgreSQL also the ledger's
CREATE SCHEMA, on SQLite the switch to WAL); done by several processes at once they race.
"""

import json
import multiprocessing
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger
from tests.concurrency import workers
from tests.conftest import POSTGRES_URL, postgres_required

PROCESS_COUNT = 6
ROUNDS = 4
PROCESS_JOIN_SECONDS = 180
OPENER_JOIN_SECONDS = 60
# How long the opener may take to reach the lock it must wait on. A slow machine can only make the
# test pass for the wrong reason (the lock released before it was contended), never fail it.
OPENER_REACHES_LOCK_SECONDS = 2
LOCK_WAIT_POLLS_MAX = 200_000  # each poll is one query: a bound of tens of seconds, never a hang


@pytest.fixture(params=["postgres", "sqlite"])
def store_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """One URL per round, each naming a store nobody has opened yet."""
    if request.param == "sqlite":
        yield [f"sqlite:///{tmp_path}/round{n}.sqlite3" for n in range(ROUNDS)]
        return
    if not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    schemas = [f"test_open_{uuid.uuid4().hex[:16]}" for _ in range(ROUNDS)]
    yield [f"{POSTGRES_URL}?schema={schema}" for schema in schemas]
    _drop_schemas(schemas)


def test_processes_opening_an_existing_store_at_once_all_succeed(
    store_urls: list[str], tmp_path: Path
) -> None:
    """Goal: any number of processes may open one existing store at the same moment.

    Method: PROCESS_COUNT spawned processes open the same store on a barrier, ROUNDS times (one
    store per round); every opening must succeed. (Regression: on PostgreSQL this failed with
    'tuple concurrently updated' in about one round in four: concurrent CREATE OR REPLACE
    FUNCTION of the library's insert function.)
    """
    for url in store_urls:
        with Ledger(url):
            pass

    results = _run_openers(store_urls, tmp_path)

    assert results == [["opened"] * ROUNDS] * PROCESS_COUNT, results


def test_opening_a_postgres_schema_another_process_is_creating_succeeds(
    postgres_url: str,
) -> None:
    """Goal: the very first openings of a new PostgreSQL store may happen at the same moment.

    Method: another session creates the URL's schema in a transaction left open (another
    process's opening, caught in the middle); open a Ledger in a thread; once it waits on that
    session, commit. The opening must then find the schema and succeed.
    """
    schema = postgres_url.rsplit("schema=", 1)[1]
    holder = psycopg.connect(POSTGRES_URL)
    holder.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    result: list[str] = []
    opener = threading.Thread(target=_open, args=(postgres_url, result), name="ledger-opener")
    opener.start()
    try:
        _wait_until_blocked_by(holder.info.backend_pid)
    finally:
        holder.commit()
        holder.close()
        opener.join(OPENER_JOIN_SECONDS)
    assert result == ["opened"]


def test_opening_a_new_sqlite_file_another_process_is_writing_succeeds(tmp_path: Path) -> None:
    """Goal: as above, for a new SQLite file: opening waits for the other writer, then succeeds.

    Method: another connection holds a write lock on the new file (BEGIN IMMEDIATE: another
    process in the middle of its first transaction); open a Ledger in a thread; release the lock
    once the opener has had OPENER_REACHES_LOCK_SECONDS to reach it. The opening must wait for
    it (its busy timeout is 30 s) and succeed.
    """
    path = tmp_path / "new.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    result: list[str] = []
    opener = threading.Thread(target=_open, args=(f"sqlite:///{path}", result))
    opener.start()
    try:
        opener.join(OPENER_REACHES_LOCK_SECONDS)
    finally:
        holder.execute("COMMIT")
        holder.close()
        opener.join(OPENER_JOIN_SECONDS)
    assert result == ["opened"]


# --- helpers -------------------------------------------------------------------------------------


def _open(url: str, result: list[str]) -> None:
    """Open and close the ledger; append "opened" or the error to `result` for the test."""
    try:
        with Ledger(url) as ledger:
            ledger.recorder.max_notification_id()
        result.append("opened")
    except Exception as error:  # the test asserts on the result; nothing is swallowed
        result.append(f"{type(error).__name__}: {error}")


def _run_openers(urls: list[str], tmp_path: Path) -> list[list[str]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESS_COUNT)
    paths = [tmp_path / f"opened-{i}.json" for i in range(PROCESS_COUNT)]
    processes = [
        context.Process(target=workers.open_stores, args=(urls, barrier, str(path)))
        for path in paths
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(PROCESS_JOIN_SECONDS)
    finally:
        for process in processes:
            if process.is_alive():  # only our own children, by handle
                process.kill()
                process.join()
    assert [p.exitcode for p in processes] == [0] * PROCESS_COUNT
    return [json.loads(path.read_text()) for path in paths]


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


def _drop_schemas(schemas: list[str]) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        for schema in schemas:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
