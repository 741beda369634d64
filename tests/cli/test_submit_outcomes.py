"""`ledger submit` outcomes beyond the cap: times printed in UTC (COMMANDS.md "Transport"), and
the opening check's pending transfer completed through the CLI, all with exit code 0."""

import pytest

from tests.cli.cli_support import (
    EXIT_OK,
    OPENING_RISK_MESSAGE,
    cmd,
    query,
    set_up_market,
    submit,
    transfer_in,
)


@pytest.mark.parametrize(
    ("written", "printed"),
    [
        ("2026-03-02T10:10:00+01:00", "2026-03-02T09:10:00Z"),
        ("2026-03-02T04:40:00-04:30", "2026-03-02T09:10:00Z"),
        ("2026-03-02t09:10:00z", "2026-03-02T09:10:00Z"),
        ("2026-03-02T09:10:00.123456789Z", "2026-03-02T09:10:00.123456Z"),
        ("2026-03-02T09:10:00+00:00", "2026-03-02T09:10:00Z"),
    ],
    ids=["offset-east", "offset-west-half-hour", "lower-case", "nanoseconds", "utc-offset"],
)
def test_effective_at_is_printed_in_utc(database_url: str, written: str, printed: str) -> None:
    set_up_market(database_url)

    submitted = submit(database_url, [transfer_in("t-time", "u1", "1", effective_at=written)])

    assert submitted.exit_code == EXIT_OK
    assert submitted.outcomes[0]["context"]["effective_at"] == printed
    assert query("account", "u1:cross", "--db", database_url)["last_effective_at"] == printed


def test_client_transfer_awaiting_verification_completes_with_exit_0(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(
        database_url,
        [
            transfer_in("t-first", "u5", "1500", minute=10, channel="client", risk_flagged=True),
            transfer_in("t-while", "u5", "10", minute=11),
            cmd(
                "complete_verification",
                "v-1",
                12,
                user="u5",
                account="cross",
                transfer_request_id="t-first",
                passed=True,
            ),
            transfer_in("t-later", "u5", "20", minute=13, risk_flagged=True),  # checked only once
            transfer_in("t-api", "u6", "20", minute=14, risk_flagged=True),
        ],
    )

    assert submitted.exit_code == EXIT_OK
    assert submitted.stderr_lines == []
    first, during, verified, later, api = submitted.outcomes
    assert (first["status"], first["account"], first["context"]["opening_check"]) == (
        "pending",
        "u5:cross",
        "pending_verification",
    )
    assert (during["status"], during["reason"]) == ("rejected", "verification_pending")
    assert (
        verified["status"],
        verified["context"]["transfer"],
        verified["context"]["requested"],
    ) == ("accepted", "completed", "1500")
    assert (later["status"], later["context"]["opening_check"]) == ("accepted", "not_checked")
    assert (api["status"], api["reason"], api["message"]) == (
        "rejected",
        "opening_risk_check",
        OPENING_RISK_MESSAGE,
    )
    assert query("account", "u5:cross", "--db", database_url)["holdings"] == {"QQQ": "1520"}
    assert query("account", "u6:cross", "--db", database_url)["status"] == "not_open"


def test_failed_verification_cancels_the_transfer(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(
        database_url,
        [
            transfer_in(
                "t-first",
                "u7",
                "75",
                asset="USDT",
                account="isolated:QQQUSDT",
                minute=10,
                channel="client",
                risk_flagged=True,
            ),
            cmd(
                "complete_verification",
                "v-2",
                12,
                user="u7",
                account="isolated:QQQUSDT",
                transfer_request_id="t-first",
                passed=False,
            ),
        ],
    )

    assert submitted.exit_code == EXIT_OK
    assert [o["status"] for o in submitted.outcomes] == ["pending", "accepted"]
    assert submitted.outcomes[1]["context"]["transfer"] == "cancelled"
    assert query("account", "u7:isolated:QQQUSDT", "--db", database_url)["holdings"] == {}


def test_transfer_out_beyond_the_holding_is_a_rejection_not_an_error(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(
        database_url,
        [
            transfer_in("t-in", "u8", "100", minute=10),
            cmd(
                "transfer_out",
                "t-out",
                20,
                user="u8",
                account="cross",
                asset="QQQ",
                quantity="100.5",
            ),
            cmd(
                "transfer_out", "t-none", 21, user="u9", account="cross", asset="QQQ", quantity="1"
            ),
        ],
    )

    assert submitted.exit_code == EXIT_OK
    _, too_much, not_open = submitted.outcomes
    assert (too_much["status"], too_much["reason"], too_much["message"]) == (
        "rejected",
        "insufficient_balance",
        "QQQ: the account holds 100, less than the 100.5 requested.",
    )
    assert (not_open["status"], not_open["reason"], not_open["message"]) == (
        "rejected",
        "account_not_open",
        "The margin account u9:cross is not open.",
    )
