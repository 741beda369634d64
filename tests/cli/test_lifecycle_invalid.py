"""Bad input to the lifecycle commands: `invalid` naming the field, exit 1, nothing recorded."""

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger import Ledger
from ledger.cli.main import app
from tests.support import at, command, run

BASE = {"effective_at": at(30)}
CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "borrow-negative",
        {"type": "borrow", "user": "u1", "account": "cross", "asset": "USDT", "quantity": "-5"},
        "quantity",
    ),
    (
        "borrow-zero",
        {"type": "borrow", "user": "u1", "account": "cross", "asset": "USDT", "quantity": "0"},
        "quantity",
    ),
    (
        "borrow-unknown-asset",
        {"type": "borrow", "user": "u1", "account": "cross", "asset": "NOPE", "quantity": "5"},
        "asset",
    ),
    (
        "borrow-outside-pair",
        {
            "type": "borrow",
            "user": "u1",
            "account": "isolated:BTCUSDT",
            "asset": "ETH",
            "quantity": "1",
        },
        "asset",
    ),
    (
        "repay-non-numeric",
        {"type": "repay", "user": "u1", "account": "cross", "asset": "USDT", "quantity": "lots"},
        "quantity",
    ),
    (
        "repay-bad-account",
        {"type": "repay", "user": "u1", "account": "spot", "asset": "USDT", "quantity": "1"},
        "account",
    ),
    ("accrual-no-timezone", {"type": "accrue_interest", "until": "2026-03-02T12:00:00"}, "until"),
    ("accrual-missing-until", {"type": "accrue_interest"}, "until"),
    (
        "trade-same-asset",
        {
            "type": "settle_trade",
            "user": "u1",
            "account": "cross",
            "sell_asset": "USDT",
            "sell_quantity": "1",
            "buy_asset": "USDT",
            "buy_quantity": "1",
            "fee_asset": "USDT",
            "fee_quantity": "0",
        },
        "buy_asset",
    ),
    (
        "trade-negative-fee",
        {
            "type": "settle_trade",
            "user": "u1",
            "account": "cross",
            "sell_asset": "USDT",
            "sell_quantity": "1",
            "buy_asset": "BTC",
            "buy_quantity": "1",
            "fee_asset": "USDT",
            "fee_quantity": "-1",
        },
        "fee_quantity",
    ),
    ("switch-unknown-mode", {"type": "switch_mode", "user": "u1", "to": "classic_10x"}, "to"),
    (
        "switch-negative-loss",
        {"type": "switch_mode", "user": "u1", "to": "pro", "open_order_loss_usdt": "-1"},
        "open_order_loss_usdt",
    ),
    (
        "cooling-off-bad-period",
        {"type": "start_cooling_off", "user": "u1", "period": "2d"},
        "period",
    ),
    ("bnb-not-bool", {"type": "set_bnb_discount", "user": "u1", "enabled": "yes"}, "enabled"),
    (
        "admin-empty-note",
        {
            "type": "admin_set_borrowing",
            "user": "u1",
            "account": "cross",
            "enabled": False,
            "note": "",
        },
        "note",
    ),
    (
        "terms-rate-above-one",
        {"type": "set_borrow_terms", "asset": "USDT", "hourly_interest_rate": "2"},
        "hourly_interest_rate",
    ),
    ("thresholds-unknown-mode", {"type": "set_margin_thresholds", "mode": "turbo"}, "mode"),
    (
        "platform-fee-ratio-one",
        {"type": "set_platform_rules", "liquidation_fee_ratio": "1"},
        "liquidation_fee_ratio",
    ),
    (
        "platform-call-interval-negative",
        {"type": "set_platform_rules", "margin_call_interval_hours": -1},
        "margin_call_interval_hours",
    ),
    (
        "thresholds-liquidation-above-call",
        {"type": "set_margin_thresholds", "mode": "classic_3x", "liquidation_level": "1.4"},
        "liquidation_level",
    ),
]


@pytest.mark.parametrize(
    ("line", "field"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_lifecycle_input_is_invalid_and_records_nothing(
    database_url: str, line: dict[str, Any], field: str
) -> None:
    with Ledger(database_url) as ledger:
        for setup in (
            command("list_asset", asset="USDT", collateral_rank=1),
            command("list_asset", asset="BTC", collateral_rank=1),
            command("list_asset", asset="ETH", collateral_rank=1),
            command("mark_prices", prices={"BTC": "50000", "ETH": "3000"}),
            command("set_borrow_terms", asset="USDT", hourly_interest_rate="0.0001"),
            command("transfer_in", user="u1", account="cross", asset="BTC", quantity="1"),
        ):
            assert run(ledger, setup).status != "invalid"
        before = ledger.recorder.max_notification_id()
    data = {"request_id": "bad-1", **BASE, **line}
    result = CliRunner().invoke(app, ["submit", "-", "--db", database_url], input=json.dumps(data))
    assert result.exit_code == 1, result.output
    outcome = json.loads(result.stdout.splitlines()[0])
    assert outcome["status"] == "invalid"
    assert outcome["request_id"] == "bad-1"
    assert field in [error["field"] for error in outcome["errors"]], outcome
    with Ledger(database_url) as ledger:
        assert ledger.recorder.max_notification_id() == before
