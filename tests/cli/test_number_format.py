"""Numbers (COMMANDS.md "Transport"): JSON numbers are parsed exactly, never through a float, and
every quantity, price and ratio is printed as a string without exponent or trailing zeros."""

import json
from typing import Any

import pytest

from tests.cli.cli_support import (
    EXIT_INVALID,
    EXIT_OK,
    PLAIN_NUMBER,
    cmd,
    query,
    set_up_market,
    submit,
    transfer_in,
)


def with_number(line: dict[str, Any], token: str) -> str:
    """The line with its quantity written as the bare JSON number `token`."""
    text = json.dumps(line)
    quoted = f'"quantity": {json.dumps(line["quantity"])}'
    assert quoted in text, text
    return text.replace(quoted, f'"quantity": {token}')


def requested_and_holding(
    url: str, line: dict[str, Any] | str, account: str = "u1:cross", asset: str = "QQQ"
) -> tuple[str, str | None]:
    submitted = submit(url, [line])
    assert submitted.exit_code == EXIT_OK, submitted
    [outcome] = submitted.outcomes
    assert outcome["status"] == "accepted"
    return outcome["context"]["requested"], query("account", account, "--db", url)["holdings"].get(
        asset
    )


@pytest.mark.parametrize(
    ("written", "printed"),
    [
        ('"8000.50"', "8000.5"),
        ("8000.5", "8000.5"),
        ("8000.50", "8000.5"),
        ('"100.000"', "100"),
        ("100.000", "100"),
        ("0.1", "0.1"),  # through a float it would be 0.1000000000000000055511151231257827
        ("1E+4", "10000"),
        ("1.5e-7", "0.00000015"),
        ('"0.00000001"', "0.00000001"),
        ('"+12.5"', "12.5"),
    ],
    ids=[
        "string-trailing-zero",
        "json-number",
        "json-number-trailing-zero",
        "string-integer",
        "json-number-integer",
        "json-0.1",
        "json-exponent-up",
        "json-exponent-down",
        "smallest-unit",
        "explicit-plus",
    ],
)
def test_quantity_is_printed_plain_in_context_and_holdings(
    database_url: str, written: str, printed: str
) -> None:
    set_up_market(database_url)
    line = with_number(transfer_in("t-n", "u1", "1"), written)

    assert requested_and_holding(database_url, line) == (printed, printed)


def test_json_numbers_add_up_exactly(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(
        database_url,
        [
            with_number(transfer_in("t-1", "u1", "1", minute=10), "0.1"),
            with_number(transfer_in("t-2", "u1", "1", minute=11), "0.2"),
        ],
    )

    assert submitted.statuses == ["accepted", "accepted"]
    assert submitted.outcomes[1]["context"]["total"] == "0.1"
    holdings = query("account", "u1:cross", "--db", database_url)["holdings"]
    assert holdings == {"QQQ": "0.3"}  # a float sum would be 0.30000000000000004


def test_every_figure_of_a_cap_decision_is_a_plain_decimal_string(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(
        database_url,
        [
            transfer_in("t-1", "u1", "1", minute=10),
            transfer_in("t-2", "u2", "39999.5", minute=11),  # q_max = 40,000 - 1 = 39,999
        ],
    )

    first, refused = submitted.outcomes
    assert first["status"] == "accepted"
    assert (refused["status"], refused["reason"]) == ("rejected", "collateral_cap")
    assert {k: refused["context"][k] for k in ("total", "ratio", "q_max", "requested")} == {
        "total": "1",
        "ratio": "0.00002",
        "q_max": "39999",
        "requested": "39999.5",
    }
    for key in (
        "total",
        "upper_limit",
        "ratio",
        "q_max",
        "fixed_quota",
        "fixed_quota_usdt",
        "price_usdt",
        "requested",
        "band_b_ratio_min",
        "band_c_ratio_min",
    ):
        assert PLAIN_NUMBER.match(refused["context"][key]), (key, refused["context"][key])


def test_assets_prints_totals_and_ratio_as_plain_strings(database_url: str) -> None:
    set_up_market(database_url)
    submitted = submit(
        database_url,
        [
            transfer_in("t-1", "u1", "8000.50", minute=10),
            transfer_in("t-2", "u2", 1.0, minute=11),
            transfer_in("t-3", "u3", "12.50", account="isolated:QQQUSDT", minute=12),
        ],
    )
    assert submitted.statuses == ["accepted"] * 3

    [qqq] = [row for row in query("assets", "--db", database_url) if row["asset"] == "QQQ"]

    assert {k: qqq[k] for k in ("total", "isolated_total", "upper_limit", "ratio", "band")} == {
        "total": "8001.5",
        "isolated_total": "12.5",
        "upper_limit": "50000",
        "ratio": "0.16003",
        "band": "A",
    }


def test_prices_are_printed_plain(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(
        database_url,
        [
            '{"type": "mark_prices", "request_id": "p-2", "effective_at": "2026-03-02T09:30:00Z", '
            '"prices": {"QQQ": 2.50, "ETH": "3100.000", "DEC2": 4E+1}}'
        ],
    )

    assert submitted.exit_code == EXIT_OK
    assert submitted.outcomes[0]["context"]["prices"] == {"DEC2": "40", "ETH": "3100", "QQQ": "2.5"}
    prices = {row["asset"]: row["price_usdt"] for row in query("assets", "--db", database_url)}
    assert prices == {"DEC2": "40", "ETH": "3100", "QQQ": "2.5", "USDT": "1"}


def test_json_number_with_exponent_cannot_bypass_the_integer_digit_limit(sqlite_url: str) -> None:
    set_up_market(sqlite_url)

    submitted = submit(
        sqlite_url, [with_number(transfer_in("t-huge", "u1", "1", asset="USDT"), "1E+20")]
    )

    assert submitted.exit_code == EXIT_INVALID
    assert submitted.outcomes[0]["errors"] == [
        {"field": "quantity", "problem": "has more than 15 integer digits"}
    ]


def test_a_quantity_at_every_limit_at_once_is_kept_exactly(database_url: str) -> None:
    """15 integer digits and 18 decimals: 33 significant digits, more than Decimal's default 28."""
    exact = "123456789012345.123456789012345678"
    set_up_market(database_url)
    assert submit(
        database_url,
        [cmd("list_asset", "list-fine", 1, asset="FINE", collateral_rank=3, quantity_decimals=18)],
    ).statuses == ["accepted"]

    submitted = submit(
        database_url,
        [
            transfer_in("t-fine-1", "u1", exact, asset="FINE", minute=10),
            transfer_in("t-fine-2", "u1", exact, asset="FINE", minute=11),
        ],
    )

    assert submitted.exit_code == EXIT_OK
    assert [o["context"]["requested"] for o in submitted.outcomes] == [exact, exact]
    assert query("account", "u1:cross", "--db", database_url)["holdings"] == {
        "FINE": "246913578024690.246913578024691356"
    }
