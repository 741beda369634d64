"""`ledger serve` refuses what it cannot serve with exit code 2 (CLI conventions)."""

import socket
from pathlib import Path

from typer.testing import CliRunner

import ledger.cli  # noqa: F401  (registers every command)
from ledger.cli.main import app

_runner = CliRunner()


def test_serve_with_an_unsupported_database_url_exits_2() -> None:
    result = _runner.invoke(app, ["serve", "--db", "mysql://localhost/ledger"])
    assert result.exit_code == 2
    assert "unsupported database URL" in result.stderr


def test_serve_on_a_port_already_taken_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _runner.invoke(
            app,
            ["serve", "--db", f"sqlite:///{tmp_path}/l.sqlite3", "--port", str(port)],
        )
    assert result.exit_code == 2
    assert f"could not listen on 127.0.0.1:{port}" in result.stderr


def test_serve_and_keys_have_help_with_an_example() -> None:
    for command in (["serve"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"]):
        result = _runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Example: ledger " in result.stdout
