"""Valuation (DOMAIN.md §4): tiered collateral value and the margin levels built on it."""

from collections.abc import Sequence
from decimal import Decimal, localcontext

from ledger import limits
from ledger.params import CollateralBracket


def collateral_value_usdt(
    *, quantity: Decimal, price_usdt: Decimal, ladder: Sequence[CollateralBracket]
) -> Decimal:
    """The haircut value of one holding: its notional summed bracket by bracket, like tax bands."""
    assert quantity >= 0, quantity
    assert price_usdt > 0, price_usdt
    assert ladder and ladder[-1].up_to_usdt is None, ladder
    notional_usdt = quantity * price_usdt
    value_usdt = Decimal(0)
    bracket_floor_usdt = Decimal(0)
    for bracket in ladder:
        assert 0 <= bracket.ratio <= 1, bracket
        bracket_ceiling_usdt = notional_usdt if bracket.up_to_usdt is None else bracket.up_to_usdt
        assert bracket_ceiling_usdt >= bracket_floor_usdt or bracket.up_to_usdt is None, ladder
        portion_usdt = min(notional_usdt, bracket_ceiling_usdt) - bracket_floor_usdt
        if portion_usdt <= 0:
            break
        value_usdt += portion_usdt * bracket.ratio
        bracket_floor_usdt = bracket_ceiling_usdt
    assert 0 <= value_usdt <= notional_usdt, (value_usdt, notional_usdt)
    return value_usdt


def margin_level(*, asset_value_usdt: Decimal, debt_usdt: Decimal) -> Decimal | None:
    """ML (or CML with a haircut value) = value / (liabilities + interest); None is infinite."""
    assert asset_value_usdt >= 0, asset_value_usdt
    assert debt_usdt >= 0, debt_usdt
    if debt_usdt == 0:
        return None
    with localcontext() as context:  # for records and people; thresholds compare exactly
        context.prec = limits.RATIO_DIGITS
        return asset_value_usdt / debt_usdt


def is_margin_level_above(
    *, asset_value_usdt: Decimal, debt_usdt: Decimal, level_min: Decimal
) -> bool:
    """value / debt > level_min, decided exactly as value > level_min·debt (infinite if no debt)."""
    assert asset_value_usdt >= 0 and debt_usdt >= 0, (asset_value_usdt, debt_usdt)
    return debt_usdt == 0 or asset_value_usdt > level_min * debt_usdt
