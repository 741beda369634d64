"""Valuation (DOMAIN.md §4): tiered collateral value and the margin levels built on it."""

from collections.abc import Sequence
from decimal import Decimal, localcontext
from enum import StrEnum

from ledger import limits
from ledger.money import format_plain
from ledger.params import CollateralBracket, Frozen, MaintenanceBracket


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
    assert debt_usdt >= 0, debt_usdt  # the value may be negative: Pro's net collateral
    if debt_usdt == 0:
        return None
    with localcontext() as context:  # for records and people; thresholds compare exactly
        context.prec = limits.RATIO_DIGITS
        return asset_value_usdt / debt_usdt


def is_margin_level_above(
    *, asset_value_usdt: Decimal, debt_usdt: Decimal, level_min: Decimal
) -> bool:
    """value / debt > level_min, decided exactly as value > level_min·debt (infinite if no debt)."""
    assert debt_usdt >= 0, debt_usdt
    return debt_usdt == 0 or asset_value_usdt > level_min * debt_usdt


def maintenance_margin_usdt(
    *, liability_value_usdt: Decimal, brackets: Sequence[MaintenanceBracket]
) -> Decimal:
    """Pro maintenance margin of one liability asset, charged bracket by bracket (DOMAIN.md §4)."""
    assert liability_value_usdt >= 0, liability_value_usdt
    assert brackets and brackets[-1].up_to_usdt is None, brackets
    margin_usdt = Decimal(0)
    bracket_floor_usdt = Decimal(0)
    for bracket in brackets:
        assert 0 <= bracket.rate <= 1, bracket
        ceiling_usdt = liability_value_usdt if bracket.up_to_usdt is None else bracket.up_to_usdt
        portion_usdt = min(liability_value_usdt, ceiling_usdt) - bracket_floor_usdt
        if portion_usdt <= 0:
            break
        margin_usdt += portion_usdt * bracket.rate
        bracket_floor_usdt = ceiling_usdt
    assert 0 <= margin_usdt <= liability_value_usdt, (margin_usdt, liability_value_usdt)
    return margin_usdt


class LevelKind(StrEnum):
    """Which margin level governs an account (DOMAIN.md §4)."""

    MARGIN_LEVEL = "margin_level"  # ML: isolated accounts
    COLLATERAL_MARGIN_LEVEL = "collateral_margin_level"  # CML: cross Classic and portfolio
    PRO_MARGIN_LEVEL = "pro_margin_level"  # Pro


class Market(Frozen):
    """The prices and per-asset parameters a valuation uses (all in force at one moment)."""

    prices_usdt: dict[str, Decimal]
    ladders: dict[str, tuple[CollateralBracket, ...]]
    maintenance_brackets: dict[str, tuple[MaintenanceBracket, ...]]


class Position(Frozen):
    """An account's quantities: gross holdings, borrowed principal and outstanding interest."""

    holdings: dict[str, Decimal]
    liabilities: dict[str, Decimal]
    interest: dict[str, Decimal]

    def assets(self) -> set[str]:
        quantities = (self.holdings, self.liabilities, self.interest)
        return {asset for q in quantities for asset, value in q.items() if value}

    def debt(self, asset: str) -> Decimal:
        return self.liabilities.get(asset, Decimal(0)) + self.interest.get(asset, Decimal(0))


class Valuation(Frozen):
    total_value_usdt: Decimal  # no haircuts
    collateral_value_usdt: Decimal  # haircut by each asset's ladder
    debt_usdt: Decimal  # liabilities + outstanding interest
    maintenance_margin_usdt: Decimal  # Pro
    open_order_loss_usdt: Decimal

    def level_terms(self, kind: LevelKind) -> tuple[Decimal, Decimal]:
        """The (numerator, denominator) of the level of this kind; denominator 0 is infinite."""
        if kind is LevelKind.MARGIN_LEVEL:
            return self.total_value_usdt, self.debt_usdt
        if kind is LevelKind.COLLATERAL_MARGIN_LEVEL:
            return self.collateral_value_usdt, self.debt_usdt
        net_collateral_usdt = self.collateral_value_usdt - self.debt_usdt
        return net_collateral_usdt - self.open_order_loss_usdt, self.maintenance_margin_usdt

    def level(self, kind: LevelKind) -> Decimal | None:
        numerator, denominator = self.level_terms(kind)
        return margin_level(asset_value_usdt=numerator, debt_usdt=denominator)

    def is_above(self, kind: LevelKind, level_min: Decimal) -> bool:
        numerator, denominator = self.level_terms(kind)
        if kind is LevelKind.PRO_MARGIN_LEVEL and denominator == 0:
            # No maintenance margin: infinite only while net collateral, after open order loss,
            # is positive; an open order loss that eats it all is not "above" anything.
            return numerator > 0
        return is_margin_level_above(
            asset_value_usdt=numerator, debt_usdt=denominator, level_min=level_min
        )

    def is_at_or_below(self, kind: LevelKind, level: Decimal) -> bool:
        return not self.is_above(kind, level)

    def context(self, kind: LevelKind, suffix: str = "") -> dict[str, str | None]:
        level = self.level(kind)
        return {
            f"total_value_usdt{suffix}": format_plain(self.total_value_usdt),
            f"collateral_value_usdt{suffix}": format_plain(self.collateral_value_usdt),
            f"debt_usdt{suffix}": format_plain(self.debt_usdt),
            f"maintenance_margin_usdt{suffix}": format_plain(self.maintenance_margin_usdt),
            f"{kind.value}{suffix}": None if level is None else format_plain(level),
        }


def value_position(
    *, position: Position, market: Market, open_order_loss_usdt: Decimal = Decimal(0)
) -> Valuation:
    """Every valuation figure of DOMAIN.md §4 for one account at one set of prices."""
    assert open_order_loss_usdt >= 0, open_order_loss_usdt
    total_value = collateral_value = debt = maintenance = Decimal(0)
    for asset in sorted(position.assets()):
        price = market.prices_usdt[asset]
        holding = position.holdings.get(asset, Decimal(0))
        assert holding >= 0, (asset, holding)
        total_value += holding * price
        collateral_value += collateral_value_usdt(
            quantity=holding, price_usdt=price, ladder=market.ladders[asset]
        )
        debt_value = position.debt(asset) * price
        debt += debt_value
        if debt_value:
            maintenance += maintenance_margin_usdt(
                liability_value_usdt=debt_value, brackets=market.maintenance_brackets[asset]
            )
    return Valuation(
        total_value_usdt=total_value,
        collateral_value_usdt=collateral_value,
        debt_usdt=debt,
        maintenance_margin_usdt=maintenance,
        open_order_loss_usdt=open_order_loss_usdt,
    )
