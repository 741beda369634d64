"""The risk sweep through the Ledger, on both backends (DOMAIN.md §7, §3 for auto top-ups).

The market: USDT (2 decimals, lends at 0.01% an hour: 0.15 USDT of interest on a 1,500 loan in
the hour of borrowing), ABC (rank 8, capped, 2 decimals, price 1) and BTC (rank 2, price 20,000).
A leveraged long: 1,000 ABC transferred in, 1,500 USDT borrowed and sold for 1,500 ABC, so 2,500
ABC held against 1,500.15 USDT owed. Every figure below is computed by hand in the comments.
"""

import contextlib
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from ledger import Ledger
from ledger.commands import CommandInvalid
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.money import decimal_places
from ledger.outcomes import Outcome
from ledger.queries import account_view
from projections.queries import assets_view
from tests.support import at, command, event_count, run

LONG_AT_0_6543 = {  # 2,500 ABC at 0.6543 = 1,635.75 against 1,500.15: CML 1.0904, liquidation
    "proceeds": "1635.75",
    "fee": "32.72",  # 2% = 32.715, plus the 0.005 of rounding dust
    "remainder": "102.88",  # 135.60 - 32.715 = 102.885, rounded down to cents
}


def open_market(
    ledger: Ledger, *, upper_limit: str = "1000000", fixed_quota_usdt: str = "50000"
) -> None:
    for asset, rank, decimals in (("USDT", 1, 2), ("ABC", 8, 2), ("BTC", 2, 8)):
        listing = command(
            "list_asset", asset=asset, collateral_rank=rank, quantity_decimals=decimals
        )
        assert run(ledger, listing).is_accepted
    cap = command(
        "set_collateral_cap",
        asset="ABC",
        upper_limit=upper_limit,
        fixed_quota_usdt=fixed_quota_usdt,
    )
    assert run(ledger, cap).is_accepted
    assert run(ledger, command("mark_prices", prices={"ABC": "1", "BTC": "20000"})).is_accepted
    terms = command("set_borrow_terms", asset="USDT", hourly_interest_rate="0.0001")
    assert run(ledger, terms).is_accepted


@pytest.fixture
def market(ledger: Ledger) -> Ledger:
    open_market(ledger)
    return ledger


def accepted(ledger: Ledger, type_: str, minute: float, **fields: Any) -> Outcome:
    outcome = run(ledger, command(type_, effective_at=at(minute), **fields))
    assert outcome.is_accepted, outcome
    return outcome


def open_long(
    ledger: Ledger,
    user: str,
    *,
    minute: float,
    account: str = "cross",
    collateral: str = "1000",
    borrowed: str = "1500",
) -> None:
    """Collateral ABC in, USDT borrowed and sold for ABC at price 1 (minutes m, m+1, m+2)."""
    where = {"user": user, "account": account}
    accepted(ledger, "transfer_in", minute, **where, asset="ABC", quantity=collateral)
    accepted(ledger, "borrow", minute + 1, **where, asset="USDT", quantity=borrowed)
    accepted(
        ledger,
        "settle_trade",
        minute + 2,
        **where,
        sell_asset="USDT",
        sell_quantity=borrowed,
        buy_asset="ABC",
        buy_quantity=borrowed,
        fee_asset="USDT",
        fee_quantity="0",
    )


def mark(ledger: Ledger, minute: float, **prices: str) -> None:
    accepted(ledger, "mark_prices", minute, prices=prices)


def sweep(
    ledger: Ledger,
    minute: float,
    *,
    spot: dict[str, dict[str, str]] | None = None,
    request_id: str | None = None,
) -> Outcome:
    fields: dict[str, Any] = {"effective_at": at(minute)}
    if spot is not None:
        fields["spot_available"] = spot
    outcome = run(ledger, command("check_margins", request_id, **fields))
    assert outcome.is_accepted, outcome
    return outcome


def recorded(ledger: Ledger, *event_classes: type) -> list[Any]:
    """The events of these classes, read back from the notification log, in log order."""
    notifications = ledger.recorder.select_notifications(
        start=0,
        limit=10_000,
        topics=[get_topic(cls) for cls in event_classes],
        inclusive_of_start=False,
    )
    return [ledger.mapper.to_domain_event(n) for n in notifications]


def of_account(events: list[Any], account_id: str) -> list[Any]:
    user, account = account_id.split(":", 1)
    return [e for e in events if e.originator_id == MarginAccount.create_id(user, account)]


def summary(outcome: Outcome) -> dict[str, Any]:
    """The sweep's counts and sums, without the per-account details and the time."""
    keys = ("accounts_scanned", "margin_calls", "top_ups", "liquidations")
    keys += ("deficit_usdt", "uncovered_usdt", "insurance_fund_usdt")
    return {key: outcome.context[key] for key in keys}


NO_TOP_UPS = {"topped_up": 0, "limited": 0, "blocked": 0}


# --- liquidation ------------------------------------------------------------------------------


def test_liquidation_leaves_the_surplus_to_the_user_and_the_fee_to_the_fund(
    market: Ledger,
) -> None:
    open_long(market, "u1", minute=1)
    accepted(market, "transfer_in", 4, user="u2", account="cross", asset="ABC", quantity="50")
    mark(market, 30, ABC="0.6543")

    outcome = sweep(market, 40)

    assert summary(outcome) == {
        "accounts_scanned": 1,  # u2 never borrowed
        "margin_calls": 0,
        "top_ups": NO_TOP_UPS,
        "liquidations": 1,
        "deficit_usdt": "0",
        "uncovered_usdt": "0",
        "insurance_fund_usdt": "32.72",
    }
    [details] = outcome.context["accounts"]
    assert details["account"] == "u1:cross"
    assert details["action"] == "liquidation"
    assert details["proceeds_usdt"] == LONG_AT_0_6543["proceeds"]
    assert details["fee_usdt"] == LONG_AT_0_6543["fee"]
    assert details["remainder_usdt"] == LONG_AT_0_6543["remainder"]

    [liquidated] = recorded(market, MarginAccount.Liquidated)
    assert liquidated.request_id == outcome.request_id
    assert liquidated.sold == {"ABC": Decimal(2500)}
    assert liquidated.remainder_usdt == Decimal("102.88")
    assert liquidated.deficit_usdt == 0
    decision = liquidated.decision
    assert decision["prices_usdt"] == {"ABC": "0.6543", "USDT": "1"}
    assert decision["repaid_liabilities"] == {"USDT": "1500"}
    assert decision["repaid_interest"] == {"USDT": "0.15"}
    level = Decimal(decision["collateral_margin_level_before"])
    assert level.quantize(Decimal("0.00001")) == Decimal("1.09039")  # 1,635.75 / 1,500.15
    assert decision["fund_balance_after_usdt"] == "32.72"

    [established, funded] = recorded(market, InsuranceFund.Established, InsuranceFund.Funded)
    assert isinstance(established, InsuranceFund.Established)
    assert (funded.source, funded.account_id) == ("liquidation_fee", "u1:cross")
    assert (funded.amount_usdt, funded.balance_after_usdt) == (Decimal("32.72"),) * 2

    [decreased] = recorded(market, AssetPool.TotalDecreased)[-1:]
    assert (decreased.movement, decreased.account_id) == ("liquidation", "u1:cross")
    assert decreased.quantity == Decimal(2500)
    assert decreased.platform_total_after == Decimal(50)  # u2's 50 ABC

    view = account_view(market, "u1:cross")
    assert (view.holdings, view.liabilities, view.interest) == ({"USDT": "102.88"}, {}, {})
    assert account_view(market, "u2:cross").holdings == {"ABC": "50"}


def test_interest_settled_up_to_the_sweep_is_repaid_by_the_liquidation(market: Ledger) -> None:
    """Borrowed at 09:02 (the 09:00 hour charged then), swept at 12:30: the sweep charges 10:00,
    11:00 and 12:00 (0.15 each) first. Debt 1,500.60; surplus 135.15; fee 32.715 + dust = 32.72;
    remainder 102.435 rounded down to 102.43."""
    open_long(market, "u1", minute=1)
    mark(market, 30, ABC="0.6543")

    outcome = sweep(market, 210)

    charged = of_account(recorded(market, MarginAccount.InterestCharged), "u1:cross")
    assert [(e.hour.hour, e.request_id) for e in charged] == [
        (10, outcome.request_id),
        (11, outcome.request_id),
        (12, outcome.request_id),
    ]
    [details] = outcome.context["accounts"]
    assert details["repaid_interest"] == {"USDT": "0.6"}
    assert details["debt_usdt"] == "1500.6"
    assert (details["fee_usdt"], details["remainder_usdt"]) == ("32.72", "102.43")
    assert account_view(market, "u1:cross").holdings == {"USDT": "102.43"}


def test_deficit_is_covered_by_the_insurance_fund(market: Ledger) -> None:
    """2,500 ABC at 0.5 bring 1,250 against 1,500.15: a deficit of 250.15, paid out of the
    fund's 500: 249.85 left."""
    accepted(market, "fund_insurance", 1, amount_usdt="500")
    open_long(market, "u1", minute=2)
    mark(market, 30, ABC="0.5")

    outcome = sweep(market, 40)

    assert summary(outcome) == {
        "accounts_scanned": 1,
        "margin_calls": 0,
        "top_ups": NO_TOP_UPS,
        "liquidations": 1,
        "deficit_usdt": "250.15",
        "uncovered_usdt": "0",
        "insurance_fund_usdt": "249.85",
    }
    [covered] = recorded(market, InsuranceFund.DeficitCovered)
    assert covered.account_id == "u1:cross"
    assert covered.deficit_usdt == Decimal("250.15")
    assert covered.covered_usdt == Decimal("250.15")
    assert covered.uncovered_usdt == 0
    assert covered.balance_after_usdt == Decimal("249.85")
    [liquidated] = recorded(market, MarginAccount.Liquidated)
    assert (liquidated.remainder_usdt, liquidated.deficit_usdt) == (0, Decimal("250.15"))
    assert liquidated.decision["fee_usdt"] == "0"
    assert liquidated.decision["fund_balance_after_usdt"] == "249.85"
    assert liquidated.decision["uncovered_usdt"] == "0"
    funded = recorded(market, InsuranceFund.Funded)
    assert [(e.source, e.amount_usdt) for e in funded] == [("admin", Decimal(500))]  # no fee
    view = account_view(market, "u1:cross")
    assert (view.holdings, view.liabilities, view.interest) == ({}, {}, {})
    assert market.get_aggregate(InsuranceFund, InsuranceFund.create_id()).balance_usdt == Decimal(
        "249.85"
    )


def test_deficit_beyond_the_fund_is_recorded_as_uncovered_and_empties_the_fund(
    market: Ledger,
) -> None:
    """The same deficit of 250.15 against a fund of 100: 100 covered, 150.15 uncovered."""
    accepted(market, "fund_insurance", 1, amount_usdt="100")
    open_long(market, "u1", minute=2)
    mark(market, 30, ABC="0.5")

    outcome = sweep(market, 40)

    assert summary(outcome)["deficit_usdt"] == "250.15"
    assert summary(outcome)["uncovered_usdt"] == "150.15"
    assert summary(outcome)["insurance_fund_usdt"] == "0"
    [covered] = recorded(market, InsuranceFund.DeficitCovered)
    assert (covered.deficit_usdt, covered.covered_usdt) == (Decimal("250.15"), Decimal(100))
    assert (covered.uncovered_usdt, covered.balance_after_usdt) == (Decimal("150.15"), 0)
    [liquidated] = recorded(market, MarginAccount.Liquidated)
    assert liquidated.decision["uncovered_usdt"] == "150.15"
    assert liquidated.decision["fund_balance_after_usdt"] == "0"


def test_deficit_without_any_fund_is_wholly_uncovered(market: Ledger) -> None:
    open_long(market, "u1", minute=1)
    mark(market, 30, ABC="0.5")

    outcome = sweep(market, 40)

    assert summary(outcome)["uncovered_usdt"] == "250.15"
    assert summary(outcome)["insurance_fund_usdt"] == "0"
    [covered] = recorded(market, InsuranceFund.DeficitCovered)
    assert (covered.covered_usdt, covered.uncovered_usdt) == (0, Decimal("250.15"))


def test_an_isolated_liquidation_touches_no_other_account(market: Ledger) -> None:
    """u1 has a cross account (BTC, 300 USDT borrowed), an isolated BTCUSDT long and an isolated
    ABCUSDT long. ABC falls to 0.6543: ML 1,635.75 / 1,500.15 <= 1.1 liquidates the ABC pair
    only; the cross account (CML 1,300 / 300.03) and the BTC pair (ML 2,500 / 500.05) keep every
    quantity and record no event. Isolated accounts are not in the ABC pool."""
    accepted(market, "transfer_in", 1, user="u1", account="cross", asset="BTC", quantity="0.05")
    accepted(market, "borrow", 2, user="u1", account="cross", asset="USDT", quantity="300")
    btc_pair = {"user": "u1", "account": "isolated:BTCUSDT"}
    accepted(market, "transfer_in", 3, **btc_pair, asset="BTC", quantity="0.1")
    accepted(market, "borrow", 4, **btc_pair, asset="USDT", quantity="500")
    trade = {"sell_asset": "USDT", "buy_asset": "BTC", "fee_asset": "USDT", "fee_quantity": "0"}
    accepted(
        market, "settle_trade", 5, **btc_pair, **trade, sell_quantity="500", buy_quantity="0.025"
    )
    open_long(market, "u1", minute=6, account="isolated:ABCUSDT")
    untouched = {name: account_view(market, name) for name in ("u1:cross", "u1:isolated:BTCUSDT")}
    pool_before = market.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    mark(market, 30, ABC="0.6543")

    outcome = sweep(market, 40)

    assert outcome.context["accounts_scanned"] == 3
    assert outcome.context["liquidations"] == 1
    assert [a["account"] for a in outcome.context["accounts"]] == ["u1:isolated:ABCUSDT"]
    [liquidated] = recorded(market, MarginAccount.Liquidated)
    assert liquidated.originator_id == MarginAccount.create_id("u1", "isolated:ABCUSDT")
    assert liquidated.decision["level_kind"] == "margin_level"
    assert liquidated.decision["fee_usdt"] == LONG_AT_0_6543["fee"]
    assert liquidated.remainder_usdt == Decimal(LONG_AT_0_6543["remainder"])
    for name, before in untouched.items():
        after = account_view(market, name)
        assert (after.version, after.holdings, after.liabilities, after.interest) == (
            before.version,
            before.holdings,
            before.liabilities,
            before.interest,
        ), name
    assert account_view(market, "u1:isolated:ABCUSDT").holdings == {"USDT": "102.88"}
    pool = market.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    assert pool.platform_total == pool_before.platform_total == 0
    assert not recorded(market, AssetPool.TotalDecreased, AssetPool.TotalIncreased)
    totals = {v.asset: (v.total, v.isolated_total) for v in assets_view(market)}
    assert totals["ABC"] == ("0", "0")
    assert totals["USDT"] == ("300", "102.88")
    assert totals["BTC"] == ("0.05", "0.125")


def test_a_sweep_dated_before_a_held_pools_later_event_skips_the_account(
    market: Ledger,
) -> None:
    """DOMAIN.md §8: a decision may not be dated before the latest event of a pool it would
    change. The account is reported as skipped, naming effective_at, and is liquidated by a
    later sweep."""
    open_long(market, "u1", minute=1)
    mark(market, 30, ABC="0.6543")
    accepted(market, "transfer_in", 45, user="u9", account="cross", asset="ABC", quantity="10")

    early = sweep(market, 40)

    assert early.context["liquidations"] == 0
    [skipped] = early.context["skipped"]
    assert skipped["account"] == "u1:cross"
    assert "effective_at" in skipped["problem"]
    assert not recorded(market, MarginAccount.Liquidated)

    later = sweep(market, 50)

    assert later.context["liquidations"] == 1
    assert later.context["skipped"] == []


# --- margin calls and auto top-up --------------------------------------------------------------


def test_margin_call_is_not_repeated_within_24_hours_but_is_after(market: Ledger) -> None:
    """At ABC 0.75: CML 1,875 / 1,500.15 = 1.2499, in the zone (1.1, 1.3]. After a day of
    interest (24 x 0.15 = 3.60) it is 1,875 / 1,503.75 = 1.2469, still in the zone."""
    open_long(market, "u1", minute=1)
    mark(market, 30, ABC="0.75")

    first = sweep(market, 40)
    too_soon = sweep(market, 40 + 23 * 60 + 59)
    a_day_later = sweep(market, 40 + 24 * 60)

    assert [o.context["margin_calls"] for o in (first, too_soon, a_day_later)] == [1, 0, 1]
    assert too_soon.context["accounts"] == []
    calls = recorded(market, MarginAccount.MarginCalled)
    assert [e.request_id for e in calls] == [first.request_id, a_day_later.request_id]
    assert calls[0].decision["state"] == "margin_call"
    assert calls[0].decision["margin_call_level"] == "1.3"
    assert calls[0].decision["liquidation_level"] == "1.1"
    level = Decimal(calls[0].decision["collateral_margin_level_before"])
    assert level.quantize(Decimal("0.0001")) == Decimal("1.2499")
    assert not recorded(market, MarginAccount.Liquidated, MarginAccount.ToppedUp)
    assert account_view(market, "u1:cross").holdings == {"ABC": "2500"}


def test_pro_account_is_called_and_liquidated_at_its_own_levels(market: Ledger) -> None:
    """Pro: (collateral - debt) / maintenance margin (2.5% of the debt). 10,000 ABC in, 15,000
    USDT borrowed (+1.50 interest) for 15,000 ABC: 25,000 ABC against 15,001.50, maintenance
    375.0375. At 0.6185: (15,462.50 - 15,001.50) / 375.0375 = 1.2292, called (<= 1.25). At
    0.615: 373.50 / 375.0375 = 0.9959, liquidated (<= 1): proceeds 15,375, fee 307.50, 66 left."""
    accepted(market, "transfer_in", 1, user="p1", account="cross", asset="ABC", quantity="10000")
    accepted(market, "record_pro_quiz", 2, user="p1", passed=True)
    accepted(market, "agree_pro_terms", 2, user="p1")
    accepted(market, "set_pro_jurisdiction", 2, user="p1", supported=True)
    accepted(market, "switch_mode", 3, user="p1", to="pro")
    accepted(market, "borrow", 4, user="p1", account="cross", asset="USDT", quantity="15000")
    trade = {"sell_asset": "USDT", "buy_asset": "ABC", "fee_asset": "USDT", "fee_quantity": "0"}
    accepted(
        market,
        "settle_trade",
        5,
        user="p1",
        account="cross",
        **trade,
        sell_quantity="15000",
        buy_quantity="15000",
    )
    mark(market, 30, ABC="0.6185")

    called = sweep(market, 31)
    mark(market, 40, ABC="0.615")
    liquidated = sweep(market, 41)

    [call] = called.context["accounts"]
    assert (call["action"], call["level_kind"]) == ("margin_call", "pro_margin_level")
    assert (call["margin_call_level"], call["liquidation_level"]) == ("1.25", "1")
    assert Decimal(call["pro_margin_level_before"]).quantize(Decimal("0.0001")) == Decimal("1.2292")
    [done] = liquidated.context["accounts"]
    assert done["action"] == "liquidation"
    assert Decimal(done["pro_margin_level_before"]).quantize(Decimal("0.0001")) == Decimal("0.9959")
    assert (done["proceeds_usdt"], done["fee_usdt"], done["remainder_usdt"]) == (
        "15375",
        "307.5",
        "66",
    )
    assert account_view(market, "p1:cross").holdings == {"USDT": "66"}


def top_up_position(ledger: Ledger) -> None:
    """u1's long with auto top-up from ABC; ABC falls to 0.75 (margin call). Lifting CML above
    1.5 needs (2,500 + q) x 0.75 > 1.5 x 1,500.15 = 2,250.225: q > 500.30, so 500.31."""
    open_long(ledger, "u1", minute=1)
    accepted(ledger, "set_auto_top_up", 5, user="u1", account="cross", enabled=True, asset="ABC")
    mark(ledger, 30, ABC="0.75")


def test_auto_top_up_moves_the_least_quantity_that_lifts_the_level(market: Ledger) -> None:
    top_up_position(market)

    outcome = sweep(market, 40, spot={"u1:cross": {"ABC": "1000"}})

    assert outcome.context["margin_calls"] == 1
    assert outcome.context["top_ups"] == {"topped_up": 1, "limited": 0, "blocked": 0}
    top_up = outcome.context["accounts"][0]["top_up"]
    assert top_up["result"] == "topped_up"
    assert (top_up["quantity"], top_up["needed"], top_up["spot_available"]) == (
        "500.31",
        "500.31",
        "1000",
    )
    assert top_up["band"] == "A"
    [topped_up] = recorded(market, MarginAccount.ToppedUp)
    assert (topped_up.asset, topped_up.quantity) == ("ABC", Decimal("500.31"))
    assert (topped_up.holding_after, topped_up.is_limited) == (Decimal("3000.31"), False)
    [increased] = recorded(market, AssetPool.TotalIncreased)[-1:]
    assert (increased.movement, increased.quantity) == ("auto_top_up", Decimal("500.31"))
    assert increased.platform_total_after == Decimal("3000.31")
    view = account_view(market, "u1:cross")
    assert view.holdings == {"ABC": "3000.31"}
    assert Decimal(view.collateral_margin_level or "0") > Decimal("1.5")


def test_auto_top_up_is_limited_by_a_small_spot_wallet(market: Ledger) -> None:
    top_up_position(market)

    outcome = sweep(market, 40, spot={"u1:cross": {"ABC": "300"}})

    assert outcome.context["top_ups"] == {"topped_up": 0, "limited": 1, "blocked": 0}
    top_up = outcome.context["accounts"][0]["top_up"]
    assert (top_up["result"], top_up["quantity"], top_up["needed"]) == ("limited", "300", "300")
    [topped_up] = recorded(market, MarginAccount.ToppedUp)
    assert (topped_up.quantity, topped_up.is_limited) == (Decimal(300), True)
    assert account_view(market, "u1:cross").holdings == {"ABC": "2800"}
    pool = market.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    assert pool.platform_total == Decimal(2800)


@pytest.mark.parametrize(
    "spot",
    [None, {"u1:cross": {"ABC": "0"}}, {"u1:cross": {"BTC": "5"}}, {"u2:cross": {"ABC": "9"}}],
)
def test_auto_top_up_from_an_empty_spot_wallet_is_blocked(
    market: Ledger, spot: dict[str, dict[str, str]] | None
) -> None:
    top_up_position(market)

    outcome = sweep(market, 40, spot=spot)

    assert outcome.context["margin_calls"] == 1
    assert outcome.context["top_ups"] == {"topped_up": 0, "limited": 0, "blocked": 1}
    [blocked] = recorded(market, MarginAccount.TopUpBlocked)
    assert (blocked.asset, blocked.reason) == ("ABC", "spot_empty")
    assert not recorded(market, MarginAccount.ToppedUp, AssetPool.TransferInRefused)
    assert account_view(market, "u1:cross").holdings == {"ABC": "2500"}


@pytest.mark.parametrize(
    ("upper_limit", "band", "q_max"),
    [
        ("3000", "B", "200"),  # T 2,500 = 83% of U: F = 150 / 0.75 = 200 ABC, U - T = 500
        ("2600", "C", "100"),  # T = 96% of U: min(F 200, U - T 100)
    ],
    ids=["band-B-fixed-quota", "band-C-room-under-U"],
)
def test_auto_top_up_is_limited_by_the_cap(
    ledger: Ledger, upper_limit: str, band: str, q_max: str
) -> None:
    open_market(ledger, upper_limit=upper_limit, fixed_quota_usdt="150")
    top_up_position(ledger)

    outcome = sweep(ledger, 40, spot={"u1:cross": {"ABC": "1000"}})

    assert outcome.context["top_ups"] == {"topped_up": 0, "limited": 1, "blocked": 0}
    top_up = outcome.context["accounts"][0]["top_up"]
    assert (top_up["band"], top_up["q_max"], top_up["total"]) == (band, q_max, "2500")
    assert (top_up["needed"], top_up["quantity"]) == ("500.31", q_max)
    [topped_up] = recorded(ledger, MarginAccount.ToppedUp)
    assert (topped_up.quantity, topped_up.is_limited) == (Decimal(q_max), True)
    assert topped_up.decision["band"] == band
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    assert pool.platform_total == Decimal(2500) + Decimal(q_max) <= Decimal(upper_limit)
    assert account_view(ledger, "u1:cross").holdings == {"ABC": str(2500 + int(q_max))}


def test_auto_top_up_is_blocked_in_band_d(ledger: Ledger) -> None:
    """T = U = 2,500: q_max is 0; the block is recorded on the account and on the pool."""
    open_market(ledger, upper_limit="2500", fixed_quota_usdt="150")
    top_up_position(ledger)

    outcome = sweep(ledger, 40, spot={"u1:cross": {"ABC": "1000"}})

    assert outcome.context["margin_calls"] == 1
    assert outcome.context["top_ups"] == {"topped_up": 0, "limited": 0, "blocked": 1}
    top_up = outcome.context["accounts"][0]["top_up"]
    assert (top_up["result"], top_up["reason"], top_up["band"]) == (
        "blocked",
        "collateral_cap",
        "D",
    )
    [blocked] = recorded(ledger, MarginAccount.TopUpBlocked)
    assert (blocked.reason, blocked.decision["q_max"]) == ("collateral_cap", "0")
    [refused] = recorded(ledger, AssetPool.TransferInRefused)
    assert (refused.account_id, refused.quantity_requested) == ("u1:cross", Decimal("500.31"))
    assert refused.request_id == outcome.request_id
    assert not recorded(ledger, MarginAccount.ToppedUp)
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    assert pool.platform_total == Decimal(2500)


def test_isolated_auto_top_up_ignores_the_cap(ledger: Ledger) -> None:
    """ABC is in band D for cross accounts (T = U = 1,000), yet an isolated pair tops up in full:
    ML (2,500 + q) x 0.75 > 1.5 x 1,500.15 needs 500.31, and the pool does not move."""
    open_market(ledger, upper_limit="1000")
    accepted(ledger, "transfer_in", 1, user="u2", account="cross", asset="ABC", quantity="800")
    accepted(ledger, "transfer_in", 2, user="u2", account="cross", asset="USDT", quantity="200")
    trade = {"sell_asset": "USDT", "buy_asset": "ABC", "fee_asset": "USDT", "fee_quantity": "0"}
    accepted(
        ledger,
        "settle_trade",
        3,
        user="u2",
        account="cross",
        **trade,
        sell_quantity="200",
        buy_quantity="200",
    )
    pair = {"user": "u1", "account": "isolated:ABCUSDT"}
    open_long(ledger, "u1", minute=4, account=pair["account"])
    accepted(ledger, "set_auto_top_up", 8, **pair, enabled=True, asset="ABC")
    mark(ledger, 30, ABC="0.75")

    outcome = sweep(ledger, 40, spot={"u1:isolated:ABCUSDT": {"ABC": "1000"}})

    assert outcome.context["top_ups"] == {"topped_up": 1, "limited": 0, "blocked": 0}
    [topped_up] = recorded(ledger, MarginAccount.ToppedUp)
    assert (topped_up.quantity, topped_up.is_limited) == (Decimal("500.31"), False)
    assert "band" not in topped_up.decision
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    assert pool.platform_total == Decimal(1000)
    assert account_view(ledger, "u1:isolated:ABCUSDT").holdings == {"ABC": "3000.31"}


def test_set_auto_top_up_outside_the_pair_is_invalid_and_records_nothing(market: Ledger) -> None:
    open_long(market, "u1", minute=1, account="isolated:ABCUSDT")
    before = event_count(market)

    with pytest.raises(CommandInvalid) as raised:
        run(
            market,
            command(
                "set_auto_top_up",
                effective_at=at(5),
                user="u1",
                account="isolated:ABCUSDT",
                enabled=True,
                asset="BTC",
            ),
        )

    assert [e.field for e in raised.value.errors] == ["asset"]
    assert event_count(market) == before


def test_auto_top_up_switched_off_is_not_attempted(market: Ledger) -> None:
    top_up_position(market)
    accepted(market, "set_auto_top_up", 6, user="u1", account="cross", enabled=False)

    outcome = sweep(market, 40, spot={"u1:cross": {"ABC": "1000"}})

    assert outcome.context["margin_calls"] == 1
    assert outcome.context["top_ups"] == NO_TOP_UPS
    assert "top_up" not in outcome.context["accounts"][0]
    assert not recorded(market, MarginAccount.ToppedUp, MarginAccount.TopUpBlocked)


def test_a_top_up_never_moves_more_decimals_than_the_asset_has(market: Ledger) -> None:
    """Either the over-precise wallet is refused (invalid or skipped) or the quantity is
    rounded down to ABC's 2 decimals (300.12); never a holding with 3 decimals."""
    top_up_position(market)

    with contextlib.suppress(CommandInvalid):
        sweep(market, 40, spot={"u1:cross": {"ABC": "300.123"}})

    for topped_up in recorded(market, MarginAccount.ToppedUp):
        assert decimal_places(topped_up.quantity) <= 2, topped_up.quantity
    for quantity in account_view(market, "u1:cross").holdings.values():
        assert decimal_places(Decimal(quantity)) <= 2, quantity


def test_a_top_up_pool_with_a_later_event_skips_the_account_instead_of_crashing(
    market: Ledger,
) -> None:
    """u1 holds ABC and tops up from XYZ (capped, not held). XYZ is marked at 09:45; a sweep
    dated 09:40 may not change XYZ's pool: like a held pool, the account must be skipped."""
    assert run(market, command("list_asset", asset="XYZ", collateral_rank=9)).is_accepted
    cap = command("set_collateral_cap", asset="XYZ", upper_limit="100000")
    assert run(market, cap).is_accepted
    mark(market, 0, XYZ="1")
    open_long(market, "u1", minute=1)
    accepted(market, "set_auto_top_up", 5, user="u1", account="cross", enabled=True, asset="XYZ")
    mark(market, 30, ABC="0.75")
    mark(market, 45, XYZ="2")

    outcome = sweep(market, 40, spot={"u1:cross": {"XYZ": "1000"}})

    [skipped] = outcome.context["skipped"]
    assert skipped["account"] == "u1:cross"
    assert "effective_at" in skipped["problem"]
    assert not recorded(market, MarginAccount.ToppedUp)


# --- the platform after a cascade ----------------------------------------------------------------


def open_cascade_accounts(ledger: Ledger) -> None:
    """Five accounts, then two sweeps (`first_cascade_sweep`, `second_cascade_sweep`).

    - fund: 100 USDT from an administrator.
    - u1 cross, u3 portfolio, u4 isolated ABCUSDT: 1,000 ABC + 1,500 borrowed (debt 1,500.15).
    - u2 cross: 1,000 ABC + 1,000 borrowed (debt 1,000.10), auto top-up from ABC, spot 200.
    - u5 cross: 0.05 BTC and 100 ABC, 300 USDT borrowed (debt 300.03): always healthy.
    Sweep 1 at ABC 0.65: u1, u3, u4 liquidated (1,625 - 1,500.15 = 124.85; fee 32.50, remainder
    92.35 each); u2 at 1,300 / 1,000.10 = 1.2999 is called and tops up all 200 (limited).
    Sweep 2 at ABC 0.2: u2 (2,200 ABC = 440) liquidated with a deficit of 560.10; the fund's
    100 + 3 x 32.50 = 197.50 covers part, 362.60 uncovered.
    """
    accepted(ledger, "fund_insurance", 1, amount_usdt="100")
    open_long(ledger, "u1", minute=2)
    open_long(ledger, "u2", minute=5, borrowed="1000")
    accepted(ledger, "set_auto_top_up", 8, user="u2", account="cross", enabled=True, asset="ABC")
    open_long(ledger, "u3", minute=9, account="portfolio")
    open_long(ledger, "u4", minute=12, account="isolated:ABCUSDT")
    accepted(ledger, "transfer_in", 15, user="u5", account="cross", asset="BTC", quantity="0.05")
    accepted(ledger, "transfer_in", 16, user="u5", account="cross", asset="ABC", quantity="100")
    accepted(ledger, "borrow", 17, user="u5", account="cross", asset="USDT", quantity="300")


def first_cascade_sweep(ledger: Ledger) -> Outcome:
    mark(ledger, 30, ABC="0.65")
    return sweep(ledger, 31, spot={"u2:cross": {"ABC": "200"}})


def second_cascade_sweep(ledger: Ledger) -> Outcome:
    mark(ledger, 50, ABC="0.2")
    return sweep(ledger, 51)


def cascade(ledger: Ledger) -> tuple[Outcome, Outcome]:
    open_cascade_accounts(ledger)
    return first_cascade_sweep(ledger), second_cascade_sweep(ledger)


ACCOUNTS = ["u1:cross", "u2:cross", "u3:portfolio", "u4:isolated:ABCUSDT", "u5:cross"]


def test_cascade_summaries_are_hand_computed(market: Ledger) -> None:
    first, second = cascade(market)

    assert summary(first) == {
        "accounts_scanned": 5,
        "margin_calls": 1,
        "top_ups": {"topped_up": 0, "limited": 1, "blocked": 0},
        "liquidations": 3,
        "deficit_usdt": "0",
        "uncovered_usdt": "0",
        "insurance_fund_usdt": "197.5",
    }
    assert [(a["account"], a["action"]) for a in first.context["accounts"]] == [
        ("u1:cross", "liquidation"),
        ("u2:cross", "margin_call"),
        ("u3:portfolio", "liquidation"),
        ("u4:isolated:ABCUSDT", "liquidation"),
    ]
    assert summary(second) == {
        "accounts_scanned": 2,  # the accounts still in debt: the liquidated three owe nothing
        "margin_calls": 0,
        "top_ups": NO_TOP_UPS,
        "liquidations": 1,
        "deficit_usdt": "560.1",
        "uncovered_usdt": "362.6",
        "insurance_fund_usdt": "0",
    }
    holdings = {name: account_view(market, name).holdings for name in ACCOUNTS}
    assert holdings == {
        "u1:cross": {"USDT": "92.35"},
        "u2:cross": {},
        "u3:portfolio": {"USDT": "92.35"},
        "u4:isolated:ABCUSDT": {"USDT": "92.35"},
        "u5:cross": {"ABC": "100", "BTC": "0.05", "USDT": "300"},
    }


def test_platform_totals_equal_the_sum_of_account_holdings_after_liquidations_and_top_ups(
    market: Ledger,
) -> None:
    def expected_totals() -> dict[str, tuple[Decimal, Decimal]]:
        sums: dict[str, list[Decimal]] = {}
        for name in ACCOUNTS:
            view = account_view(market, name)
            for asset, quantity in view.holdings.items():
                row = sums.setdefault(asset, [Decimal(0), Decimal(0)])
                row[1 if view.kind == "isolated" else 0] += Decimal(quantity)
        return {asset: (row[0], row[1]) for asset, row in sums.items()}

    def platform_totals() -> dict[str, tuple[Decimal, Decimal]]:
        views = assets_view(market)
        totals = {v.asset: (Decimal(v.total), Decimal(v.isolated_total)) for v in views}
        return {a: t for a, t in totals.items() if t != (0, 0)}

    open_cascade_accounts(market)
    first_cascade_sweep(market)

    # After sweep 1: ABC 2,200 (u2) + 100 (u5) in cross; USDT remainders and u5's 300.
    assert (
        platform_totals()
        == expected_totals()
        == {
            "ABC": (Decimal(2300), Decimal(0)),
            "BTC": (Decimal("0.05"), Decimal(0)),
            "USDT": (Decimal("484.70"), Decimal("92.35")),
        }
    )
    pool = market.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    assert pool.platform_total == Decimal(2300)

    second_cascade_sweep(market)

    assert platform_totals() == expected_totals()
    assert expected_totals()["ABC"] == (Decimal(100), Decimal(0))
    pool = market.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    assert pool.platform_total == Decimal(100)
    movements = [
        (e.movement, e.account_id, e.quantity)
        for e in recorded(market, AssetPool.TotalIncreased, AssetPool.TotalDecreased)
        if e.movement in ("liquidation", "auto_top_up")
    ]
    assert movements == [
        ("liquidation", "u1:cross", Decimal(2500)),
        ("auto_top_up", "u2:cross", Decimal(200)),
        ("liquidation", "u3:portfolio", Decimal(2500)),
        ("liquidation", "u2:cross", Decimal(2200)),
    ]


def test_insurance_fund_balance_equals_the_sum_of_its_recorded_flows(market: Ledger) -> None:
    cascade(market)

    flows = recorded(market, InsuranceFund.Funded, InsuranceFund.DeficitCovered)
    funded = [e for e in flows if isinstance(e, InsuranceFund.Funded)]
    covered = [e for e in flows if isinstance(e, InsuranceFund.DeficitCovered)]
    assert [(e.source, e.account_id, e.amount_usdt) for e in funded] == [
        ("admin", None, Decimal(100)),
        ("liquidation_fee", "u1:cross", Decimal("32.5")),
        ("liquidation_fee", "u3:portfolio", Decimal("32.5")),
        ("liquidation_fee", "u4:isolated:ABCUSDT", Decimal("32.5")),
    ]
    assert [(e.account_id, e.covered_usdt, e.uncovered_usdt) for e in covered] == [
        ("u2:cross", Decimal("197.5"), Decimal("362.6"))
    ]
    paid_in = sum((e.amount_usdt for e in funded), Decimal(0))
    paid_out = sum((e.covered_usdt for e in covered), Decimal(0))
    fund = market.get_aggregate(InsuranceFund, InsuranceFund.create_id())
    assert fund.balance_usdt == paid_in - paid_out == 0
    # Each flow's balance_after is the running sum of the flows up to it, in log order.
    running = Decimal(0)
    for event in flows:
        is_funded = isinstance(event, InsuranceFund.Funded)
        running += event.amount_usdt if is_funded else -event.covered_usdt
        assert event.balance_after_usdt == running, event


# --- idempotency ------------------------------------------------------------------------------


def test_rerunning_a_sweep_is_a_duplicate_and_a_new_sweep_does_nothing_more(
    market: Ledger,
) -> None:
    """u1 is liquidated; u2 (1,000 ABC + 1,100 borrowed, debt 1,100.11) is called at
    2,100 x 0.6543 / 1,100.11 = 1.249 and tops up all of its 10 ABC (still in the zone)."""
    open_long(market, "u1", minute=1)
    open_long(market, "u2", minute=4, borrowed="1100")
    accepted(market, "set_auto_top_up", 8, user="u2", account="cross", enabled=True, asset="ABC")
    mark(market, 30, ABC="0.6543")
    spot = {"u2:cross": {"ABC": "10"}}
    first = sweep(market, 40, spot=spot, request_id="sweep-1")
    assert (first.context["liquidations"], first.context["margin_calls"]) == (1, 1)
    assert first.context["top_ups"] == {"topped_up": 0, "limited": 1, "blocked": 0}
    after_first = event_count(market)

    again = sweep(market, 40, spot=spot, request_id="sweep-1")

    assert again.duplicate
    assert again.context == first.context
    assert again.events == first.events
    assert event_count(market) == after_first
    with pytest.raises(CommandInvalid) as raised:
        sweep(market, 40, spot={"u2:cross": {"ABC": "11"}}, request_id="sweep-1")
    assert [e.field for e in raised.value.errors] == ["request_id"]
    assert event_count(market) == after_first

    later = sweep(market, 41, spot=spot, request_id="sweep-2")

    assert not later.duplicate
    assert summary(later) == {
        "accounts_scanned": 1,  # the liquidated account owes nothing: no longer a candidate
        "margin_calls": 0,
        "top_ups": NO_TOP_UPS,
        "liquidations": 0,
        "deficit_usdt": "0",
        "uncovered_usdt": "0",
        "insurance_fund_usdt": "32.72",
    }
    assert later.context["accounts"] == []
    assert event_count(market) == after_first + 1  # the new request's own record only
    assert account_view(market, "u2:cross").holdings == {"ABC": "2110"}


def test_a_top_up_asset_without_a_price_blocks_the_top_up_not_the_margin_call(
    market: Ledger,
) -> None:
    """The margin call is recorded; the top-up cannot be sized without a price and says so."""
    accepted(market, "list_asset", 0.5, asset="NOPX", collateral_rank=2, quantity_decimals=2)
    open_long(market, "u1", minute=1)
    accepted(market, "set_auto_top_up", 5, user="u1", account="cross", enabled=True, asset="NOPX")
    mark(market, 30, ABC="0.75")

    outcome = sweep(market, 40, spot={"u1:cross": {"NOPX": "1000"}})

    assert (outcome.context["margin_calls"], outcome.context["skipped"]) == (1, [])
    assert outcome.context["top_ups"] == {"topped_up": 0, "limited": 0, "blocked": 1}
    [blocked] = recorded(market, MarginAccount.TopUpBlocked)
    assert (blocked.asset, blocked.reason) == ("NOPX", "no_price")
    assert len(recorded(market, MarginAccount.MarginCalled)) == 1


def test_a_later_insurance_fund_event_only_holds_back_liquidations(market: Ledger) -> None:
    """Only a liquidation changes the fund: a sweep dated before the fund's latest event still
    calls margins, and skips (naming effective_at) only the account it would liquidate."""
    open_long(market, "called", minute=1, collateral="2000")
    open_long(market, "broke", minute=4, collateral="800")
    # At 0.5: called 3,500 x 0.5 / 1,500.15 = 1.17 (margin call); broke 2,300 x 0.5 / 1,500.15
    # = 0.77 (liquidation).
    mark(market, 30, ABC="0.5")
    accepted(market, "fund_insurance", 50, amount_usdt="100")

    outcome = sweep(market, 40)

    accounts = {entry["account"]: entry["action"] for entry in outcome.context["accounts"]}
    skipped = {entry["account"]: entry["problem"] for entry in outcome.context["skipped"]}
    assert accounts == {"called:cross": "margin_call"}
    assert list(skipped) == ["broke:cross"]
    assert skipped["broke:cross"].startswith("effective_at:")
    assert not recorded(market, MarginAccount.Liquidated)
