"""`ledger submit`: outcomes in input order, and the exit codes of COMMANDS.md "Transport": 0 every
line was processed, 1 some line was invalid (the others still processed), 2 it could not run."""

import json
from pathlib import Path

import pytest

from tests.cli.cli_support import (
    CAP_MESSAGE,
    EXIT_CANNOT_RUN,
    EXIT_INVALID,
    EXIT_OK,
    OPENING_RISK_MESSAGE,
    UNREACHABLE_POSTGRES_FAST_URL,
    UNREACHABLE_POSTGRES_URL,
    invoke,
    json_lines,
    jsonl,
    query,
    set_up_market,
    submit,
    transfer_in,
    transfer_out,
)

# The contract's keys for a cap decision (COMMANDS.md "Outcome").
CAP_CONTEXT_KEYS = (
    "asset",
    "band",
    "total",
    "upper_limit",
    "ratio",
    "q_max",
    "fixed_quota",
    "price_usdt",
    "requested",
)


def mixed_lines() -> list[dict | str]:
    return [
        transfer_in("t-a1", "u1", "30000", minute=10),  # band A: q_max 40,000 - 0
        transfer_in("t-a2", "u2", "15000", minute=11),  # band A: q_max 40,000 - 30,000 = 10,000
        transfer_in("t-bad", "u3", "0", minute=12),  # invalid
        transfer_in(
            "t-p1", "u4", "500", asset="USDT", minute=13, channel="client", risk_flagged=True
        ),  # first transfer, flagged, client: pending
        json.dumps({"type": "transfer_sideways", "request_id": "t-bad2"}),  # invalid
        "   ",  # blank: skipped, but still counted as a line
        transfer_out("t-o1", "u1", "2500.5", minute=20),
        transfer_in(
            "t-r1", "u5", "100", asset="USDT", minute=14, risk_flagged=True
        ),  # api: refused
    ]


def test_mixed_file_processes_valid_lines_and_reports_invalid_ones_by_line(
    database_url: str, tmp_path: Path
) -> None:
    set_up_market(database_url)
    path = tmp_path / "commands.jsonl"
    path.write_text(jsonl(mixed_lines()), encoding="utf-8")

    result = invoke("submit", str(path), "--db", database_url)

    assert result.exit_code == EXIT_INVALID
    outcomes = json_lines(result.stdout)
    assert [(o["request_id"], o["status"], o.get("line")) for o in outcomes] == [
        ("t-a1", "accepted", None),
        ("t-a2", "rejected", None),
        ("t-bad", "invalid", 3),
        ("t-p1", "pending", None),
        ("t-bad2", "invalid", 5),
        ("t-o1", "accepted", None),
        ("t-r1", "rejected", None),
    ]
    assert result.stderr.splitlines() == [
        "line 3: quantity: must be greater than 0",
        "line 5: type: unknown command type 'transfer_sideways'",
    ]
    accepted, capped, bad, pending, bad2, out, risky = outcomes
    assert bad == {
        "request_id": "t-bad",
        "status": "invalid",
        "line": 3,
        "errors": [{"field": "quantity", "problem": "must be greater than 0"}],
    }
    assert bad2 == {
        "request_id": "t-bad2",
        "status": "invalid",
        "line": 5,
        "errors": [{"field": "type", "problem": "unknown command type 'transfer_sideways'"}],
    }
    assert {k: accepted["context"][k] for k in CAP_CONTEXT_KEYS} == {
        "asset": "QQQ",
        "band": "A",
        "total": "0",
        "upper_limit": "50000",
        "ratio": "0",
        "q_max": "40000",
        "fixed_quota": "20000",
        "price_usdt": "2.5",
        "requested": "30000",
    }
    assert {k: v for k, v in capped.items() if k not in ("events", "context")} == {
        "request_id": "t-a2",
        "status": "rejected",
        "reason": "collateral_cap",
        "message": CAP_MESSAGE.format(asset="QQQ", q_max="10000"),
        "account": "u2:cross",
        "duplicate": False,
    }
    assert {k: capped["context"][k] for k in CAP_CONTEXT_KEYS} == {
        "asset": "QQQ",
        "band": "A",
        "total": "30000",
        "upper_limit": "50000",
        "ratio": "0.6",
        "q_max": "10000",
        "fixed_quota": "20000",
        "price_usdt": "2.5",
        "requested": "15000",
    }
    assert capped["context"]["effective_at"] == "2026-03-02T09:11:00Z"
    assert capped["events"] and all(isinstance(e, str) for e in capped["events"])
    assert (pending["account"], pending["context"]["opening_check"]) == (
        "u4:cross",
        "pending_verification",
    )
    assert "reason" not in pending
    assert (out["account"], out["context"]["requested"]) == ("u1:cross", "2500.5")
    assert {k: v for k, v in risky.items() if k not in ("events", "context")} == {
        "request_id": "t-r1",
        "status": "rejected",
        "reason": "opening_risk_check",
        "message": OPENING_RISK_MESSAGE,
        "account": "u5:cross",
        "duplicate": False,
    }
    assert query("account", "u1:cross", "--db", database_url)["holdings"] == {"QQQ": "27499.5"}
    assert query("account", "u3:cross", "--db", database_url)["status"] == "not_open"


def test_all_lines_accepted_rejected_or_pending_exits_0(database_url: str) -> None:
    set_up_market(database_url)
    lines = [
        line for line in mixed_lines() if isinstance(line, dict) and "bad" not in line["request_id"]
    ]

    submitted = submit(database_url, lines)

    assert submitted.exit_code == EXIT_OK
    assert submitted.statuses == ["accepted", "rejected", "pending", "accepted", "rejected"]
    assert submitted.stderr_lines == []


def test_a_single_invalid_line_among_many_exits_1(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(
        database_url,
        [
            transfer_in("t-1", "u1", "10"),
            transfer_in("t-2", "u1", "NaN"),
            transfer_in("t-3", "u1", "20"),
        ],
    )

    assert submitted.exit_code == EXIT_INVALID
    assert submitted.statuses == ["accepted", "invalid", "accepted"]
    assert submitted.outcomes[1]["line"] == 2
    assert submitted.stderr_lines == ["line 2: quantity: must be a finite number"]
    assert query("account", "u1:cross", "--db", database_url)["holdings"] == {"QQQ": "30"}


def test_empty_input_exits_0_with_no_output(database_url: str) -> None:
    submitted = submit(database_url, [])

    assert (submitted.exit_code, submitted.outcomes, submitted.stderr_lines) == (EXIT_OK, [], [])


def test_blank_lines_are_skipped_but_counted(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(database_url, ["", transfer_in("t-1", "u1", "-1"), "\t"])

    assert submitted.exit_code == EXIT_INVALID
    assert [(o["status"], o["line"]) for o in submitted.outcomes] == [("invalid", 2)]


def test_database_url_comes_from_the_environment_without_db(database_url: str) -> None:
    set_up_market(database_url)

    result = invoke(
        "submit",
        "-",
        input=jsonl([transfer_in("t-env", "u1", "7")]),
        env={"LEDGER_DATABASE_URL": database_url},
    )

    assert result.exit_code == EXIT_OK
    assert [o["status"] for o in json_lines(result.stdout)] == ["accepted"]
    assert query("account", "u1:cross", "--db", database_url)["holdings"] == {"QQQ": "7"}


def test_nonexistent_file_exits_2_with_a_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"

    result = invoke("submit", str(missing), "--db", sqlite_url)

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: cannot read {missing}: No such file or directory"
    ]


def test_directory_instead_of_file_exits_2(sqlite_url: str, tmp_path: Path) -> None:
    result = invoke("submit", str(tmp_path), "--db", sqlite_url)

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: cannot read {tmp_path}: Is a directory"]


def test_unreachable_database_exits_2_with_a_clear_error() -> None:
    result = invoke(
        "submit",
        "-",
        "--db",
        UNREACHABLE_POSTGRES_URL,
        input=jsonl([transfer_in("t-1", "u1", "1")]),
    )

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot open the database: ")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://x",
            "unsupported database URL 'mysql://x': use sqlite:///path/file.db or "
            "postgresql://user@host/db",
        ),
        ("sqlite:///", "no file path in 'sqlite:///' (e.g. sqlite:///ledger.sqlite3)"),
        (
            "postgresql://postgres@127.0.0.1:5432/",
            "no database name in 'postgresql://postgres@127.0.0.1:5432/'",
        ),
        ("sqlite:////nonexistent-folder/ledger.sqlite3", "unable to open database file"),
    ],
    ids=[
        "unsupported-scheme",
        "sqlite-without-path",
        "postgres-without-database",
        "sqlite-in-missing-folder",
    ],
)
def test_unusable_database_url_exits_2_with_a_clear_error(url: str, message: str) -> None:
    result = invoke("submit", "-", "--db", url, input=jsonl([transfer_in("t-1", "u1", "1")]))

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: cannot open the database: {message}"]


def test_unreachable_database_from_the_environment_exits_2() -> None:
    result = invoke(
        "submit",
        "-",
        input=jsonl([transfer_in("t-1", "u1", "1")]),
        env={"LEDGER_DATABASE_URL": UNREACHABLE_POSTGRES_FAST_URL},
    )

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert "Connection refused" in result.stderr


def test_unreadable_file_is_reported_before_the_database_is_opened(tmp_path: Path) -> None:
    result = invoke("submit", str(tmp_path / "missing.jsonl"), "--db", "mysql://x")

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stderr.startswith("error: cannot read ")


@pytest.mark.parametrize(
    "args",
    [["submit"], ["submit", "-", "--bogus"], ["submit", "-", "--db"]],
    ids=["missing-file-argument", "unknown-option", "option-without-value"],
)
def test_bad_flags_exit_2(args: list[str]) -> None:
    result = invoke(*args, input="")

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert " Error " in result.stderr


def test_file_that_is_not_utf8_is_reported_not_a_crash(sqlite_url: str, tmp_path: Path) -> None:
    set_up_market(sqlite_url)
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        jsonl([transfer_in("t-1", "u1", "1")]).encode()
        + '{"type": "transfer_in", "user": "jos\xe9"}\n'.encode("latin-1")
    )

    result = invoke("submit", str(path), "--db", sqlite_url)  # re-raises an unexpected exception

    assert result.exit_code in (EXIT_INVALID, EXIT_CANNOT_RUN)
    assert "line 2" in result.stderr or result.stderr.startswith("error: ")


def test_input_that_looks_like_markup_is_reported_and_later_lines_still_run(
    sqlite_url: str,
) -> None:
    set_up_market(sqlite_url)

    submitted = submit(
        sqlite_url,
        [
            transfer_in("t-markup", "u1", "[/x]"),
            transfer_in("t-after", "u1", "5"),
        ],
    )

    assert submitted.exit_code == EXIT_INVALID
    assert submitted.statuses == ["invalid", "accepted"]
    assert submitted.stderr_lines == [
        "line 1: quantity: must be a decimal string like \"0.1\", got '[/x]'"
    ]


def test_stderr_line_quotes_the_input_literally(sqlite_url: str) -> None:
    set_up_market(sqlite_url)

    submitted = submit(sqlite_url, [transfer_in("t-markup", "u1", "[bold]")])

    assert submitted.outcomes[0]["errors"] == [
        {"field": "quantity", "problem": "must be a decimal string like \"0.1\", got '[bold]'"}
    ]
    assert submitted.stderr_lines == [
        "line 1: quantity: must be a decimal string like \"0.1\", got '[bold]'"
    ]


def test_unreadable_file_whose_name_looks_like_markup_exits_2(
    sqlite_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "[/x].jsonl"

    result = invoke("submit", str(missing), "--db", sqlite_url)

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stderr.splitlines() == [
        f"error: cannot read {missing}: No such file or directory"
    ]
