"""Margin calls and auto top-up sizing (DOMAIN.md §4, §7)."""

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from ledger import limits
from ledger.money import quantize_down
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
    `target_level`, or everything available (to its decimals) when even that is not enough.

    Found by bisection over whole units of the last decimal, because a haircut ladder makes the
    value non-linear in the quantity; the level only grows with the quantity.
    """
    assert available >= 0, available
    unit = Decimal(1).scaleb(-quantity_decimals)
    available = quantize_down(available, quantity_decimals)  # a wallet can't move finer amounts

    def lifted(quantity: Decimal) -> bool:
        holdings = position.holdings | {asset: position.holdings.get(asset, Decimal(0)) + quantity}
        after = value_position(
            position=position.model_copy(update={"holdings": holdings}), market=market
        )
        return after.is_above(level_kind, target_level)

    if available == 0 or not lifted(available):
        return available
    low, high = 0, int(available / unit)  # in units: lifted(high * unit), not lifted(low * unit)
    if lifted(Decimal(0)):
        return Decimal(0)
    for _step in range(limits.TOP_UP_BISECTION_STEPS):
        if high - low <= 1:
            break
        middle = (low + high) // 2
        if lifted(middle * unit):
            high = middle
        else:
            low = middle
    assert high - low <= 1, (low, high)
    needed = high * unit
    assert lifted(needed) and not lifted(needed - unit), (needed, available)
    return needed
