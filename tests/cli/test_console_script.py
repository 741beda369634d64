"""The installed `ledger` console script as a real process: exit codes end to end, JSON lines on
stdout, people's messages on stderr, and the default database in the working directory."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.cli_support import (
    EXIT_CANNOT_RUN,
    EXIT_INVALID,
    EXIT_OK,
    MARKET,
    UNREACHABLE_POSTGRES_FAST_URL,
    event_count,
    json_lines,
    jsonl,
    ledger_script,
    transfer_in,
)


def run_ledger(
    *args: str, input: str | bytes = b"", cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}
    environment.update(env or {})
    return subprocess.run(
        [str(ledger_script()), *args],
        input=input.encode() if isinstance(input, str) else input,
        capture_output=True,
        cwd=cwd,
        env=environment,
        timeout=120,
        check=False,
    )


def text(output: bytes) -> str:
    return output.decode("utf-8")


def test_all_lines_processed_exits_0(database_url: str) -> None:
    lines = [*MARKET, transfer_in("t-ok", "u1", "30000"), transfer_in("t-cap", "u2", "10000.5")]

    process = run_ledger("submit", "-", "--db", database_url, input=jsonl(lines))

    assert process.returncode == EXIT_OK, process.stderr
    outcomes = json_lines(text(process.stdout))
    assert [o["status"] for o in outcomes] == ["accepted"] * len(MARKET) + ["accepted", "rejected"]
    assert outcomes[-1]["reason"] == "collateral_cap"
    assert outcomes[-1]["context"]["q_max"] == "10000"
    assert text(process.stderr) == ""


def test_an_invalid_line_exits_1_and_the_rest_is_processed(database_url: str) -> None:
    lines = [*MARKET, transfer_in("t-bad", "u1", "-30"), transfer_in("t-ok", "u1", "30")]

    process = run_ledger("submit", "-", "--db", database_url, input=jsonl(lines))

    assert process.returncode == EXIT_INVALID
    outcomes = json_lines(text(process.stdout))
    assert outcomes[len(MARKET)] == {
        "request_id": "t-bad",
        "status": "invalid",
        "line": len(MARKET) + 1,
        "errors": [{"field": "quantity", "problem": "must be greater than 0"}],
    }
    assert outcomes[-1]["status"] == "accepted"
    assert text(process.stderr).splitlines() == [
        f"line {len(MARKET) + 1}: quantity: must be greater than 0"
    ]


def test_a_file_argument_is_read_like_standard_input(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "market.jsonl"
    path.write_text(jsonl(MARKET), encoding="utf-8")

    process = run_ledger("submit", str(path), "--db", database_url)

    assert process.returncode == EXIT_OK
    assert [o["request_id"] for o in json_lines(text(process.stdout))] == [
        line["request_id"] for line in MARKET
    ]


def test_nonexistent_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"

    process = run_ledger("submit", str(missing), "--db", f"sqlite:///{tmp_path}/l.sqlite3")

    assert process.returncode == EXIT_CANNOT_RUN
    assert process.stdout == b""
    assert text(process.stderr).splitlines() == [
        f"error: cannot read {missing}: No such file or directory"
    ]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (UNREACHABLE_POSTGRES_FAST_URL, "error: cannot open the database: connection failed"),
        ("mysql://x", "error: cannot open the database: unsupported database URL 'mysql://x'"),
    ],
    ids=["unreachable-postgres", "unsupported-scheme"],
)
def test_database_that_cannot_be_used_exits_2(url: str, error: str) -> None:
    process = run_ledger("submit", "-", "--db", url, input=jsonl([transfer_in("t", "u1", "1")]))

    assert process.returncode == EXIT_CANNOT_RUN
    assert process.stdout == b""
    assert text(process.stderr).startswith(error)
    assert "Traceback" not in text(process.stderr)


def test_unknown_option_exits_2() -> None:
    process = run_ledger("submit", "-", "--no-such-flag")

    assert process.returncode == EXIT_CANNOT_RUN
    assert process.stdout == b""


def test_default_database_is_ledger_sqlite3_in_the_working_directory(tmp_path: Path) -> None:
    process = run_ledger("submit", "-", input=jsonl(MARKET[:1]), cwd=tmp_path)

    assert process.returncode == EXIT_OK
    assert (tmp_path / "ledger.sqlite3").exists()
    assert event_count(f"sqlite:///{tmp_path}/ledger.sqlite3") > 0


def test_database_url_from_the_environment(database_url: str) -> None:
    process = run_ledger(
        "submit", "-", input=jsonl(MARKET), env={"LEDGER_DATABASE_URL": database_url}
    )

    assert process.returncode == EXIT_OK
    assert event_count(database_url) > 0


def test_queries_and_schema_print_json_documents(database_url: str) -> None:
    assert (
        run_ledger(
            "submit",
            "-",
            "--db",
            database_url,
            input=jsonl([*MARKET, transfer_in("t", "u1", "2.50")]),
        ).returncode
        == EXIT_OK
    )

    account = run_ledger("account", "u1:cross", "--db", database_url, "--json")
    assets = run_ledger("assets", "--db", database_url, "--json")
    schema = run_ledger("schema")

    assert [account.returncode, assets.returncode, schema.returncode] == [EXIT_OK] * 3
    assert json.loads(account.stdout)["holdings"] == {"QQQ": "2.5"}
    assert [row["asset"] for row in json.loads(assets.stdout)] == ["DEC2", "ETH", "QQQ", "USDT"]
    assert "transfer_in" in json.loads(schema.stdout)["commands"]


def test_invalid_account_id_exits_2(sqlite_url: str) -> None:
    process = run_ledger("account", "u1:margin", "--db", sqlite_url)

    assert process.returncode == EXIT_CANNOT_RUN
    assert text(process.stderr).startswith("error: 'u1:margin' is not an account id")


def test_demo_json_exits_0_with_json_lines_only(tmp_path: Path) -> None:
    process = run_ledger("demo", "--json", cwd=tmp_path)

    assert process.returncode == EXIT_OK
    assert {o["status"] for o in json_lines(text(process.stdout))} <= {
        "accepted",
        "rejected",
        "pending",
    }
    assert process.stderr == b""


def test_input_that_is_not_utf8_gets_a_clear_error_not_a_traceback(sqlite_url: str) -> None:
    process = run_ledger(
        "submit", "-", "--db", sqlite_url, input=b'{"type": "transfer_in", "user": "jos\xe9"}\n'
    )

    assert "Traceback" not in text(process.stderr)
    assert process.returncode in (EXIT_INVALID, EXIT_CANNOT_RUN)


def test_markup_in_input_does_not_stop_the_run(sqlite_url: str) -> None:
    lines = [*MARKET, transfer_in("t-markup", "u1", "[/x]"), transfer_in("t-ok", "u1", "5")]

    process = run_ledger("submit", "-", "--db", sqlite_url, input=jsonl(lines))

    assert "Traceback" not in text(process.stderr)
    assert process.returncode == EXIT_INVALID
    assert [o["status"] for o in json_lines(text(process.stdout))][-2:] == ["invalid", "accepted"]
