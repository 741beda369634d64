"""Borrow (DOMAIN.md §4-5): who may borrow how much, and what the account's level is after."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ledger.money import format_plain
from ledger.params import BorrowTerms, Frozen
from ledger.rules.valuation import LevelKind, Market, Position, Valuation, value_position
from ledger.times import format_time


class BorrowVerdict(StrEnum):
    ACCEPTED = "accepted"
    ASSET_NOT_BORROWABLE = "asset_not_borrowable"
    BORROW_DISABLED = "borrow_disabled"
    COOLING_OFF = "cooling_off"
    BELOW_MIN_BORROW = "below_min_borrow"
    MARGIN_LEVEL = "margin_level"


class BorrowDecision(Frozen):
    asset: str
    quantity_requested: Decimal
    value_usdt: Decimal
    min_borrow_usdt: Decimal | None
    first_hour_interest: Decimal
    cooling_off_until: datetime | None
    level_kind: LevelKind
    level_min: Decimal
    valuation_before: Valuation
    valuation_after: Valuation
    verdict: BorrowVerdict

    @property
    def is_accepted(self) -> bool:
        return self.verdict is BorrowVerdict.ACCEPTED

    def context(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "requested": format_plain(self.quantity_requested),
            "value_usdt": format_plain(self.value_usdt),
            "min_borrow_usdt": None
            if self.min_borrow_usdt is None
            else format_plain(self.min_borrow_usdt),
            "first_hour_interest": format_plain(self.first_hour_interest),
            "cooling_off_until": None
            if self.cooling_off_until is None
            else format_time(self.cooling_off_until),
            "level_kind": self.level_kind.value,
            "level_min": format_plain(self.level_min),
            **self.valuation_before.context(self.level_kind, "_before"),
            **self.valuation_after.context(self.level_kind, "_after"),
        }


def position_after_borrow(
    position: Position, *, asset: str, quantity: Decimal, interest: Decimal
) -> Position:
    """The borrowed quantity lands in the account as a holding and as a liability."""

    def plus(quantities: dict[str, Decimal], amount: Decimal) -> dict[str, Decimal]:
        return quantities | {asset: quantities.get(asset, Decimal(0)) + amount}

    return Position(
        holdings=plus(position.holdings, quantity),
        liabilities=plus(position.liabilities, quantity),
        interest=plus(position.interest, interest),
    )


def decide_borrow(
    *,
    asset: str,
    quantity_requested: Decimal,
    position: Position,
    market: Market,
    borrow_terms: BorrowTerms | None,
    is_borrowing_enabled: bool,
    cooling_off_until: datetime | None,
    at: datetime,
    level_kind: LevelKind,
    level_min: Decimal,
    first_hour_interest: Decimal,
    open_order_loss_usdt: Decimal = Decimal(0),
) -> BorrowDecision:
    """Refusals in a fixed order: asset, account switch, cooling-off, minimum, then the level
    after the borrow (the first hour's interest included) must stay above the mode's minimum."""
    assert quantity_requested > 0, quantity_requested
    assert first_hour_interest >= 0, first_hour_interest
    price = market.prices_usdt[asset]
    value_usdt = quantity_requested * price
    before = value_position(
        position=position, market=market, open_order_loss_usdt=open_order_loss_usdt
    )
    after = value_position(
        position=position_after_borrow(
            position, asset=asset, quantity=quantity_requested, interest=first_hour_interest
        ),
        market=market,
        open_order_loss_usdt=open_order_loss_usdt,
    )
    if borrow_terms is None or not borrow_terms.borrowable:
        verdict = BorrowVerdict.ASSET_NOT_BORROWABLE
    elif not is_borrowing_enabled:
        verdict = BorrowVerdict.BORROW_DISABLED
    elif cooling_off_until is not None and at < cooling_off_until:
        verdict = BorrowVerdict.COOLING_OFF
    elif value_usdt < borrow_terms.min_borrow_usdt:
        verdict = BorrowVerdict.BELOW_MIN_BORROW
    elif not after.is_above(level_kind, level_min):
        verdict = BorrowVerdict.MARGIN_LEVEL
    else:
        verdict = BorrowVerdict.ACCEPTED
    if verdict is BorrowVerdict.ACCEPTED:
        assert after.debt_usdt > before.debt_usdt, (before, after)
    return BorrowDecision(
        asset=asset,
        quantity_requested=quantity_requested,
        value_usdt=value_usdt,
        min_borrow_usdt=None if borrow_terms is None else borrow_terms.min_borrow_usdt,
        first_hour_interest=first_hour_interest,
        cooling_off_until=cooling_off_until,
        level_kind=level_kind,
        level_min=level_min,
        valuation_before=before,
        valuation_after=after,
        verdict=verdict,
    )
