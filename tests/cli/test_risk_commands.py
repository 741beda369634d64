"""`ledger submit` with the risk commands (check_margins, fund_insurance, set_auto_top_up): JSON
outcomes and exit 0 for processed lines; `invalid`, exit 1 and nothing recorded for bad input.

The market (all figures by hand): USDT (2 decimals) lends at 0.01% an hour; ABC (rank 8, capped
at U = 1,000,000, 2 decimals) at price 1. u1 holds 2,500 ABC against 1,500.15 USDT (1,000 ABC
in, 1,500 borrowed and sold for ABC); u2 holds 2,000 ABC against 1,000.10 and tops up from ABC.
"""

from typing import Any

import pytest

from tests.cli.cli_support import (
    EXIT_INVALID,
    EXIT_OK,
    PLAIN_NUMBER,
    cmd,
    event_count,
    query,
    submit,
)


def long_lines(user: str, borrowed: str, minute: int) -> list[dict[str, Any]]:
    where = {"user": user, "account": "cross"}
    return [
        cmd("transfer_in", f"in-{user}", minute, **where, asset="ABC", quantity="1000"),
        cmd("borrow", f"borrow-{user}", minute + 1, **where, asset="USDT", quantity=borrowed),
        cmd(
            "settle_trade",
            f"trade-{user}",
            minute + 2,
            **where,
            sell_asset="USDT",
            sell_quantity=borrowed,
            buy_asset="ABC",
            buy_quantity=borrowed,
            fee_asset="USDT",
            fee_quantity="0",
        ),
    ]


MARKET = [
    cmd("list_asset", "list-usdt", asset="USDT", collateral_rank=1, quantity_decimals=2),
    cmd("list_asset", "list-abc", asset="ABC", collateral_rank=8, quantity_decimals=2),
    cmd("set_collateral_cap", "cap-abc", asset="ABC", upper_limit="1000000"),
    cmd("mark_prices", "prices-1", prices={"ABC": "1"}),
    cmd("set_borrow_terms", "terms-usdt", asset="USDT", hourly_interest_rate="0.0001"),
    *long_lines("u1", "1500", 1),
    *long_lines("u2", "1000", 4),
]

# ABC at 0.65: u1 at 1,625 / 1,500.15 = 1.083 is liquidated (fee 32.50, 92.35 left); u2 at
# 1,300 / 1,000.10 = 1.2999 is called and tops up all 150 ABC of its spot wallet (limited).
RISK = [
    cmd("fund_insurance", "fund-1", 10, amount_usdt="100", actor="admin:risk"),
    cmd("set_auto_top_up", "auto-u2", 11, user="u2", account="cross", enabled=True, asset="ABC"),
    cmd("mark_prices", "prices-2", 30, prices={"ABC": "0.65"}),
    cmd("check_margins", "sweep-1", 31, spot_available={"u2:cross": {"ABC": "150"}}),
]


def set_up(url: str) -> None:
    submitted = submit(url, MARKET)
    assert submitted.exit_code == EXIT_OK, submitted
    assert submitted.statuses == ["accepted"] * len(MARKET), submitted


def plain_numbers(value: Any) -> list[str]:
    """Every string in a JSON value that looks like a number, to check its format."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in plain_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in plain_numbers(v)]
    if isinstance(value, str) and value[:1].isdigit() and "T" not in value and ":" not in value:
        return [value]
    return []


def test_risk_commands_are_processed_with_exit_0_and_json_outcomes(database_url: str) -> None:
    set_up(database_url)

    submitted = submit(database_url, RISK)

    assert submitted.exit_code == EXIT_OK, submitted
    assert submitted.statuses == ["accepted"] * len(RISK)
    assert [o["request_id"] for o in submitted.outcomes] == [line["request_id"] for line in RISK]
    funded, auto, _mark, swept = submitted.outcomes
    assert funded["context"] == {
        "amount_usdt": "100",
        "balance_usdt": "100",
        "effective_at": "2026-03-02T09:10:00Z",
    }
    assert auto["account"] == "u2:cross"
    assert (auto["context"]["enabled"], auto["context"]["asset"]) == (True, "ABC")
    context = swept["context"]
    assert {key: context[key] for key in context if key not in ("accounts", "skipped")} == {
        "accounts_scanned": 2,
        "margin_calls": 1,
        "top_ups": {"topped_up": 0, "limited": 1, "blocked": 0},
        "liquidations": 1,
        "deficit_usdt": "0",
        "uncovered_usdt": "0",
        "insurance_fund_usdt": "132.5",
        "effective_at": "2026-03-02T09:31:00Z",
    }
    liquidation, call = context["accounts"]
    assert (liquidation["account"], liquidation["action"]) == ("u1:cross", "liquidation")
    assert (liquidation["fee_usdt"], liquidation["remainder_usdt"]) == ("32.5", "92.35")
    assert (call["account"], call["action"]) == ("u2:cross", "margin_call")
    assert (call["top_up"]["result"], call["top_up"]["quantity"]) == ("limited", "150")
    assert context["skipped"] == []
    for number in plain_numbers(swept):
        assert PLAIN_NUMBER.match(number), number
    u1 = query("account", "u1:cross", "--db", database_url)
    assert (u1["holdings"], u1["liabilities"], u1["interest"]) == ({"USDT": "92.35"}, {}, {})
    assert query("account", "u2:cross", "--db", database_url)["holdings"] == {"ABC": "2150"}
    abc = next(a for a in query("assets", "--db", database_url) if a["asset"] == "ABC")
    assert abc["total"] == "2150"


def test_resubmitted_sweep_is_a_duplicate_and_records_nothing(database_url: str) -> None:
    set_up(database_url)
    first = submit(database_url, RISK)
    recorded = event_count(database_url)

    again = submit(database_url, RISK[-1:])

    assert again.exit_code == EXIT_OK
    [outcome] = again.outcomes
    assert outcome["duplicate"] is True
    assert outcome["context"] == first.outcomes[-1]["context"]
    assert event_count(database_url) == recorded


def test_a_sweep_with_nothing_to_do_reports_zeroes(database_url: str) -> None:
    set_up(database_url)

    submitted = submit(database_url, [cmd("check_margins", "sweep-calm", 20)])

    assert submitted.exit_code == EXIT_OK
    [outcome] = submitted.outcomes
    assert outcome["status"] == "accepted"
    context = outcome["context"]
    assert (context["accounts_scanned"], context["margin_calls"], context["liquidations"]) == (
        2,
        0,
        0,
    )
    assert (context["accounts"], context["skipped"]) == ([], [])
    assert context["insurance_fund_usdt"] is None  # no fund yet


BAD_LINES: list[tuple[str, dict[str, Any], str]] = [
    ("fund-negative", {"type": "fund_insurance", "amount_usdt": "-5"}, "amount_usdt"),
    ("fund-zero", {"type": "fund_insurance", "amount_usdt": "0"}, "amount_usdt"),
    ("fund-not-a-number", {"type": "fund_insurance", "amount_usdt": "lots"}, "amount_usdt"),
    ("fund-exponent", {"type": "fund_insurance", "amount_usdt": "1e3"}, "amount_usdt"),
    ("fund-missing-amount", {"type": "fund_insurance"}, "amount_usdt"),
    (
        "auto-enabled-without-asset",
        {"type": "set_auto_top_up", "user": "u1", "account": "cross", "enabled": True},
        "asset",
    ),
    (
        "auto-unlisted-asset",
        {
            "type": "set_auto_top_up",
            "user": "u1",
            "account": "cross",
            "enabled": True,
            "asset": "NOPE",
        },
        "asset",
    ),
    (
        "auto-enabled-not-bool",
        {
            "type": "set_auto_top_up",
            "user": "u1",
            "account": "cross",
            "enabled": "yes",
            "asset": "ABC",
        },
        "enabled",
    ),
    (
        "auto-bad-account",
        {
            "type": "set_auto_top_up",
            "user": "u1",
            "account": "spot",
            "enabled": True,
            "asset": "ABC",
        },
        "account",
    ),
    (
        "sweep-malformed-account-id",
        {"type": "check_margins", "spot_available": {"u1:spot": {"ABC": "300"}}},
        "spot_available.u1:spot",
    ),
    (
        "sweep-account-id-without-user",
        {"type": "check_margins", "spot_available": {"cross": {"ABC": "300"}}},
        "spot_available.cross",
    ),
    (
        "sweep-negative-spot",
        {"type": "check_margins", "spot_available": {"u1:cross": {"ABC": "-1"}}},
        "spot_available.u1:cross.ABC",
    ),
    (
        "sweep-lower-case-asset",
        {"type": "check_margins", "spot_available": {"u1:cross": {"abc": "1"}}},
        "spot_available.u1:cross.abc",
    ),
    ("sweep-unknown-field", {"type": "check_margins", "prices": {"ABC": "1"}}, "prices"),
]


@pytest.mark.parametrize(
    ("line", "field"), [(c[1], c[2]) for c in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
def test_bad_risk_input_is_invalid_exit_1_and_records_nothing(
    database_url: str, line: dict[str, Any], field: str
) -> None:
    set_up(database_url)
    before = event_count(database_url)

    submitted = submit(
        database_url, [{"request_id": "bad-1", "effective_at": "2026-03-02T10:00:00Z", **line}]
    )

    assert submitted.exit_code == EXIT_INVALID, submitted
    [outcome] = submitted.outcomes
    assert (outcome["status"], outcome["request_id"], outcome["line"]) == ("invalid", "bad-1", 1)
    assert field in [error["field"] for error in outcome["errors"]], outcome
    assert any(text.startswith(f"line 1: {field}: ") for text in submitted.stderr_lines)
    assert event_count(database_url) == before


def test_valid_risk_lines_are_processed_beside_an_invalid_one(database_url: str) -> None:
    set_up(database_url)

    submitted = submit(
        database_url,
        [
            cmd("fund_insurance", "fund-ok", 10, amount_usdt="250"),
            cmd("fund_insurance", "fund-bad", 11, amount_usdt="-1"),
            cmd("fund_insurance", "fund-more", 12, amount_usdt="50.5"),
        ],
    )

    assert submitted.exit_code == EXIT_INVALID
    assert submitted.statuses == ["accepted", "invalid", "accepted"]
    assert submitted.outcomes[2]["context"]["balance_usdt"] == "300.5"


def test_fund_insurance_more_precise_than_usdt_is_invalid(database_url: str) -> None:
    set_up(database_url)
    before = event_count(database_url)

    submitted = submit(database_url, [cmd("fund_insurance", "fund-dust", 10, amount_usdt="0.001")])

    assert submitted.exit_code == EXIT_INVALID, submitted
    [outcome] = submitted.outcomes
    assert outcome["status"] == "invalid"
    assert [error["field"] for error in outcome["errors"]] == ["amount_usdt"]
    assert event_count(database_url) == before
