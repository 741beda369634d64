"""`ledger keys create / list / revoke`: the key shown once, stored hashed, revoked at once."""

import hashlib
import json

import pytest
from typer.testing import CliRunner

import ledger.cli  # noqa: F401  (registers every command)
from ledger import Ledger
from ledger.cli.main import app
from ledger.http.keys import KEY_PATTERN, KeyStore
from ledger.http.roles import Role
from ledger.persistence import raw_rows, raw_table

_runner = CliRunner()


def test_keys_are_created_once_listed_without_the_key_and_revoked(database_url: str) -> None:
    created = _runner.invoke(
        app, ["keys", "create", "--role", "auditor", "--name", "desk", "--db", database_url]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert KEY_PATTERN.match(key)
    listed = _runner.invoke(app, ["keys", "list", "--json", "--db", database_url])
    (entry,) = json.loads(listed.stdout)
    assert (entry["name"], entry["role"], entry["revoked_at"]) == ("desk", "auditor", None)
    assert key not in listed.stdout
    with Ledger(database_url) as ledger:
        rows = raw_rows(ledger.recorder, f"SELECT * FROM {raw_table(ledger.recorder, 'api_keys')}")
        assert key not in repr(rows)  # only its hash is stored
        assert hashlib.sha256(key.encode()).hexdigest() in repr(rows)
        assert KeyStore(ledger).role_of(key) is Role.AUDITOR
    revoked = _runner.invoke(app, ["keys", "revoke", entry["key_id"], "--db", database_url])
    assert revoked.exit_code == 0, revoked.output
    with Ledger(database_url) as ledger:
        assert KeyStore(ledger).role_of(key) is None
    unknown = _runner.invoke(app, ["keys", "revoke", "000000000000", "--db", database_url])
    assert unknown.exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--role", "root"], id="unknown-role"),
        pytest.param(["--role", "admin", "--name", "two words"], id="bad-name"),
    ],
)
def test_keys_create_refuses_bad_flags_with_exit_code_2(args: list[str], sqlite_url: str) -> None:
    result = _runner.invoke(app, ["keys", "create", *args, "--db", sqlite_url])
    assert result.exit_code == 2, result.output
