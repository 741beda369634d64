"""Settling a trade (DOMAIN.md §5): sell, buy, fee, auto-borrow of the shortfall, auto-repay."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.params import FULL_VALUE_LADDER, BorrowTerms, CollateralBracket, MaintenanceBracket
from ledger.rules.trade import TradeDecision, TradeLeg, TradeVerdict, decide_trade
from ledger.rules.valuation import LevelKind, Market, Position

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TERMS = BorrowTerms(
    hourly_interest_rate=Decimal("0.0001"), min_borrow_usdt=Decimal(10), borrowable=True
)
PRICES = {"USDT": Decimal(1), "BTC": Decimal(20000), "BNB": Decimal(500), "ABC": Decimal(2)}
HALF_VALUE_LADDER = (CollateralBracket(up_to_usdt=None, ratio=Decimal("0.5")),)
MAINTENANCE = (MaintenanceBracket(up_to_usdt=None, rate=Decimal("0.025")),)


def quantities(text: str) -> dict[str, Decimal]:
    """ "USDT=10 BTC=1" -> {"USDT": Decimal("10"), "BTC": Decimal("1")}."""
    pairs = (item.split("=") for item in text.split())
    return {asset: Decimal(quantity) for asset, quantity in pairs}


def position(holdings: str = "", liabilities: str = "", interest: str = "") -> Position:
    return Position(
        holdings=quantities(holdings),
        liabilities=quantities(liabilities),
        interest=quantities(interest),
    )


def market(**ladders: tuple[CollateralBracket, ...]) -> Market:
    return Market(
        prices_usdt=PRICES,
        ladders={asset: ladders.get(asset, FULL_VALUE_LADDER) for asset in PRICES},
        maintenance_brackets={asset: MAINTENANCE for asset in PRICES},
    )


def leg(trade: str) -> TradeLeg:
    """ "sell USDT 30 buy BTC 0.0015 fee BTC 0" -> the TradeLeg."""
    words = trade.split()
    assert words[0::3] == ["sell", "buy", "fee"], trade
    return TradeLeg(
        sell_asset=words[1],
        sell_quantity=Decimal(words[2]),
        buy_asset=words[4],
        buy_quantity=Decimal(words[5]),
        fee_asset=words[7],
        fee_quantity=Decimal(words[8]),
    )


def decide(
    trade: str,
    held: Position,
    *,
    auto_borrow: bool = False,
    auto_repay: bool = False,
    borrow_terms: BorrowTerms | None = TERMS,
    is_borrowing_enabled: bool = True,
    cooling_off_until: datetime | None = None,
    first_hour_interest: str = "0",
    prices: Market | None = None,
    level_kind: LevelKind = LevelKind.COLLATERAL_MARGIN_LEVEL,
    level_min: str = "1.5",
) -> TradeDecision:
    return decide_trade(
        leg=leg(trade),
        position=held,
        auto_borrow=auto_borrow,
        auto_repay=auto_repay,
        borrow_terms=borrow_terms,
        is_borrowing_enabled=is_borrowing_enabled,
        cooling_off_until=cooling_off_until,
        at=AT,
        first_hour_interest_on_shortfall=Decimal(first_hour_interest),
        market=prices or market(),
        level_kind=level_kind,
        level_min=Decimal(level_min),
    )


@pytest.mark.parametrize(
    ("holdings", "trade", "verdict", "changes"),
    [
        (
            "USDT=100",
            "sell USDT 50 buy BTC 0.0025 fee BTC 0",
            TradeVerdict.ACCEPTED,
            "USDT=-50 BTC=0.0025",
        ),
        (
            "BTC=1",
            "sell BTC 0.5 buy USDT 10000 fee USDT 0",
            TradeVerdict.ACCEPTED,
            "BTC=-0.5 USDT=10000",
        ),
        (
            "BTC=0.5",
            "sell BTC 0.5 buy USDT 10000 fee USDT 0",
            TradeVerdict.ACCEPTED,
            "BTC=-0.5 USDT=10000",
        ),
        (
            "BTC=0.49999999",
            "sell BTC 0.5 buy USDT 10000 fee USDT 0",
            TradeVerdict.INSUFFICIENT_BALANCE,
            "BTC=-0.5 USDT=10000",
        ),
        ("", "sell BTC 0.5 buy USDT 10000 fee USDT 0", TradeVerdict.INSUFFICIENT_BALANCE, ""),
        (
            "USDT=10",
            "sell USDT 30 buy BTC 0.0015 fee BTC 0",
            TradeVerdict.INSUFFICIENT_BALANCE,
            "USDT=-30 BTC=0.0015",
        ),
    ],
    ids=[
        "plain-buy",
        "plain-sell",
        "sell-the-whole-holding",
        "one-unit-short",
        "sell-what-is-not-held",
        "shortfall-20-without-auto-borrow",
    ],
)
def test_without_auto_borrow_only_the_holding_can_be_sold(
    holdings: str, trade: str, verdict: TradeVerdict, changes: str
) -> None:
    decision = decide(trade, position(holdings))
    assert decision.verdict is verdict
    assert decision.is_accepted is (verdict is TradeVerdict.ACCEPTED)
    assert decision.borrow_quantity == decision.first_hour_interest == 0
    assert decision.valuation_after is None  # no borrow: no level to check
    if verdict is TradeVerdict.ACCEPTED:
        assert decision.holding_changes == quantities(changes)


def test_the_domain_example_auto_borrows_exactly_the_shortfall() -> None:
    """DOMAIN.md §5: 10 held, an order of 30 -> borrow 20, one hour of interest at the borrow."""
    decision = decide(
        "sell USDT 30 buy BTC 0.003 fee BTC 0",
        position("USDT=10"),
        auto_borrow=True,
        first_hour_interest="0.002",
    )
    assert decision.verdict is TradeVerdict.ACCEPTED
    assert decision.borrow_quantity == Decimal(20)
    assert decision.first_hour_interest == Decimal("0.002")
    # The holding of USDT ends at 0: 10 held + 20 borrowed - 30 sold.
    assert decision.holding_changes == {"USDT": Decimal(-10), "BTC": Decimal("0.003")}
    assert decision.valuation_after is not None
    assert decision.valuation_after.debt_usdt == Decimal("20.002")
    assert decision.valuation_after.collateral_value_usdt == Decimal(60)
    context = decision.context()
    assert (context["auto_borrowed"], context["first_hour_interest"]) == ("20", "0.002")
    # CML after = 60 / 20.002, the bought BTC at 20,000 against the borrowed USDT and its interest.
    assert context["collateral_margin_level_after"].startswith("2.99970002999700029997")


@pytest.mark.parametrize(
    ("holdings", "trade", "borrowed"),
    [
        ("USDT=30", "sell USDT 30 buy BTC 0.0015 fee BTC 0", "0"),
        ("USDT=100", "sell USDT 30 buy BTC 0.0015 fee BTC 0", "0"),
        ("", "sell USDT 30 buy BTC 0.003 fee BTC 0", "30"),
        ("USDT=29.99999999", "sell USDT 30 buy BTC 0.003 fee BTC 0", "0.00000001"),
    ],
    ids=["exactly-held", "more-than-enough", "nothing-held", "one-unit-short"],
)
def test_auto_borrow_takes_the_shortfall_and_nothing_more(
    holdings: str, trade: str, borrowed: str
) -> None:
    decision = decide(trade, position(holdings), auto_borrow=True)
    assert decision.verdict is TradeVerdict.ACCEPTED
    assert decision.borrow_quantity == Decimal(borrowed)
    assert (decision.valuation_after is None) is (borrowed == "0")


def test_auto_borrow_has_no_minimum_borrow() -> None:
    """A shortfall of one unit is worth far less than the 10 USDT minimum: it is borrowed."""
    terms = TERMS.model_copy(update={"min_borrow_usdt": Decimal(1000)})
    decision = decide(
        "sell USDT 30 buy BTC 0.003 fee BTC 0",
        position("USDT=29.99999999"),
        auto_borrow=True,
        borrow_terms=terms,
    )
    assert (decision.verdict, decision.borrow_quantity) == (
        TradeVerdict.ACCEPTED,
        Decimal("0.00000001"),
    )


@pytest.mark.parametrize(
    ("borrow_terms", "is_borrowing_enabled", "cooling_off_until", "verdict"),
    [
        (None, True, None, TradeVerdict.ASSET_NOT_BORROWABLE),
        (
            TERMS.model_copy(update={"borrowable": False}),
            True,
            None,
            TradeVerdict.ASSET_NOT_BORROWABLE,
        ),
        (TERMS, False, None, TradeVerdict.BORROW_DISABLED),
        (TERMS, True, AT + timedelta(microseconds=1), TradeVerdict.COOLING_OFF),
        (TERMS, True, AT, TradeVerdict.ACCEPTED),
        (TERMS, True, AT - timedelta(days=1), TradeVerdict.ACCEPTED),
        (None, False, AT + timedelta(days=3), TradeVerdict.ASSET_NOT_BORROWABLE),
        (TERMS, False, AT + timedelta(days=3), TradeVerdict.BORROW_DISABLED),
    ],
    ids=[
        "no-borrow-terms",
        "not-borrowable",
        "borrowing-disabled-by-admin",
        "cooling-off-until-just-after",
        "cooling-off-ends-exactly-now",
        "cooling-off-over",
        "asset-checked-before-switch-and-cooling-off",
        "switch-checked-before-cooling-off",
    ],
)
def test_an_auto_borrow_follows_the_borrow_rules(
    borrow_terms: BorrowTerms | None,
    is_borrowing_enabled: bool,
    cooling_off_until: datetime | None,
    verdict: TradeVerdict,
) -> None:
    decision = decide(
        "sell USDT 30 buy BTC 0.003 fee BTC 0",
        position("USDT=10"),
        auto_borrow=True,
        borrow_terms=borrow_terms,
        is_borrowing_enabled=is_borrowing_enabled,
        cooling_off_until=cooling_off_until,
    )
    assert decision.verdict is verdict


@pytest.mark.parametrize(
    ("borrow_terms", "is_borrowing_enabled", "cooling_off_until"),
    [
        (None, True, None),
        (TERMS, False, None),
        (TERMS, True, AT + timedelta(days=7)),
    ],
    ids=["not-borrowable", "borrowing-disabled", "cooling-off"],
)
def test_borrow_rules_do_not_apply_when_nothing_is_borrowed(
    borrow_terms: BorrowTerms | None, is_borrowing_enabled: bool, cooling_off_until: datetime | None
) -> None:
    decision = decide(
        "sell USDT 30 buy BTC 0.0015 fee BTC 0",
        position("USDT=30"),
        auto_borrow=True,
        borrow_terms=borrow_terms,
        is_borrowing_enabled=is_borrowing_enabled,
        cooling_off_until=cooling_off_until,
    )
    assert (decision.verdict, decision.borrow_quantity) == (TradeVerdict.ACCEPTED, 0)


@pytest.mark.parametrize(
    ("holdings", "trade", "verdict", "changes"),
    [
        (
            "USDT=100",
            "sell USDT 99 buy BTC 0.00495 fee USDT 1",
            TradeVerdict.ACCEPTED,
            "USDT=-100 BTC=0.00495",
        ),
        (
            "USDT=100",
            "sell USDT 99.5 buy BTC 0.004975 fee USDT 0.50000001",
            TradeVerdict.INSUFFICIENT_BALANCE,
            "",
        ),
        (
            "BTC=1",
            "sell BTC 0.1 buy USDT 2000 fee USDT 2",
            TradeVerdict.ACCEPTED,
            "BTC=-0.1 USDT=1998",
        ),
        (
            "BTC=1",
            "sell BTC 0.0001 buy USDT 2 fee USDT 2",
            TradeVerdict.ACCEPTED,
            "BTC=-0.0001",
        ),
        (
            "BTC=1",
            "sell BTC 0.0001 buy USDT 2 fee USDT 2.00000001",
            TradeVerdict.INSUFFICIENT_BALANCE,
            "",
        ),
        (
            "BTC=1 USDT=5",
            "sell BTC 0.0001 buy USDT 2 fee USDT 7",
            TradeVerdict.ACCEPTED,
            "BTC=-0.0001 USDT=-5",
        ),
        (
            "USDT=100 BNB=0.1",
            "sell USDT 100 buy BTC 0.005 fee BNB 0.1",
            TradeVerdict.ACCEPTED,
            "USDT=-100 BTC=0.005 BNB=-0.1",
        ),
        (
            "USDT=100 BNB=0.09999999",
            "sell USDT 100 buy BTC 0.005 fee BNB 0.1",
            TradeVerdict.INSUFFICIENT_BALANCE,
            "",
        ),
        (
            "USDT=100",
            "sell USDT 100 buy BTC 0.005 fee BNB 0.1",
            TradeVerdict.INSUFFICIENT_BALANCE,
            "",
        ),
        (
            "USDT=100",
            "sell USDT 100 buy BTC 0.005 fee BNB 0",
            TradeVerdict.ACCEPTED,
            "USDT=-100 BTC=0.005",
        ),
    ],
    ids=[
        "fee-in-sold-asset-paid-from-the-rest",
        "fee-in-sold-asset-one-unit-too-many",
        "fee-in-bought-asset-from-the-proceeds",
        "fee-in-bought-asset-eats-all-proceeds",
        "fee-in-bought-asset-above-proceeds-nothing-held",
        "fee-in-bought-asset-above-proceeds-paid-from-holding",
        "fee-in-third-asset-held",
        "fee-in-third-asset-one-unit-short",
        "fee-in-third-asset-not-held",
        "zero-fee-in-unheld-third-asset",
    ],
)
def test_the_fee_must_be_payable_from_the_holdings_after_the_trade(
    holdings: str, trade: str, verdict: TradeVerdict, changes: str
) -> None:
    decision = decide(trade, position(holdings))
    assert decision.verdict is verdict
    if verdict is TradeVerdict.ACCEPTED:
        assert decision.holding_changes == quantities(changes)


def test_auto_borrow_covers_the_order_not_a_fee_in_the_sold_asset() -> None:
    """Interpretation: the shortfall is the order's (sell quantity minus holding); a fee in the
    sold asset on top of it is not borrowed, so it is unpayable after the trade."""
    decision = decide(
        "sell USDT 30 buy BTC 0.003 fee USDT 0.03",
        position("USDT=10"),
        auto_borrow=True,
    )
    assert decision.borrow_quantity == Decimal(20)
    assert decision.verdict is TradeVerdict.INSUFFICIENT_BALANCE


@pytest.mark.parametrize(
    ("holdings", "debt", "trade", "repaid_interest", "repaid_principal", "changes"),
    [
        (
            "BTC=1",
            "USDT=50 interest:USDT=0.5",
            "sell BTC 0.001 buy USDT 20 fee USDT 0",
            "0.5",
            "19.5",
            "BTC=-0.001",
        ),
        (
            "BTC=1",
            "USDT=50 interest:USDT=0.5",
            "sell BTC 0.005 buy USDT 100 fee USDT 0",
            "0.5",
            "50",
            "BTC=-0.005 USDT=49.5",
        ),
        (
            "BTC=1",
            "USDT=50 interest:USDT=0.5",
            "sell BTC 0.00001 buy USDT 0.2 fee USDT 0",
            "0.2",
            "0",
            "BTC=-0.00001",
        ),
        (
            "BTC=1",
            "USDT=50 interest:USDT=0.5",
            "sell BTC 0.001 buy USDT 20 fee USDT 1",
            "0.5",
            "18.5",
            "BTC=-0.001",
        ),
        (
            "BTC=1",
            "USDT=50 interest:USDT=0.5",
            "sell BTC 0.001 buy USDT 20 fee BTC 0.00001",
            "0.5",
            "19.5",
            "BTC=-0.00101",
        ),
        (
            "BTC=1 USDT=1000",
            "USDT=50 interest:USDT=0.5",
            "sell BTC 0.001 buy USDT 20 fee USDT 0",
            "0.5",
            "19.5",
            "BTC=-0.001",
        ),
        (
            "BTC=1",
            "USDT=50",
            "sell BTC 0.001 buy USDT 20 fee USDT 0",
            "0",
            "20",
            "BTC=-0.001",
        ),
        (
            "BTC=1",
            "interest:USDT=0.5",
            "sell BTC 0.001 buy USDT 20 fee USDT 0",
            "0.5",
            "0",
            "BTC=-0.001 USDT=19.5",
        ),
        (
            "BTC=1",
            "",
            "sell BTC 0.001 buy USDT 20 fee USDT 0",
            "0",
            "0",
            "BTC=-0.001 USDT=20",
        ),
        (
            "BTC=1",
            "ABC=50 interest:ABC=1",
            "sell BTC 0.001 buy USDT 20 fee USDT 0",
            "0",
            "0",
            "BTC=-0.001 USDT=20",
        ),
        (
            "BTC=1 USDT=5",
            "USDT=50 interest:USDT=0.5",
            "sell BTC 0.0001 buy USDT 2 fee USDT 3",
            "0",
            "0",
            "BTC=-0.0001 USDT=-1",
        ),
    ],
    ids=[
        "interest-first-then-principal",
        "capped-at-the-debt-rest-kept",
        "proceeds-below-the-interest",
        "fee-in-bought-asset-paid-first",
        "fee-in-sold-asset-leaves-proceeds-whole",
        "existing-holding-not-used",
        "principal-only",
        "interest-only",
        "no-debt-nothing-repaid",
        "debt-in-another-asset-untouched",
        "fee-above-proceeds-nothing-to-repay",
    ],
)
def test_auto_repay_pays_interest_then_principal_from_the_proceeds(
    holdings: str,
    debt: str,
    trade: str,
    repaid_interest: str,
    repaid_principal: str,
    changes: str,
) -> None:
    owed = debt.split()
    held = position(
        holdings,
        " ".join(d for d in owed if not d.startswith("interest:")),
        " ".join(d.removeprefix("interest:") for d in owed if d.startswith("interest:")),
    )
    decision = decide(trade, held, auto_repay=True)
    assert decision.verdict is TradeVerdict.ACCEPTED
    assert decision.repay_interest == Decimal(repaid_interest)
    assert decision.repay_principal == Decimal(repaid_principal)
    assert decision.holding_changes == quantities(changes)
    context = decision.context()
    assert (context["auto_repaid_interest"], context["auto_repaid_principal"]) == (
        repaid_interest,
        repaid_principal,
    )


def test_without_auto_repay_the_proceeds_stay_and_the_debt_too() -> None:
    decision = decide(
        "sell BTC 0.001 buy USDT 20 fee USDT 0",
        position("BTC=1", "USDT=50", "USDT=0.5"),
        auto_repay=False,
    )
    assert decision.repay_interest == decision.repay_principal == 0
    assert decision.holding_changes == {"BTC": Decimal("-0.001"), "USDT": Decimal(20)}


def test_auto_borrow_and_auto_repay_in_one_trade() -> None:
    """Sell USDT (10 held, 30 sold: borrow 20) to buy back BTC owed: the BTC proceeds repay the
    BTC interest and then principal; the new USDT loan is not touched."""
    decision = decide(
        "sell USDT 30 buy BTC 0.0015 fee BTC 0.0000015",
        position("USDT=10 ABC=1000", "BTC=0.001", "BTC=0.0000001"),
        auto_borrow=True,
        auto_repay=True,
        first_hour_interest="0.002",
    )
    assert decision.verdict is TradeVerdict.ACCEPTED
    assert decision.borrow_quantity == Decimal(20)
    assert decision.repay_interest == Decimal("0.0000001")
    assert decision.repay_principal == Decimal("0.001")
    # BTC: +0.0015 bought, -0.0000015 fee, -0.0010001 repaid.
    assert decision.holding_changes == {"USDT": Decimal(-10), "BTC": Decimal("0.0004984")}
    assert decision.valuation_after is not None
    # After: USDT debt 20.002 only; ABC 1000 at 2 and BTC 0.0004984 at 20,000 as collateral.
    assert decision.valuation_after.debt_usdt == Decimal("20.002")
    assert decision.valuation_after.collateral_value_usdt == Decimal("2009.968")


@pytest.mark.parametrize(
    ("holdings", "trade", "first_hour_interest", "verdict"),
    [
        ("USDT=10", "sell USDT 30 buy BTC 0.0015 fee BTC 0", "0", TradeVerdict.MARGIN_LEVEL),
        ("USDT=10", "sell USDT 30 buy BTC 0.00150001 fee BTC 0", "0", TradeVerdict.ACCEPTED),
        ("USDT=10", "sell USDT 30 buy BTC 0.00149999 fee BTC 0", "0", TradeVerdict.MARGIN_LEVEL),
        (
            "USDT=10",
            "sell USDT 30 buy BTC 0.00150001 fee BTC 0",
            "0.002",
            TradeVerdict.MARGIN_LEVEL,
        ),
        (
            "USDT=10",
            "sell USDT 30 buy BTC 0.0016 fee BTC 0.00010001",
            "0",
            TradeVerdict.MARGIN_LEVEL,
        ),
        (
            "USDT=10 BNB=0.01",
            "sell USDT 30 buy BTC 0.0013 fee BNB 0.01",
            "0",
            TradeVerdict.MARGIN_LEVEL,
        ),
        (
            "USDT=10 BNB=0.02",
            "sell USDT 30 buy BTC 0.0013 fee BNB 0.01",
            "0",
            TradeVerdict.ACCEPTED,
        ),
    ],
    ids=[
        "exactly-at-the-minimum-refused",
        "just-above-the-minimum",
        "just-below-the-minimum",
        "first-hour-interest-counts-in-the-debt",
        "fee-in-bought-asset-counts",
        "fee-in-third-asset-counts",
        "rest-of-third-asset-counts-as-collateral",
    ],
)
def test_after_an_auto_borrow_the_level_of_the_whole_trade_must_stay_above_the_minimum(
    holdings: str, trade: str, first_hour_interest: str, verdict: TradeVerdict
) -> None:
    """Classic 3x: CML after the borrow, the sale, the purchase and the fee must be above 1.5.
    With 20 USDT owed, the account must hold more than 30 USDT of collateral afterwards."""
    decision = decide(
        trade, position(holdings), auto_borrow=True, first_hour_interest=first_hour_interest
    )
    assert decision.borrow_quantity == Decimal(20)
    assert decision.verdict is verdict
    context = decision.context()
    assert (context["level_kind"], context["level_min"]) == ("collateral_margin_level", "1.5")


def test_exactly_at_the_minimum_the_context_shows_the_level() -> None:
    decision = decide(
        "sell USDT 30 buy BTC 0.0015 fee BTC 0", position("USDT=10"), auto_borrow=True
    )
    context = decision.context()
    assert context["collateral_margin_level_after"] == "1.5"
    assert context["collateral_value_usdt_after"] == "30"
    assert context["debt_usdt_after"] == "20"


@pytest.mark.parametrize(
    ("ladder", "level_kind", "level_min", "buy", "verdict"),
    [
        (FULL_VALUE_LADDER, LevelKind.COLLATERAL_MARGIN_LEVEL, "1.25", "0.00125001", "accepted"),
        (FULL_VALUE_LADDER, LevelKind.COLLATERAL_MARGIN_LEVEL, "1.25", "0.00125", "margin_level"),
        (HALF_VALUE_LADDER, LevelKind.COLLATERAL_MARGIN_LEVEL, "1.5", "0.003", "margin_level"),
        (HALF_VALUE_LADDER, LevelKind.COLLATERAL_MARGIN_LEVEL, "1.5", "0.00300001", "accepted"),
        (HALF_VALUE_LADDER, LevelKind.MARGIN_LEVEL, "1.5", "0.0015", "margin_level"),
        (HALF_VALUE_LADDER, LevelKind.MARGIN_LEVEL, "1.5", "0.00150001", "accepted"),
        (FULL_VALUE_LADDER, LevelKind.PRO_MARGIN_LEVEL, "2", "0.00105", "margin_level"),
        (FULL_VALUE_LADDER, LevelKind.PRO_MARGIN_LEVEL, "2", "0.00105001", "accepted"),
    ],
    ids=[
        "classic-5x-just-above-1.25",
        "classic-5x-at-1.25",
        "haircut-halves-the-bought-btc-at-1.5",
        "haircut-just-above-1.5",
        "isolated-ml-ignores-haircuts-at-1.5",
        "isolated-ml-just-above-1.5",
        "pro-at-2",
        "pro-just-above-2",
    ],
)
def test_the_level_and_its_minimum_are_the_accounts(
    ladder: tuple[CollateralBracket, ...],
    level_kind: LevelKind,
    level_min: str,
    buy: str,
    verdict: str,
) -> None:
    """20 USDT borrowed, no interest. Pro: (collateral - 20) / (2.5% of 20 = 0.5) > 2, so the
    bought BTC must be worth more than 21 USDT (0.00105 BTC)."""
    decision = decide(
        f"sell USDT 30 buy BTC {buy} fee BTC 0",
        position("USDT=10"),
        auto_borrow=True,
        prices=market(BTC=ladder),
        level_kind=level_kind,
        level_min=level_min,
    )
    assert decision.verdict.value == verdict
