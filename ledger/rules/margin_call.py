"""Margin calls and auto top-up sizing (DOMAIN.md §4, §7)."""

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from ledger import limits
from ledger.money import quantize_up
from ledger.params import MarginThresholds
from ledger.rules.valuation import LevelKind, Market, Position, Valuation, value_position


class MarginState(StrEnum):
    HEALTHY = "healthy"
    MARGIN_CALL = "margin_call"  # liquidation level < level <= margin-call level
    LIQUIDATION = "liquidation"  # level <= liquidation level


def classify_level(
    *, valuation: Valuation, level_kind: LevelKind, thresholds: MarginThresholds
) -> MarginState:
    """Without debt an account is healthy whatever its value (the level is infinite)."""
    if valuation.is_at_or_below(level_kind, thresholds.liquidation_level):
        return MarginState.LIQUIDATION
    if valuation.is_at_or_below(level_kind, thresholds.margin_call_level):
        return MarginState.MARGIN_CALL
    return MarginState.HEALTHY


def is_margin_call_due(
    *, last_margin_call_at: datetime | None, at: datetime, interval_hours: int
) -> bool:
    """At most one margin call per account in any `interval_hours` window (24 by default)."""
    return last_margin_call_at is None or at - last_margin_call_at >= timedelta(
        hours=interval_hours
    )


def top_up_quantity_needed(
    *,
    position: Position,
    market: Market,
    level_kind: LevelKind,
    target_level: Decimal,
    asset: str,
    available: Decimal,
    quantity_decimals: int,
) -> Decimal:
    """The least quantity of `asset` (to its decimals) that lifts the level above
    `target_level`, or everything available when even that is not enough.

    Found by bisection, because a haircut ladder makes the value non-linear in the quantity.
    """
    assert available >= 0, available

    def lifted(quantity: Decimal) -> bool:
        holdings = position.holdings | {asset: position.holdings.get(asset, Decimal(0)) + quantity}
        after = value_position(
            position=position.model_copy(update={"holdings": holdings}), market=market
        )
        return after.is_above(level_kind, target_level)

    if available == 0 or not lifted(available):
        return available
    low, high = Decimal(0), available
    for _step in range(limits.TOP_UP_BISECTION_STEPS):
        if high - low <= Decimal(1).scaleb(-quantity_decimals):
            break
        middle = (low + high) / 2
        if lifted(middle):
            high = middle
        else:
            low = middle
    needed = min(quantize_up(high, quantity_decimals), available)
    assert lifted(needed), (needed, available)
    return needed
