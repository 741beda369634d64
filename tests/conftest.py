"""Fixtures: every test body runs on a SQLite file and on a fresh PostgreSQL schema."""

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger

POSTGRES_URL = os.environ.get(
    "LEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_required() -> bool:
    """scripts/test sets LEDGER_TEST_POSTGRES=skip only when PostgreSQL is down outside CI."""
    return os.environ.get("LEDGER_TEST_POSTGRES", "required") != "skip"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL naming a fresh schema, dropped afterwards."""
    if not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture
def sqlite_url(tmp_path: "os.PathLike[str]") -> str:
    return f"sqlite:///{tmp_path}/ledger.sqlite3"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test body on both backends."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    with Ledger(database_url) as opened:
        yield opened
