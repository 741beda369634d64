"""503 when the database cannot be reached, at start or after it: problem+json, no stack trace,
and the service answers again once the store is there."""

from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from ledger.http.roles import Role
from tests.conftest import POSTGRES_URL, postgres_required
from tests.http.server import create_keys, fresh_store, serving

# A PostgreSQL port nothing listens on (naming a schema makes the failure immediate), and a
# SQLite file in a folder that does not exist.
UNREACHABLE = {
    "postgres": "postgresql://postgres@127.0.0.1:1/none?schema=unreachable",
    "sqlite": "sqlite:////nonexistent-folder/ledger.sqlite3",
}
KEY = {"Authorization": "Bearer lk_000000000000_" + "A" * 43}
TRANSFER = (
    '{"type": "transfer_in", "request_id": "r1", "user": "u1", "account": "cross", '
    '"asset": "ABC", "quantity": "1"}'
)


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "/problems/database-unavailable"
    assert answer.headers["retry-after"] == "1"
    assert "Traceback" not in answer.text and "127.0.0.1" not in answer.text


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_unreachable_from_the_start_is_503(backend: str, tmp_path: Path) -> None:
    with (
        serving(UNREACHABLE[backend], tmp_path) as server,
        httpx.Client(base_url=server.base_url, headers=KEY) as client,
    ):
        assert_unavailable(client.post("/v1/commands", content=TRANSFER))
        assert_unavailable(client.post("/v1/commands:batch", content=TRANSFER))
        assert_unavailable(client.get("/v1/assets"))
        assert_unavailable(client.get("/v1/health"))
        assert_unavailable(client.get("/"))
        # Without a key the answer needs no database: 401 as always.
        assert httpx.get(f"{server.base_url}/v1/assets").status_code == 401
        assert server.process.poll() is None  # still serving


def test_a_postgres_schema_dropped_under_a_running_server_is_503(tmp_path: Path) -> None:
    if not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    with fresh_store("postgres", tmp_path) as url:
        keys = create_keys(url)
        schema = url.rsplit("schema=", 1)[1]
        with serving(url, tmp_path) as server:
            server.keys = keys
            with server.client(Role.ADMIN) as admin:
                assert admin.get("/v1/assets").status_code == 200
                with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                    connection.execute(
                        sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema))
                    )
                assert_unavailable(admin.get("/v1/assets"))
                assert_unavailable(admin.post("/v1/commands", content=TRANSFER))
            assert_unavailable(httpx.get(f"{server.base_url}/v1/health"))
            assert server.process.poll() is None
