"""Trades through the Ledger, on both backends (DOMAIN.md §5 trades, §3 totals moved by trades)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger
from ledger.commands import CommandInvalid
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.domain.request import Request
from ledger.outcomes import Outcome
from ledger.queries import account_view
from projections.queries import assets_view
from tests.support import at, command, event_count, run, transfer_in

CAP_MESSAGE = (
    "ABC has reached platform max pledged collateral amount. The max transfer-in quantity "
    "is {q}. Please reduce the quantity or try with other tokens"
)


@pytest.fixture
def market(ledger: Ledger) -> Ledger:
    """USDT, BTC (rank 2), BNB (rank 3) and ABC (rank 8, capped at U = 1,000) with prices;
    USDT lends at 0.01% an hour, BTC at 0.001%; ABC has no borrow terms."""
    for asset, rank in (("USDT", 1), ("BTC", 2), ("BNB", 3), ("ABC", 8)):
        assert run(ledger, command("list_asset", asset=asset, collateral_rank=rank)).is_accepted
    assert run(ledger, command("set_collateral_cap", asset="ABC", upper_limit="1000")).is_accepted
    prices = {"BTC": "20000", "BNB": "500", "ABC": "2"}
    assert run(ledger, command("mark_prices", prices=prices)).is_accepted
    for asset, rate in (("USDT", "0.0001"), ("BTC", "0.00001")):
        terms = command("set_borrow_terms", asset=asset, hourly_interest_rate=rate)
        assert run(ledger, terms).is_accepted
    return ledger


def trade(
    ledger: Ledger,
    user: str,
    sell: str,
    buy: str,
    fee: str,
    *,
    minutes: float = 0,
    account: str = "cross",
    **flags: bool,
) -> Outcome:
    """sell/buy/fee as "30 USDT"."""
    (sell_quantity, sell_asset), (buy_quantity, buy_asset), (fee_quantity, fee_asset) = (
        text.split() for text in (sell, buy, fee)
    )
    return run(
        ledger,
        command(
            "settle_trade",
            effective_at=at(minutes),
            user=user,
            account=account,
            sell_asset=sell_asset,
            sell_quantity=sell_quantity,
            buy_asset=buy_asset,
            buy_quantity=buy_quantity,
            fee_asset=fee_asset,
            fee_quantity=fee_quantity,
            **flags,
        ),
    )


def events_after(ledger: Ledger, position: int) -> list[Any]:
    """The events recorded after notification `position`, decoded, in log order."""
    return [
        ledger.mapper.to_domain_event(n)
        for n in ledger.recorder.select_notifications(
            start=position, limit=1000, inclusive_of_start=False
        )
    ]


def kinds(events: list[Any]) -> list[str]:
    return [type(event).__qualname__ for event in events]


def holdings(ledger: Ledger, account_id: str) -> tuple[dict[str, str], ...]:
    view = account_view(ledger, account_id)
    return view.holdings, view.liabilities, view.interest


def test_auto_borrow_then_auto_repay_settle_exactly(market: Ledger) -> None:
    """Goal: the domain's 10/30/20 example end to end, with interest, by hand.

    09:00 u1 brings 10 USDT and 1 BTC. 09:10 a buy of 0.0015 BTC for 30 USDT (fee 0.0000015 BTC)
    borrows the 20 USDT short and charges the 09:00 hour: 20 x 0.0001 = 0.002 USDT. The 10:00 and
    11:00 hours add 0.002 each. 11:30 a sale of 0.0011 BTC for 22 USDT (fee 0.022 USDT) repays
    from the 21.978 USDT of proceeds: 0.006 interest first, then the 20 principal; 1.972 remain.
    """
    assert transfer_in(market, "u1", "10", asset="USDT").is_accepted
    assert transfer_in(market, "u1", "1", asset="BTC").is_accepted
    before = event_count(market)
    bought = trade(
        market, "u1", "30 USDT", "0.0015 BTC", "0.0000015 BTC", minutes=10, auto_borrow=True
    )
    assert bought.is_accepted, bought
    assert (bought.context["auto_borrowed"], bought.context["first_hour_interest"]) == (
        "20",
        "0.002",
    )
    assert bought.context["holding_changes"] == {"BTC": "0.0014985", "USDT": "-10"}
    assert holdings(market, "u1:cross") == (
        {"BTC": "1.0014985"},
        {"USDT": "20"},
        {"USDT": "0.002"},
    )
    recorded = events_after(market, before)
    assert kinds(recorded) == [
        "MarginAccount.Borrowed",
        "MarginAccount.TradeSettled",
        "Request.Recorded",
    ]
    borrowed, settled, _request = recorded
    assert (borrowed.asset, borrowed.quantity, borrowed.is_auto) == ("USDT", Decimal(20), True)
    assert borrowed.first_hour_interest == Decimal("0.002")
    assert borrowed.first_hour == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert (settled.sell_asset, settled.sell_quantity) == ("USDT", Decimal(30))
    assert (settled.buy_asset, settled.buy_quantity) == ("BTC", Decimal("0.0015"))
    assert (settled.fee_asset, settled.fee_quantity) == ("BTC", Decimal("0.0000015"))
    assert [e.event_id for e in recorded] == bought.events

    before = event_count(market)
    sold = trade(market, "u1", "0.0011 BTC", "22 USDT", "0.022 USDT", minutes=150, auto_repay=True)
    assert sold.is_accepted, sold
    assert (sold.context["auto_repaid_interest"], sold.context["auto_repaid_principal"]) == (
        "0.006",
        "20",
    )
    assert holdings(market, "u1:cross") == ({"BTC": "1.0003985", "USDT": "1.972"}, {}, {})
    recorded = events_after(market, before)
    assert kinds(recorded) == [
        "MarginAccount.InterestCharged",
        "MarginAccount.InterestCharged",
        "MarginAccount.TradeSettled",
        "MarginAccount.Repaid",
        "Request.Recorded",
    ]
    charged = recorded[:2]
    assert [c.hour.hour for c in charged] == [10, 11]
    assert [c.quantity for c in charged] == [Decimal("0.002")] * 2
    repaid = recorded[3]
    assert (repaid.asset, repaid.is_auto, repaid.quantity) == ("USDT", True, Decimal("20.006"))
    assert (repaid.interest_paid, repaid.principal_paid) == (Decimal("0.006"), Decimal(20))
    assert (repaid.holding_after, repaid.liability_after, repaid.interest_after) == (
        Decimal("1.972"),
        0,
        0,
    )
    # The loan is closed: the accrual job has nothing left to charge.
    accrual = run(market, command("accrue_interest", until=at(600), effective_at=at(600)))
    assert accrual.context["hours_charged"] == 0


def test_one_trade_auto_borrows_the_sold_asset_and_auto_repays_the_bought_one(
    market: Ledger,
) -> None:
    """u2 owes 0.001 BTC (borrowed at 09:00, 0.00000001 BTC of interest) and holds 10 USDT. At
    09:20 it buys 0.0015 BTC for 30 USDT, fee 0.0000015 BTC: 20 USDT are borrowed, and the
    0.0014985 BTC of proceeds repay 0.00000001 interest and then the 0.001 principal."""
    assert transfer_in(market, "u2", "10", asset="USDT").is_accepted
    assert transfer_in(market, "u2", "2", asset="BNB").is_accepted
    loan = command("borrow", user="u2", account="cross", asset="BTC", quantity="0.001")
    assert run(market, loan).is_accepted
    before = event_count(market)
    outcome = trade(
        market,
        "u2",
        "30 USDT",
        "0.0015 BTC",
        "0.0000015 BTC",
        minutes=20,
        auto_borrow=True,
        auto_repay=True,
    )
    assert outcome.is_accepted, outcome
    recorded = events_after(market, before)
    assert kinds(recorded) == [
        "MarginAccount.Borrowed",
        "MarginAccount.TradeSettled",
        "MarginAccount.Repaid",
        "Request.Recorded",
    ]
    borrowed, settled, repaid, request = recorded
    assert (borrowed.asset, borrowed.quantity, borrowed.is_auto) == ("USDT", Decimal(20), True)
    assert (repaid.asset, repaid.is_auto) == ("BTC", True)
    assert (repaid.interest_paid, repaid.principal_paid) == (
        Decimal("0.00000001"),
        Decimal("0.001"),
    )
    # One command, one atomic write: same request, same business time, consecutive versions.
    assert {e.request_id for e in recorded} == {outcome.request_id}
    assert {e.effective_at for e in recorded} == {borrowed.effective_at}
    versions = [e.originator_version for e in (borrowed, settled, repaid)]
    assert versions == list(range(versions[0], versions[0] + 3))
    assert request.outcome["status"] == "accepted"
    assert holdings(market, "u2:cross") == (
        {"BNB": "2", "BTC": "0.00149849"},
        {"USDT": "20"},
        {"USDT": "0.002"},
    )


@pytest.mark.parametrize(
    ("bought", "status", "reason"),
    [
        ("0.0015 BTC", "rejected", "margin_level"),
        ("0.00150011 BTC", "rejected", "margin_level"),
        ("0.00150016 BTC", "accepted", None),
    ],
    ids=["1.5-before-interest-below-after", "just-below", "just-above"],
)
def test_the_auto_borrow_must_leave_the_level_of_the_whole_trade_above_the_minimum(
    market: Ledger, bought: str, status: str, reason: str | None
) -> None:
    """10 USDT held, 30 sold: 20 borrowed plus 0.002 interest, so Classic 3x needs the bought
    BTC worth more than 1.5 x 20.002 = 30.003 USDT, i.e. more than 0.00150015 BTC."""
    assert transfer_in(market, "u3", "10", asset="USDT").is_accepted
    outcome = trade(market, "u3", "30 USDT", bought, "0 BTC", minutes=5, auto_borrow=True)
    assert (outcome.status, outcome.reason) == (status, reason)
    if status == "rejected":
        assert holdings(market, "u3:cross") == ({"USDT": "10"}, {}, {})
        assert outcome.context["level_min"] == "1.5"
        assert Decimal(outcome.context["collateral_margin_level_after"]) <= Decimal("1.5")


def refusal_cases(ledger: Ledger) -> None:
    """Set up one user per refusal reason (each holds 10 USDT in cross unless noted)."""
    for user in ("short", "fee", "abc", "disabled", "cooling"):
        assert transfer_in(ledger, user, "10", asset="USDT").is_accepted
    assert transfer_in(ledger, "abc", "10", asset="ABC").is_accepted
    disable = command(
        "admin_set_borrowing", user="disabled", account="cross", enabled=False, note="questionnaire"
    )
    assert run(ledger, disable).is_accepted
    assert run(ledger, command("start_cooling_off", user="cooling", period="1d")).is_accepted
    flagged = transfer_in(ledger, "flagged", "10", asset="USDT", risk_flagged=True)
    assert flagged.reason == "opening_risk_check"  # registered, never opened


REFUSALS = [
    ("short", "30 USDT", "0.0015 BTC", "0 BTC", False, "insufficient_balance"),
    ("fee", "10 USDT", "0.0005 BTC", "0.01 USDT", False, "insufficient_balance"),
    ("fee", "10 USDT", "0.0005 BTC", "0.0006 BTC", False, "insufficient_balance"),
    ("abc", "30 ABC", "60 USDT", "0 USDT", True, "asset_not_borrowable"),
    ("disabled", "30 USDT", "0.005 BTC", "0 BTC", True, "borrow_disabled"),
    ("cooling", "30 USDT", "0.005 BTC", "0 BTC", True, "cooling_off"),
    ("flagged", "1 USDT", "0.00005 BTC", "0 BTC", False, "account_not_open"),
]


@pytest.mark.parametrize(
    ("user", "sell", "buy", "fee", "auto_borrow", "reason"),
    REFUSALS,
    ids=[
        "shortfall-without-auto-borrow",
        "fee-in-sold-asset-unpayable",
        "fee-in-bought-asset-above-proceeds",
        "asset-not-borrowable",
        "borrowing-disabled",
        "cooling-off",
        "account-not-open",
    ],
)
def test_a_refused_trade_changes_nothing_and_is_recorded_as_an_event(
    market: Ledger,
    user: str,
    sell: str,
    buy: str,
    fee: str,
    auto_borrow: bool,
    reason: str,
) -> None:
    refusal_cases(market)
    account_id = f"{user}:cross"
    state_before = holdings(market, account_id)
    totals_before = {v.asset: v.total for v in assets_view(market)}
    before = event_count(market)
    outcome = trade(market, user, sell, buy, fee, minutes=30, auto_borrow=auto_borrow)
    assert (outcome.status, outcome.reason, outcome.account) == ("rejected", reason, account_id)
    assert outcome.message
    assert holdings(market, account_id) == state_before
    assert {v.asset: v.total for v in assets_view(market)} == totals_before
    recorded = events_after(market, before)
    assert kinds(recorded) == ["MarginAccount.TradeRejected", "Request.Recorded"]
    rejected, request = recorded
    assert rejected.originator_id == MarginAccount.create_id(user, "cross")
    assert (rejected.reason, rejected.sell_asset, rejected.buy_asset) == (
        reason,
        sell.split()[1],
        buy.split()[1],
    )
    assert rejected.decision["sell_quantity"] == sell.split()[0]
    assert rejected.request_id == outcome.request_id
    assert (request.outcome["status"], request.outcome["reason"]) == ("rejected", reason)
    assert [e.event_id for e in recorded] == outcome.events


def test_a_trade_on_an_account_the_ledger_never_saw_is_refused_and_the_request_recorded(
    market: Ledger,
) -> None:
    before = event_count(market)
    outcome = trade(market, "stranger", "1 USDT", "0.00005 BTC", "0 BTC")
    assert (outcome.status, outcome.reason) == ("rejected", "account_not_open")
    recorded = events_after(market, before)
    assert kinds(recorded) == ["Request.Recorded"]
    assert isinstance(recorded[0], Request.Recorded)
    assert recorded[0].outcome["reason"] == "account_not_open"


def test_trades_move_the_platform_total_past_the_cap_and_then_transfer_ins_are_blocked(
    market: Ledger,
) -> None:
    """ABC: U = 1,000. 800 come in by transfer (band A's whole room). A trade buying 500 more is
    not limited: T = 1,300, r = 130%, band D, and the next transfer-in gets q_max 0. Selling 400
    brings T to 900 (band C): room for U - T = 100 again."""
    assert transfer_in(market, "holder", "800").is_accepted
    assert transfer_in(market, "buyer", "1000", asset="USDT").is_accepted
    before = event_count(market)
    bought = trade(market, "buyer", "1000 USDT", "500 ABC", "0 ABC", minutes=10)
    assert bought.is_accepted, bought
    pool_events = [e for e in events_after(market, before) if isinstance(e, AssetPool.Event)]
    assert [(type(e).__name__, e.movement, e.quantity) for e in pool_events] == [
        ("TotalIncreased", "trade", Decimal(500))
    ]
    assert pool_events[0].platform_total_after == Decimal(1300)
    abc = next(v for v in assets_view(market) if v.asset == "ABC")
    assert (abc.total, abc.ratio, abc.band) == ("1300", "1.3", "D")

    blocked = transfer_in(market, "late", "0.00000001", effective_at=at(20))
    assert (blocked.status, blocked.reason) == ("rejected", "collateral_cap")
    assert (blocked.context["band"], blocked.context["q_max"], blocked.context["total"]) == (
        "D",
        "0",
        "1300",
    )
    assert blocked.message == CAP_MESSAGE.format(q="0")

    sold = trade(market, "holder", "400 ABC", "800 USDT", "0.8 USDT", minutes=30)
    assert sold.is_accepted, sold
    room = transfer_in(market, "late", "100.00000001", effective_at=at(40))
    assert (room.context["band"], room.context["q_max"]) == ("C", "100")
    assert transfer_in(market, "late", "100", effective_at=at(41)).is_accepted
    abc = next(v for v in assets_view(market) if v.asset == "ABC")
    assert (abc.total, abc.band) == ("1000", "D")


def test_an_auto_borrow_and_sale_of_a_capped_asset_moves_the_total_by_the_net_change(
    market: Ledger,
) -> None:
    """With ABC borrowable, selling 30 ABC with 10 held borrows 20: the account's ABC holding
    goes from 10 to 0, so T falls by 10 (borrowed 20 in, 30 sold out)."""
    terms = command("set_borrow_terms", asset="ABC", hourly_interest_rate="0.0001")
    assert run(market, terms).is_accepted
    assert transfer_in(market, "shorter", "10").is_accepted
    assert transfer_in(market, "shorter", "100", asset="USDT").is_accepted
    outcome = trade(market, "shorter", "30 ABC", "60 USDT", "0 USDT", minutes=5, auto_borrow=True)
    assert outcome.is_accepted, outcome
    abc = next(v for v in assets_view(market) if v.asset == "ABC")
    assert abc.total == "0"
    assert holdings(market, "shorter:cross") == ({"USDT": "160"}, {"ABC": "20"}, {"ABC": "0.002"})


def test_asset_totals_equal_the_sum_of_the_accounts_holdings_after_trades(market: Ledger) -> None:
    """Cross, portfolio and isolated accounts trade, borrow and repay; afterwards each asset's
    total (cross + portfolio) and isolated total are the sums of the accounts' holdings."""
    accounts = ["a:cross", "b:portfolio", "c:isolated:ABCUSDT", "d:cross"]
    assert transfer_in(market, "a", "500", asset="USDT").is_accepted
    assert transfer_in(market, "a", "300").is_accepted
    assert transfer_in(market, "b", "1", asset="BTC", account="portfolio").is_accepted
    assert transfer_in(market, "c", "400", asset="USDT", account="isolated:ABCUSDT").is_accepted
    assert transfer_in(market, "d", "0.5", asset="BTC").is_accepted
    steps = [
        ("a", "cross", "200 USDT", "100 ABC", "0.1 ABC", {}),
        ("a", "cross", "50 ABC", "0.005 BTC", "0.1 USDT", {}),
        ("b", "portfolio", "0.1 BTC", "1000 ABC", "1 ABC", {}),
        ("c", "isolated:ABCUSDT", "500 USDT", "250 ABC", "0.25 ABC", {"auto_borrow": True}),
        ("c", "isolated:ABCUSDT", "200 ABC", "400 USDT", "0.4 USDT", {"auto_repay": True}),
        ("d", "cross", "600 USDT", "1 BNB", "0.001 BNB", {"auto_borrow": True}),
        ("d", "cross", "0.2 BNB", "100 USDT", "0.1 USDT", {"auto_repay": True}),
    ]
    for minutes, (user, account, sell, buy, fee, flags) in enumerate(steps, start=10):
        outcome = trade(market, user, sell, buy, fee, minutes=minutes, account=account, **flags)
        assert outcome.is_accepted, (user, sell, outcome)
    expected: dict[str, dict[str, Decimal]] = {}
    for account_id in accounts:
        view = account_view(market, account_id)
        bucket = "isolated_total" if view.kind == "isolated" else "total"
        for asset, quantity in view.holdings.items():
            sums = expected.setdefault(asset, {"total": Decimal(0), "isolated_total": Decimal(0)})
            sums[bucket] += Decimal(quantity)
    totals = {
        v.asset: {"total": Decimal(v.total), "isolated_total": Decimal(v.isolated_total)}
        for v in assets_view(market)
    }
    zero = {"total": Decimal(0), "isolated_total": Decimal(0)}
    assert {a: totals[a] for a in totals if totals[a] != zero} == expected
    # The sums by hand: ABC 300 + 100 - 0.1 - 50 + 999 in cross and portfolio (band D: 1348.9).
    assert expected["ABC"] == {"total": Decimal("1348.9"), "isolated_total": Decimal("49.75")}
    assert account_view(market, "c:isolated:ABCUSDT").liabilities == {}
    # d: 600 USDT borrowed (0.06 interest), then 99.9 of proceeds repay 0.06 and 99.84.
    assert account_view(market, "d:cross").liabilities == {"USDT": "500.16"}


def test_an_isolated_account_trades_only_its_pair(market: Ledger) -> None:
    assert transfer_in(market, "i", "100", asset="USDT", account="isolated:ABCUSDT").is_accepted
    before = event_count(market)
    with pytest.raises(CommandInvalid):
        trade(market, "i", "10 USDT", "0.0005 BTC", "0 BTC", account="isolated:ABCUSDT")
    with pytest.raises(CommandInvalid):
        trade(market, "i", "10 USDT", "5 ABC", "0.001 BNB", account="isolated:ABCUSDT")
    assert event_count(market) == before
    ok = trade(market, "i", "10 USDT", "5 ABC", "0.005 ABC", account="isolated:ABCUSDT")
    assert ok.is_accepted


@pytest.mark.parametrize(
    ("buy", "fee", "field"),
    [("0.0005 BTC", "0 BTC", "buy_asset"), ("5 ABC", "0.001 BNB", "fee_asset")],
    ids=["foreign-bought-asset", "foreign-fee-asset"],
)
def test_the_invalid_outcome_names_the_trade_field_with_the_foreign_asset(
    market: Ledger, buy: str, fee: str, field: str
) -> None:
    assert transfer_in(market, "i", "100", asset="USDT", account="isolated:ABCUSDT").is_accepted
    with pytest.raises(CommandInvalid) as refused:
        trade(market, "i", "10 USDT", buy, fee, account="isolated:ABCUSDT")
    assert [e.field for e in refused.value.errors] == [field]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sell_asset": "XYZ"}, "sell_asset"),
        ({"buy_asset": "XYZ"}, "buy_asset"),
        ({"fee_asset": "XYZ"}, "fee_asset"),
        ({"sell_quantity": "1.000000001"}, "sell_quantity"),
        ({"fee_quantity": "0.000000001"}, "fee_quantity"),
    ],
    ids=["unlisted-sold", "unlisted-bought", "unlisted-fee", "too-precise-sale", "too-precise-fee"],
)
def test_an_invalid_trade_names_its_field_and_records_nothing(
    market: Ledger, fields: dict[str, str], field: str
) -> None:
    assert transfer_in(market, "u", "100", asset="USDT").is_accepted
    before = event_count(market)
    data = command(
        "settle_trade",
        user="u",
        account="cross",
        sell_asset="USDT",
        sell_quantity="10",
        buy_asset="BTC",
        buy_quantity="0.0005",
        fee_asset="BTC",
        fee_quantity="0",
    )
    with pytest.raises(CommandInvalid) as refused:
        run(market, data | fields)
    assert [e.field for e in refused.value.errors] == [field]
    assert event_count(market) == before


def test_a_trade_dated_before_the_accounts_latest_event_is_invalid(market: Ledger) -> None:
    assert transfer_in(market, "u", "100", asset="USDT", effective_at=at(30)).is_accepted
    with pytest.raises(CommandInvalid) as refused:
        trade(market, "u", "10 USDT", "0.0005 BTC", "0 BTC", minutes=29)
    assert refused.value.errors[0].field == "effective_at"
