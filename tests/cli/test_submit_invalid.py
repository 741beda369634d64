"""`ledger submit`: a line that cannot be understood gets an `invalid` outcome naming the field,
exit code 1, and nothing is recorded (COMMANDS.md "Outcome", STYLE.md §5)."""

import json
from typing import Any

import pytest

from tests.cli.cli_support import (
    EXIT_INVALID,
    EXIT_OK,
    cmd,
    event_count,
    set_up_market,
    submit,
    transfer_in,
    transfer_out,
)

BASE = transfer_in("bad-1", "u1", "100")  # valid on its own: 100 QQQ into u1:cross at 09:10


def changed(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


def without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k not in names}


def raw(quantity_token: str) -> str:
    """BASE as a JSON line whose quantity is a bare JSON token (NaN, 1e3, 0.1000...)."""
    return json.dumps(BASE).replace('"quantity": "100"', f'"quantity": {quantity_token}')


TIME_PROBLEM = 'must be an RFC 3339 time with a timezone, like "2026-03-01T12:00:00Z"'
REQUEST_ID_PROBLEM = "must be 1-128 characters of A-Z a-z 0-9 . _ : -"
ACCOUNT_PROBLEM = 'must be "cross", "portfolio" or "isolated:<PAIR>" (e.g. "isolated:BTCUSDT")'

# (id, line, request_id the outcome echoes, field, problem): errors found when parsing the line.
PARSE_CASES = [
    ("quantity-negative", changed(quantity="-5"), "bad-1", "quantity", "must be greater than 0"),
    ("quantity-zero", changed(quantity="0"), "bad-1", "quantity", "must be greater than 0"),
    (
        "quantity-zero-json-number",
        changed(quantity=0),
        "bad-1",
        "quantity",
        "must be greater than 0",
    ),
    (
        "quantity-negative-zero",
        changed(quantity="-0.000"),
        "bad-1",
        "quantity",
        "must be greater than 0",
    ),
    (
        "quantity-nan-string",
        changed(quantity="NaN"),
        "bad-1",
        "quantity",
        "must be a finite number",
    ),
    ("quantity-nan-bare-token", raw("NaN"), "bad-1", "quantity", "must be a finite number"),
    (
        "quantity-infinity-string",
        changed(quantity="Infinity"),
        "bad-1",
        "quantity",
        "must be a finite number",
    ),
    (
        "quantity-infinity-bare-token",
        raw("Infinity"),
        "bad-1",
        "quantity",
        "must be a finite number",
    ),
    (
        "quantity-minus-infinity-bare-token",
        raw("-Infinity"),
        "bad-1",
        "quantity",
        "must be a finite number",
    ),
    (
        "quantity-not-numeric",
        changed(quantity="abc"),
        "bad-1",
        "quantity",
        "must be a decimal string like \"0.1\", got 'abc'",
    ),
    (
        "quantity-exponent-in-string",
        changed(quantity="1e3"),
        "bad-1",
        "quantity",
        "must be a decimal string like \"0.1\", got '1e3'",
    ),
    (
        "quantity-empty-string",
        changed(quantity=""),
        "bad-1",
        "quantity",
        "must be a decimal string like \"0.1\", got ''",
    ),
    (
        "quantity-non-ascii-digits",
        changed(quantity="\u0661\u0660\u0660"),
        "bad-1",
        "quantity",
        "must be a decimal string like \"0.1\", got '\u0661\u0660\u0660'",
    ),
    (
        "quantity-boolean",
        changed(quantity=True),
        "bad-1",
        "quantity",
        "must be a decimal string, not a boolean",
    ),
    (
        "quantity-list",
        changed(quantity=["100"]),
        "bad-1",
        "quantity",
        "must be a decimal string, got list",
    ),
    (
        "quantity-json-number-past-18-decimals",
        raw("0.1000000000000000000001"),
        "bad-1",
        "quantity",
        "has more than 18 decimal places",
    ),
    (
        "quantity-16-integer-digits",
        changed(quantity="1234567890123456"),
        "bad-1",
        "quantity",
        "has more than 15 integer digits",
    ),
    ("quantity-missing", without("quantity"), "bad-1", "quantity", "is required"),
    (
        "type-unknown",
        changed(type="transfer_sideways"),
        "bad-1",
        "type",
        "unknown command type 'transfer_sideways'",
    ),
    ("type-missing", without("type"), "bad-1", "type", "is required"),
    ("account-kind-unknown", changed(account="margin"), "bad-1", "account", ACCOUNT_PROBLEM),
    (
        "account-pair-lower-case",
        changed(account="isolated:qqqusdt"),
        "bad-1",
        "account",
        ACCOUNT_PROBLEM,
    ),
    ("account-missing", without("account"), "bad-1", "account", "is required"),
    ("user-missing", without("user"), "bad-1", "user", "is required"),
    (
        "user-forbidden-character",
        changed(user="u 1"),
        "bad-1",
        "user",
        "must be 1-64 characters of A-Z a-z 0-9 . _ -",
    ),
    (
        "asset-lower-case",
        changed(asset="qqq"),
        "bad-1",
        "asset",
        "must be 2-20 upper-case letters or digits",
    ),
    ("asset-missing", without("asset"), "bad-1", "asset", "is required"),
    (
        "risk-flagged-string",
        changed(risk_flagged="true"),
        "bad-1",
        "risk_flagged",
        "must be true or false",
    ),
    (
        "risk-flagged-number",
        changed(risk_flagged=1),
        "bad-1",
        "risk_flagged",
        "must be true or false",
    ),
    (
        "channel-unknown",
        changed(channel="email"),
        "bad-1",
        "channel",
        "Input should be 'api' or 'client'",
    ),
    (
        "effective-at-without-timezone",
        changed(effective_at="2026-03-02T09:10:00"),
        "bad-1",
        "effective_at",
        TIME_PROBLEM,
    ),
    (
        "effective-at-date-only",
        changed(effective_at="2026-03-02"),
        "bad-1",
        "effective_at",
        TIME_PROBLEM,
    ),
    (
        "effective-at-garbage",
        changed(effective_at="next tuesday"),
        "bad-1",
        "effective_at",
        TIME_PROBLEM,
    ),
    (
        "effective-at-unix-integer",
        changed(effective_at=1772442600),
        "bad-1",
        "effective_at",
        TIME_PROBLEM,
    ),
    (
        "effective-at-impossible-date",
        changed(effective_at="2026-02-30T09:10:00Z"),
        "bad-1",
        "effective_at",
        "is not a valid RFC 3339 time: day is out of range for month",
    ),
    (
        "actor-unknown-kind",
        changed(actor="root"),
        "bad-1",
        "actor",
        "must be user:<id>, admin:<id>, job:<name>, engine:<name> or system",
    ),
    (
        "extra-field",
        changed(memo="please hurry"),
        "bad-1",
        "memo",
        "is not a field of this command",
    ),
    (
        "request-id-forbidden-character",
        changed(request_id="bad/1"),
        "bad/1",
        "request_id",
        REQUEST_ID_PROBLEM,
    ),
    ("request-id-space", changed(request_id="bad 1"), "bad 1", "request_id", REQUEST_ID_PROBLEM),
    (
        "request-id-129-characters",
        changed(request_id="r" * 129),
        "r" * 129,
        "request_id",
        REQUEST_ID_PROBLEM,
    ),
    ("request-id-empty", changed(request_id=""), "", "request_id", REQUEST_ID_PROBLEM),
    ("request-id-number", changed(request_id=7), None, "request_id", "must be a string"),
    ("request-id-missing", without("request_id"), None, "request_id", "is required"),
    (
        "malformed-json",
        '{"type": "transfer_in", "request_id": "bad-1",',
        None,
        "line",
        "malformed JSON: Expecting property name enclosed in double quotes",
    ),
    ("json-array", json.dumps([BASE]), None, "line", "must be a JSON object"),
    ("json-string", json.dumps("transfer_in"), None, "line", "must be a JSON object"),
    ("json-null", "null", None, "line", "must be a JSON object"),
    ("line-over-64-kib", changed(memo="x" * 70_000), None, "line", "longer than 65536 bytes"),
    (
        "list-asset-rank-as-string",
        cmd("list_asset", "bad-1", 5, asset="ZZZ", collateral_rank="9"),
        "bad-1",
        "collateral_rank",
        "must be a whole number",
    ),
    (
        "list-asset-rank-as-json-decimal",
        cmd("list_asset", "bad-1", 5, asset="ZZZ", collateral_rank=9.0),
        "bad-1",
        "collateral_rank",
        "must be a whole number",
    ),
    (
        "list-asset-rank-above-10",
        cmd("list_asset", "bad-1", 5, asset="ZZZ", collateral_rank=11),
        "bad-1",
        "collateral_rank",
        "Input should be less than or equal to 10",
    ),
    (
        "list-asset-symbol-too-short",
        cmd("list_asset", "bad-1", 5, asset="Z", collateral_rank=9),
        "bad-1",
        "asset",
        "must be 2-20 upper-case letters or digits",
    ),
    (
        "list-asset-ladder-ratio-as-percent",
        cmd(
            "list_asset",
            "bad-1",
            5,
            asset="ZZZ",
            collateral_rank=9,
            collateral_ladder=[{"up_to_usdt": None, "ratio": "80"}],
        ),
        "bad-1",
        "collateral_ladder.0.ratio",
        'must be a fraction between 0 and 1 ("0.8", not 80)',
    ),
    (
        "list-asset-ladder-last-bracket-bounded",
        cmd(
            "list_asset",
            "bad-1",
            5,
            asset="ZZZ",
            collateral_rank=9,
            collateral_ladder=[{"up_to_usdt": "1000", "ratio": "1"}],
        ),
        "bad-1",
        "collateral_ladder",
        'the last bracket must have "up_to_usdt": null',
    ),
    (
        "list-asset-ladder-descending",
        cmd(
            "list_asset",
            "bad-1",
            5,
            asset="ZZZ",
            collateral_rank=9,
            collateral_ladder=[
                {"up_to_usdt": "1000", "ratio": "1"},
                {"up_to_usdt": "500", "ratio": "0.5"},
                {"up_to_usdt": None, "ratio": "0"},
            ],
        ),
        "bad-1",
        "collateral_ladder",
        '"up_to_usdt" must be positive and ascending',
    ),
    (
        "set-cap-upper-limit-zero",
        cmd("set_collateral_cap", "bad-1", 5, asset="QQQ", upper_limit="0"),
        "bad-1",
        "upper_limit",
        "must be greater than 0",
    ),
    (
        "mark-prices-quote-asset",
        cmd("mark_prices", "bad-1", 5, prices={"USDT": "1"}),
        "bad-1",
        "prices",
        "USDT is always 1 and is not marked",
    ),
    (
        "mark-prices-negative-price",
        cmd("mark_prices", "bad-1", 5, prices={"QQQ": "-2.5"}),
        "bad-1",
        "prices.QQQ",
        "must be greater than 0",
    ),
    (
        "verification-passed-as-string",
        cmd(
            "complete_verification",
            "bad-1",
            5,
            user="u1",
            account="cross",
            transfer_request_id="t-1",
            passed="yes",
        ),
        "bad-1",
        "passed",
        "must be true or false",
    ),
]

# (id, line, field, problem): errors that need the ledger's state (listed assets, decimals, ...).
STATE_CASES = [
    ("asset-not-listed", changed(asset="ZZZ"), "asset", "ZZZ is not a listed asset"),
    (
        "quantity-9-decimals-for-8",
        changed(quantity="1.000000001"),
        "quantity",
        "has more than 8 decimal places, the precision of QQQ",
    ),
    (
        "quantity-json-number-9-decimals-for-8",
        raw("1.000000001"),
        "quantity",
        "has more than 8 decimal places, the precision of QQQ",
    ),
    (
        "quantity-json-number-many-digits",
        raw("12345.678901234567"),
        "quantity",
        "has more than 8 decimal places, the precision of QQQ",
    ),
    (
        "quantity-3-decimals-for-2",
        changed(asset="DEC2", quantity="1.005"),
        "quantity",
        "has more than 2 decimal places, the precision of DEC2",
    ),
    (
        "isolated-pair-without-the-asset",
        changed(account="isolated:QQQUSDT", asset="ETH"),
        "asset",
        "ETH is not one of isolated:QQQUSDT's assets (QQQ, USDT)",
    ),
    (
        "isolated-pair-not-listed",
        changed(account="isolated:BTCUSDT", asset="USDT"),
        "account",
        "pair BTCUSDT is not made of exactly one pair of listed assets",
    ),
    (
        "asset-not-yet-listed-at-effective-at",
        changed(asset="USDT", effective_at="2026-03-02T08:00:00Z"),
        "asset",
        "USDT was not yet listed at 2026-03-02T08:00:00Z",
    ),
    (
        "transfer-out-asset-not-listed",
        transfer_out("bad-1", "u1", "1", asset="ZZZ"),
        "asset",
        "ZZZ is not a listed asset",
    ),
    (
        "transfer-out-over-precise",
        transfer_out("bad-1", "u1", "0.001", asset="DEC2"),
        "quantity",
        "has more than 2 decimal places, the precision of DEC2",
    ),
    (
        "mark-prices-asset-not-listed",
        cmd("mark_prices", "bad-1", 5, prices={"ZZZ": "1"}),
        "prices.ZZZ",
        "ZZZ is not a listed asset",
    ),
    (
        "list-asset-already-listed",
        cmd("list_asset", "bad-1", 5, asset="QQQ", collateral_rank=9),
        "asset",
        "QQQ is already listed",
    ),
    (
        "set-cap-on-uncapped-rank",
        cmd("set_collateral_cap", "bad-1", 5, asset="ETH", upper_limit="10"),
        "asset",
        "ETH has collateral rank 2; the max collateral rule applies to ranks 7, 8, 9, 10 only",
    ),
    (
        "verification-of-no-pending-transfer",
        cmd(
            "complete_verification",
            "bad-1",
            5,
            user="u1",
            account="cross",
            transfer_request_id="t-none",
            passed=True,
        ),
        "transfer_request_id",
        "no transfer t-none awaits verification on u1:cross",
    ),
]


def assert_invalid_and_nothing_recorded(
    url: str, line: dict[str, Any] | str, field: str, problem: str
) -> dict[str, Any]:
    set_up_market(url)
    before = event_count(url)

    submitted = submit(url, [line])

    assert submitted.exit_code == EXIT_INVALID
    [outcome] = submitted.outcomes
    assert set(outcome) == {"request_id", "status", "line", "errors"}
    assert outcome["status"] == "invalid"
    assert outcome["line"] == 1
    assert outcome["errors"][0] == {"field": field, "problem": problem}
    assert f"line 1: {field}: {problem}" in submitted.stderr_lines
    assert event_count(url) == before
    return outcome


@pytest.mark.parametrize(
    ("line", "request_id", "field", "problem"),
    [case[1:] for case in PARSE_CASES],
    ids=[case[0] for case in PARSE_CASES],
)
def test_line_that_does_not_parse_is_invalid_and_records_nothing(
    database_url: str, line: Any, request_id: str | None, field: str, problem: str
) -> None:
    outcome = assert_invalid_and_nothing_recorded(database_url, line, field, problem)
    assert outcome["request_id"] == request_id
    assert outcome["errors"] == [{"field": field, "problem": problem}]


@pytest.mark.parametrize(
    ("line", "field", "problem"),
    [case[1:] for case in STATE_CASES],
    ids=[case[0] for case in STATE_CASES],
)
def test_line_the_ledger_state_makes_meaningless_is_invalid_and_records_nothing(
    database_url: str, line: Any, field: str, problem: str
) -> None:
    outcome = assert_invalid_and_nothing_recorded(database_url, line, field, problem)
    assert outcome["errors"] == [{"field": field, "problem": problem}]


@pytest.mark.parametrize(
    "line",
    [case[1] for case in STATE_CASES],
    ids=[case[0] for case in STATE_CASES],
)
def test_invalid_outcome_echoes_a_valid_request_id_for_state_dependent_errors(
    sqlite_url: str, line: Any
) -> None:
    set_up_market(sqlite_url)

    [outcome] = submit(sqlite_url, [line]).outcomes

    assert outcome["status"] == "invalid"
    assert outcome["request_id"] == "bad-1"


def test_request_id_of_exactly_128_characters_is_accepted(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(database_url, [changed(request_id="r" * 128)])

    assert submitted.exit_code == EXIT_OK
    assert [(o["request_id"], o["status"]) for o in submitted.outcomes] == [("r" * 128, "accepted")]


def test_quantity_at_the_asset_precision_is_accepted(database_url: str) -> None:
    set_up_market(database_url)

    submitted = submit(
        database_url,
        [
            transfer_in("t-dec2", "u1", "1.25", asset="DEC2"),
            transfer_in("t-qqq", "u1", "0.00000001"),
        ],
    )

    assert submitted.exit_code == EXIT_OK
    assert [(o["status"], o["context"]["requested"]) for o in submitted.outcomes] == [
        ("accepted", "1.25"),
        ("accepted", "0.00000001"),
    ]


def test_effective_at_earlier_than_the_accounts_latest_event_is_invalid(database_url: str) -> None:
    """USDT has no pool: the only aggregate the transfer changes is the account itself."""
    set_up_market(database_url)
    first = submit(database_url, [transfer_in("t-late", "u7", "10", asset="USDT", minute=30)])
    assert first.statuses == ["accepted"]
    before = event_count(database_url)

    submitted = submit(
        database_url,
        [
            transfer_in("t-early", "u7", "5", asset="USDT", minute=29),
            transfer_in("t-same-time", "u7", "5", asset="USDT", minute=30),  # equal times are fine
        ],
    )

    assert submitted.exit_code == EXIT_INVALID
    refused = submitted.outcomes[0]
    # request_id left out here: see test_invalid_outcome_echoes_a_valid_request_id_*.
    assert {k: v for k, v in refused.items() if k != "request_id"} == {
        "status": "invalid",
        "line": 1,
        "errors": [
            {
                "field": "effective_at",
                "problem": "2026-03-02T09:29:00Z is earlier than the latest event "
                "(2026-03-02T09:30:00Z) of what this command would change",
            }
        ],
    }
    assert submitted.outcomes[1]["status"] == "accepted"
    assert event_count(database_url) > before  # only the second line recorded anything
    assert submitted.stderr_lines == [
        "line 1: effective_at: 2026-03-02T09:29:00Z is earlier than the latest event "
        "(2026-03-02T09:30:00Z) of what this command would change"
    ]


def test_effective_at_earlier_than_an_account_event_records_nothing(database_url: str) -> None:
    set_up_market(database_url)
    assert submit(
        database_url, [transfer_in("t-late", "u7", "10", asset="USDT", minute=30)]
    ).statuses == ["accepted"]
    before = event_count(database_url)

    submitted = submit(database_url, [transfer_out("t-early", "u7", "5", asset="USDT", minute=29)])

    assert submitted.exit_code == EXIT_INVALID
    assert [e["field"] for e in submitted.outcomes[0]["errors"]] == ["effective_at"]
    assert event_count(database_url) == before


def test_every_problem_of_a_line_is_listed_on_stdout_and_stderr(database_url: str) -> None:
    set_up_market(database_url)
    before = event_count(database_url)

    submitted = submit(database_url, [changed(quantity="-1", account="margin", memo="x")])

    assert submitted.exit_code == EXIT_INVALID
    assert submitted.outcomes == [
        {
            "request_id": "bad-1",
            "status": "invalid",
            "line": 1,
            "errors": [
                {"field": "account", "problem": ACCOUNT_PROBLEM},
                {"field": "quantity", "problem": "must be greater than 0"},
                {"field": "memo", "problem": "is not a field of this command"},
            ],
        }
    ]
    assert submitted.stderr_lines == [
        f"line 1: account: {ACCOUNT_PROBLEM}",
        "line 1: quantity: must be greater than 0",
        "line 1: memo: is not a field of this command",
    ]
    assert event_count(database_url) == before


def test_band_ratios_out_of_order_name_the_band_field(database_url: str) -> None:
    line = cmd(
        "set_collateral_cap",
        "bad-1",
        5,
        asset="QQQ",
        upper_limit="10",
        band_b_ratio_min="0.9",
        band_c_ratio_min="0.8",
    )

    assert_invalid_and_nothing_recorded(
        database_url,
        line,
        "band_c_ratio_min",
        "band_c_ratio_min must be above band_b_ratio_min, both between 0 and 1",
    )
