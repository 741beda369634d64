"""Margin calls and auto top-up sizing (DOMAIN.md §4, §7): the state a level is in at each
threshold's edge, the 24-hour margin-call window, and the least top-up that lifts the level.

Every figure is computed by hand in the comments; the rules must reproduce them exactly.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.params import (
    FULL_VALUE_LADDER,
    MAINTENANCE_BRACKETS_DEFAULT,
    MARGIN_THRESHOLDS_DEFAULT,
    CollateralBracket,
    MarginThresholds,
)
from ledger.rules.margin_call import (
    MarginState,
    classify_level,
    is_margin_call_due,
    top_up_quantity_needed,
)
from ledger.rules.valuation import LevelKind, Market, Position, Valuation, value_position

CLASSIC_3X = MARGIN_THRESHOLDS_DEFAULT["classic_3x"]  # margin call 1.3, liquidation 1.1
CLASSIC_5X = MARGIN_THRESHOLDS_DEFAULT["classic_5x"]  # margin call 1.16, liquidation 1.1
PRO = MARGIN_THRESHOLDS_DEFAULT["pro"]  # margin call 1.25, liquidation 1
ISOLATED = MARGIN_THRESHOLDS_DEFAULT["isolated"]  # margin call 1.3, liquidation 1.1


def valuation(
    *,
    total: str = "0",
    collateral: str = "0",
    debt: str = "0",
    maintenance: str = "0",
) -> Valuation:
    return Valuation(
        total_value_usdt=Decimal(total),
        collateral_value_usdt=Decimal(collateral),
        debt_usdt=Decimal(debt),
        maintenance_margin_usdt=Decimal(maintenance),
        open_order_loss_usdt=Decimal(0),
    )


@pytest.mark.parametrize(
    ("collateral", "state"),
    [
        ("1300.01", MarginState.HEALTHY),  # CML 1.30001
        ("1300", MarginState.MARGIN_CALL),  # exactly at 1.3
        ("1299.99", MarginState.MARGIN_CALL),
        ("1100.01", MarginState.MARGIN_CALL),  # just above 1.1
        ("1100", MarginState.LIQUIDATION),  # exactly at 1.1
        ("1099.99", MarginState.LIQUIDATION),
        ("0", MarginState.LIQUIDATION),
    ],
    ids=[
        "just-above-margin-call",
        "exactly-at-margin-call",
        "just-below-margin-call",
        "just-above-liquidation",
        "exactly-at-liquidation",
        "below-liquidation",
        "nothing-left",
    ],
)
def test_classic_3x_collateral_margin_level_edges(collateral: str, state: MarginState) -> None:
    """Debt 1,000 USDT: the collateral value sets CML = collateral / 1,000; the total value
    (no haircuts) is irrelevant for a cross Classic account."""
    measured = valuation(total="99999", collateral=collateral, debt="1000")

    assert (
        classify_level(
            valuation=measured,
            level_kind=LevelKind.COLLATERAL_MARGIN_LEVEL,
            thresholds=CLASSIC_3X,
        )
        is state
    )


@pytest.mark.parametrize(
    ("collateral", "state"),
    [
        ("1160.01", MarginState.HEALTHY),
        ("1160", MarginState.MARGIN_CALL),
        ("1100.01", MarginState.MARGIN_CALL),
        ("1100", MarginState.LIQUIDATION),
    ],
    ids=["above-1.16", "at-1.16", "above-1.1", "at-1.1"],
)
def test_classic_5x_margin_call_zone_ends_at_1_16(collateral: str, state: MarginState) -> None:
    measured = valuation(collateral=collateral, debt="1000")

    assert (
        classify_level(
            valuation=measured,
            level_kind=LevelKind.COLLATERAL_MARGIN_LEVEL,
            thresholds=CLASSIC_5X,
        )
        is state
    )


@pytest.mark.parametrize(
    ("total", "state"),
    [
        ("1300.01", MarginState.HEALTHY),
        ("1300", MarginState.MARGIN_CALL),
        ("1100.01", MarginState.MARGIN_CALL),
        ("1100", MarginState.LIQUIDATION),
    ],
    ids=["above-1.3", "at-1.3", "above-1.1", "at-1.1"],
)
def test_isolated_margin_level_uses_the_total_value_without_haircuts(
    total: str, state: MarginState
) -> None:
    """The collateral value (haircut, here 0) does not matter for ML."""
    measured = valuation(total=total, collateral="0", debt="1000")

    assert (
        classify_level(valuation=measured, level_kind=LevelKind.MARGIN_LEVEL, thresholds=ISOLATED)
        is state
    )


@pytest.mark.parametrize(
    ("collateral", "state"),
    [
        ("1125.01", MarginState.HEALTHY),  # net 125.01 / maintenance 100
        ("1125", MarginState.MARGIN_CALL),  # exactly 1.25
        ("1100.01", MarginState.MARGIN_CALL),  # 1.0001
        ("1100", MarginState.LIQUIDATION),  # exactly 1
        ("999", MarginState.LIQUIDATION),  # net collateral negative
    ],
    ids=["above-1.25", "at-1.25", "above-1", "at-1", "negative-net"],
)
def test_pro_margin_level_edges(collateral: str, state: MarginState) -> None:
    """Pro: (collateral 1,000 + x - debt 1,000) / maintenance margin 100."""
    measured = valuation(collateral=collateral, debt="1000", maintenance="100")

    assert (
        classify_level(valuation=measured, level_kind=LevelKind.PRO_MARGIN_LEVEL, thresholds=PRO)
        is state
    )


@pytest.mark.parametrize(
    ("kind", "thresholds"),
    [
        (LevelKind.COLLATERAL_MARGIN_LEVEL, CLASSIC_3X),
        (LevelKind.MARGIN_LEVEL, ISOLATED),
        (LevelKind.PRO_MARGIN_LEVEL, PRO),
    ],
    ids=["cml", "ml", "pro"],
)
def test_an_account_without_debt_is_healthy_whatever_its_value(
    kind: LevelKind, thresholds: MarginThresholds
) -> None:
    measured = valuation(total="5", collateral="5")

    assert classify_level(valuation=measured, level_kind=kind, thresholds=thresholds) is (
        MarginState.HEALTHY
    )


CALLED_AT = datetime(2026, 3, 2, 9, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("elapsed", "is_due"),
    [
        (timedelta(0), False),
        (timedelta(hours=1), False),
        (timedelta(hours=23, minutes=59), False),
        (timedelta(hours=23, minutes=59, seconds=59, microseconds=999999), False),
        (timedelta(hours=24), True),
        (timedelta(hours=24, minutes=1), True),
        (timedelta(days=3), True),
    ],
    ids=["same-moment", "1h", "23h59", "a-microsecond-short", "24h00", "24h01", "3-days"],
)
def test_margin_call_at_most_once_in_24_hours(elapsed: timedelta, is_due: bool) -> None:
    assert (
        is_margin_call_due(last_margin_call_at=CALLED_AT, at=CALLED_AT + elapsed, interval_hours=24)
        is is_due
    )


def test_first_margin_call_is_always_due() -> None:
    assert is_margin_call_due(last_margin_call_at=None, at=CALLED_AT, interval_hours=24)


def test_margin_call_interval_is_a_parameter() -> None:
    at = CALLED_AT + timedelta(hours=6)

    assert is_margin_call_due(last_margin_call_at=CALLED_AT, at=at, interval_hours=6)
    assert not is_margin_call_due(last_margin_call_at=CALLED_AT, at=at, interval_hours=7)


# --- top-up sizing ---------------------------------------------------------------------------


def bracket(up_to_usdt: str | None, ratio: str) -> CollateralBracket:
    return CollateralBracket(
        up_to_usdt=None if up_to_usdt is None else Decimal(up_to_usdt), ratio=Decimal(ratio)
    )


def market(abc_price: str, abc_ladder: tuple[CollateralBracket, ...] = FULL_VALUE_LADDER) -> Market:
    return Market(
        prices_usdt={"ABC": Decimal(abc_price), "USDT": Decimal(1)},
        ladders={"ABC": abc_ladder, "USDT": FULL_VALUE_LADDER},
        maintenance_brackets={
            "ABC": MAINTENANCE_BRACKETS_DEFAULT,
            "USDT": MAINTENANCE_BRACKETS_DEFAULT,
        },
    )


# A leveraged long: 2,500 ABC held, 1,500 USDT borrowed + 0.15 interest.
LONG = Position(
    holdings={"ABC": Decimal(2500)},
    liabilities={"USDT": Decimal(1500)},
    interest={"USDT": Decimal("0.15")},
)


def needed(
    *,
    position: Position = LONG,
    at_market: Market,
    available: str,
    kind: LevelKind = LevelKind.COLLATERAL_MARGIN_LEVEL,
    target: str = "1.5",
    decimals: int = 2,
) -> Decimal:
    return top_up_quantity_needed(
        position=position,
        market=at_market,
        level_kind=kind,
        target_level=Decimal(target),
        asset="ABC",
        available=Decimal(available),
        quantity_decimals=decimals,
    )


def is_lifted(position: Position, at_market: Market, quantity: str, kind: LevelKind) -> bool:
    holdings = position.holdings | {
        "ABC": position.holdings.get("ABC", Decimal(0)) + Decimal(quantity)
    }
    after = value_position(
        position=position.model_copy(update={"holdings": holdings}), market=at_market
    )
    return after.is_above(kind, Decimal("1.5"))


@pytest.mark.parametrize(
    ("available", "quantity"),
    [
        ("1000", "500.31"),  # plenty in the spot wallet: the least that lifts the level
        ("500.31", "500.31"),  # exactly enough
        ("500.30", "500.30"),  # one hundredth short: everything, still not enough
        ("300", "300"),  # far short: everything
        ("0", "0"),  # an empty wallet moves nothing
    ],
    ids=["plenty", "exactly-enough", "one-unit-short", "far-short", "empty"],
)
def test_full_value_top_up_lifts_the_level_just_above_the_initial_risk_ratio(
    available: str, quantity: str
) -> None:
    """At ABC 0.75: (2,500 + q) x 0.75 > 1.5 x 1,500.15 = 2,250.225 needs q > 500.30, so the
    least quantity with 2 decimals is 500.31."""
    at_market = market("0.75")

    assert needed(at_market=at_market, available=available) == Decimal(quantity)
    assert is_lifted(LONG, at_market, "500.31", LevelKind.COLLATERAL_MARGIN_LEVEL)
    assert not is_lifted(LONG, at_market, "500.30", LevelKind.COLLATERAL_MARGIN_LEVEL)


HAIRCUT_LADDER = (bracket("1000", "1"), bracket(None, "0.5"))  # above 1,000 USDT at half value
# 1,000 ABC at price 1 fill the first bracket; 1,000 USDT owed.
HALF_VALUE_POSITION = Position(
    holdings={"ABC": Decimal(1000)}, liabilities={"USDT": Decimal(1000)}, interest={}
)


def test_haircut_ladder_needs_twice_as_much_above_the_first_bracket() -> None:
    """CML: 1,000 + 0.5·q > 1.5 x 1,000 needs q > 1,000 (1,000.01), where ML (no haircut)
    needs only 1,000 + q > 1,500: q = 500.01."""
    at_market = market("1", HAIRCUT_LADDER)

    assert needed(position=HALF_VALUE_POSITION, at_market=at_market, available="5000") == (
        Decimal("1000.01")
    )
    assert needed(
        position=HALF_VALUE_POSITION,
        at_market=at_market,
        available="5000",
        kind=LevelKind.MARGIN_LEVEL,
    ) == Decimal("500.01")


def test_haircut_ladder_that_caps_the_value_makes_all_available_not_enough() -> None:
    """With 0% above 2,000 USDT the collateral value never passes 1,000 + 500 = 1,500, never above
    1.5 x 1,000: even the whole wallet is not enough, and the whole wallet is what is returned."""
    capped_ladder = (bracket("1000", "1"), bracket("2000", "0.5"), bracket(None, "0"))
    at_market = market("1", capped_ladder)

    assert needed(position=HALF_VALUE_POSITION, at_market=at_market, available="5000") == (
        Decimal(5000)
    )


@pytest.mark.parametrize(
    ("available", "decimals", "least"),
    [("777", 0, "22"), ("1000", 2, "21.43"), ("1000", 8, "21.42857143")],
    ids=["whole-units", "cents", "eight-decimals"],
)
def test_top_up_is_the_least_quantity_when_the_threshold_falls_between_units(
    available: str, decimals: int, least: str
) -> None:
    """Nothing held, 100 USDT owed, ABC at 7: 7·q > 150 needs q > 21.428571428571...; the least
    quantity is 22 in whole units, 21.43 in cents, 21.42857143 in 8 decimals."""
    owes = Position(holdings={}, liabilities={"USDT": Decimal(100)}, interest={})

    quantity = needed(position=owes, at_market=market("7"), available=available, decimals=decimals)

    assert quantity == Decimal(least)
