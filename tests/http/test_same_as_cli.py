"""The HTTP service and the CLI cannot drift: the same commands give the same outcome bytes as
`ledger submit` on a fresh store, and every query the same JSON as the CLI's `--json`."""

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ledger.cli  # noqa: F401  (registers every command)
from ledger.cli.main import app
from ledger.http.roles import Role
from tests.http.server import Server, fresh_store
from tests.support import at, command

COMMANDS: list[dict[str, Any]] = [
    command("list_asset", "p1", asset="USDT", collateral_rank=1),
    command("list_asset", "p2", asset="ABC", collateral_rank=8),
    command("set_collateral_cap", "p3", asset="ABC", upper_limit="1000000"),
    command("mark_prices", "p4", prices={"ABC": "0.5"}),
    command(
        "transfer_in",
        "t1",
        user="u1",
        account="cross",
        asset="ABC",
        quantity="600000",
        effective_at=at(1),
    ),
    command(
        "transfer_in",
        "t2",
        user="u2",
        account="cross",
        asset="ABC",
        quantity="250000",
        effective_at=at(2),
    ),
    command(
        "transfer_in",
        "t3",
        user="u3",
        account="cross",
        asset="ABC",
        quantity="10",
        channel="client",
        risk_flagged=True,
        effective_at=at(3),
    ),
    command(
        "transfer_in",
        "t4",
        user="u4",
        account="cross",
        asset="ABC",
        quantity="200000",
        effective_at=at(4),
    ),
    command(
        "transfer_in",
        "t1",
        user="u1",
        account="cross",
        asset="ABC",
        quantity="600000",
        effective_at=at(1),
    ),  # a retry: a duplicate
]
SINGLE = 5  # the first commands one request each, the rest in one JSON-lines batch

_runner = CliRunner()


def cli(*args: str, input: str | None = None) -> str:
    result = _runner.invoke(app, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.stdout


@pytest.fixture(scope="module")
def served(server: Server) -> list[bytes]:
    """The bodies of the HTTP answers: the single commands', then the batch's."""
    bodies = []
    with server.client(Role.ADMIN) as admin:
        for data in COMMANDS[:SINGLE]:
            bodies.append(admin.post("/v1/commands", content=json.dumps(data)).content)
        lines = "".join(json.dumps(data) + "\n" for data in COMMANDS[SINGLE:])
        bodies.append(admin.post("/v1/commands:batch", content=lines).content)
    return bodies


def test_outcomes_are_byte_for_byte_those_of_ledger_submit_on_a_fresh_store(
    server: Server, served: list[bytes], tmp_path: Path
) -> None:
    backend = "postgres" if server.url.startswith("postgresql") else "sqlite"
    submitted = "".join(json.dumps(data) + "\n" for data in COMMANDS)
    with fresh_store(backend, tmp_path) as url:
        printed = cli("submit", "-", "--db", url, input=submitted).encode()
    assert b"".join(served) == printed
    statuses = [json.loads(line)["status"] for line in printed.splitlines()]
    assert statuses[4:] == ["accepted", "rejected", "pending", "accepted", "accepted"]
    assert json.loads(printed.splitlines()[-1])["duplicate"] is True


@pytest.mark.parametrize(
    ("path", "args"),
    [
        pytest.param("/v1/assets", ["assets"], id="assets"),
        pytest.param(f"/v1/assets?as_of={at(2)}", ["assets", "--as-of", at(2)], id="assets-as-of"),
        pytest.param(
            "/v1/assets?at_position=6", ["assets", "--at-position", "6"], id="assets-at-position"
        ),
        pytest.param("/v1/accounts/u1:cross", ["account", "u1:cross"], id="account"),
        pytest.param(
            "/v1/accounts/u1:cross?at_position=3",
            ["account", "u1:cross", "--at-position", "3"],
            id="account-at-position",
        ),
        pytest.param("/v1/accounts", ["accounts"], id="accounts"),
        pytest.param("/v1/bands?asset=ABC", ["bands", "ABC"], id="bands"),
        pytest.param("/v1/trial-balance", ["trial-balance"], id="trial-balance"),
        pytest.param("/v1/explain/t2", ["explain", "t2"], id="explain"),
        pytest.param("/v1/digest", ["digest"], id="digest"),
        pytest.param("/v1/reconcile", ["reconcile"], id="reconcile"),
    ],
)
def test_queries_answer_the_same_json_as_the_cli(
    server: Server, served: list[bytes], path: str, args: list[str]
) -> None:
    with server.client(Role.AUDITOR) as auditor:
        answer = auditor.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.text == cli(*args, "--json", "--db", server.url)
