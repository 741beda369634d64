"""`request_id` is an idempotency key (COMMANDS.md "Fields every command has"): the same request
again is answered with its first outcome marked `"duplicate": true` and records nothing; the same
id with a different payload is invalid."""

from typing import Any

from tests.cli.cli_support import (
    EXIT_INVALID,
    EXIT_OK,
    cmd,
    event_count,
    query,
    set_up_market,
    submit,
    transfer_in,
)

REUSED = [
    {"field": "request_id", "problem": "was already used for a different request (idempotency key)"}
]


def without_effective_at(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k != "effective_at"}


def test_same_request_again_returns_the_first_outcome_marked_duplicate(database_url: str) -> None:
    set_up_market(database_url)
    line = transfer_in("t-dup", "u1", "1200")
    [first] = submit(database_url, [line]).outcomes
    assert (first["status"], first["duplicate"]) == ("accepted", False)
    before = event_count(database_url)

    again = submit(database_url, [line])

    assert again.exit_code == EXIT_OK
    assert again.outcomes == [first | {"duplicate": True}]
    assert again.stderr_lines == []
    assert event_count(database_url) == before
    assert query("account", "u1:cross", "--db", database_url)["holdings"] == {"QQQ": "1200"}


def test_duplicate_of_a_rejection_is_the_same_rejection(database_url: str) -> None:
    set_up_market(database_url)
    line = transfer_in("t-big", "u1", "40000.5")  # band A: q_max = 40,000
    [first] = submit(database_url, [line]).outcomes
    assert (first["status"], first["reason"]) == ("rejected", "collateral_cap")
    before = event_count(database_url)

    again = submit(database_url, [line])

    assert again.exit_code == EXIT_OK
    assert again.outcomes == [first | {"duplicate": True}]
    assert event_count(database_url) == before


def test_duplicate_within_one_file_is_answered_from_the_first_line(database_url: str) -> None:
    set_up_market(database_url)
    line = transfer_in("t-twice", "u1", "300", asset="USDT", channel="client", risk_flagged=True)

    submitted = submit(database_url, [line, line])

    assert submitted.exit_code == EXIT_OK
    first, second = submitted.outcomes
    assert first["status"] == "pending"
    assert second == first | {"duplicate": True}


def test_same_request_id_with_a_different_payload_is_invalid(database_url: str) -> None:
    set_up_market(database_url)
    assert submit(database_url, [transfer_in("t-once", "u1", "100")]).statuses == ["accepted"]
    before = event_count(database_url)

    submitted = submit(database_url, [transfer_in("t-once", "u1", "101")])

    assert submitted.exit_code == EXIT_INVALID
    assert submitted.outcomes == [
        {"request_id": "t-once", "status": "invalid", "line": 1, "errors": REUSED}
    ]
    assert submitted.stderr_lines == [
        "line 1: request_id: was already used for a different request (idempotency key)"
    ]
    assert event_count(database_url) == before
    assert query("account", "u1:cross", "--db", database_url)["holdings"] == {"QQQ": "100"}


def test_request_id_reused_by_another_command_type_is_invalid(database_url: str) -> None:
    set_up_market(database_url)
    before = event_count(database_url)

    submitted = submit(
        database_url,
        [
            cmd(
                "mark_prices", "cap-qqq", 30, prices={"QQQ": "3"}
            ),  # id of the market's set_collateral_cap
        ],
    )

    assert submitted.exit_code == EXIT_INVALID
    assert submitted.outcomes == [
        {"request_id": "cap-qqq", "status": "invalid", "line": 1, "errors": REUSED}
    ]
    assert event_count(database_url) == before


def test_retry_with_effective_at_omitted_both_times_is_a_duplicate(database_url: str) -> None:
    """Omitted, effective_at is the time of recording: the retry must not count as new."""
    set_up_market(database_url)
    line = without_effective_at(transfer_in("t-now", "u1", "250"))
    [first] = submit(database_url, [line]).outcomes
    assert first["status"] == "accepted"
    assert first["context"]["effective_at"] > "2026-03-02T09:00:00Z"  # the clock, recorded
    before = event_count(database_url)

    again = submit(database_url, [line])

    assert again.exit_code == EXIT_OK
    assert again.outcomes == [first | {"duplicate": True}]
    assert event_count(database_url) == before


def test_same_values_written_differently_are_the_same_payload(database_url: str) -> None:
    """ "8000.50" and 8000.5 are one quantity; 10:10+01:00 and 09:10Z one instant."""
    set_up_market(database_url)
    [first] = submit(database_url, [transfer_in("t-same", "u1", "8000.50")]).outcomes
    before = event_count(database_url)

    again = submit(
        database_url,
        [
            '{"type": "transfer_in", "request_id": "t-same", "effective_at": '
            '"2026-03-02T10:10:00+01:00", "user": "u1", "account": "cross", "asset": "QQQ", '
            '"quantity": 8000.5}'
        ],
    )

    assert again.exit_code == EXIT_OK
    assert again.outcomes == [first | {"duplicate": True}]
    assert event_count(database_url) == before


def test_invalid_line_records_nothing_so_its_request_id_stays_free(database_url: str) -> None:
    set_up_market(database_url)
    assert submit(database_url, [transfer_in("t-fix", "u1", "-3")]).statuses == ["invalid"]

    submitted = submit(database_url, [transfer_in("t-fix", "u1", "3")])

    assert submitted.exit_code == EXIT_OK
    assert [(o["status"], o["duplicate"]) for o in submitted.outcomes] == [("accepted", False)]
