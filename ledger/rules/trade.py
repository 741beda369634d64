"""Settling a matched trade (DOMAIN.md §5): sell X, buy Y, pay a fee, with auto-borrow of the
shortfall and auto-repay from the proceeds. Trades are not limited by the collateral cap."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ledger.money import format_plain
from ledger.params import BorrowTerms, Frozen
from ledger.rules.borrow import position_after_borrow
from ledger.rules.valuation import LevelKind, Market, Position, Valuation, value_position


class TradeVerdict(StrEnum):
    ACCEPTED = "accepted"
    INSUFFICIENT_BALANCE = "insufficient_balance"  # shortfall without auto-borrow, or the fee
    ASSET_NOT_BORROWABLE = "asset_not_borrowable"
    BORROW_DISABLED = "borrow_disabled"
    COOLING_OFF = "cooling_off"
    MARGIN_LEVEL = "margin_level"


class TradeLeg(Frozen):
    sell_asset: str
    sell_quantity: Decimal
    buy_asset: str
    buy_quantity: Decimal
    fee_asset: str
    fee_quantity: Decimal

    def context(self) -> dict[str, str]:
        return {k: v if isinstance(v, str) else format_plain(v) for k, v in self}


class TradeDecision(Frozen):
    leg: TradeLeg
    borrow_quantity: Decimal  # the auto-borrowed shortfall of the sold asset
    first_hour_interest: Decimal  # charged on the auto-borrow
    repay_interest: Decimal  # auto-repay of the bought asset's debt: interest first
    repay_principal: Decimal
    holding_changes: dict[str, Decimal]  # net, per asset, borrow and repay included
    level_kind: LevelKind
    level_min: Decimal
    valuation_after: Valuation | None  # only when an auto-borrow needs the level checked
    verdict: TradeVerdict

    @property
    def is_accepted(self) -> bool:
        return self.verdict is TradeVerdict.ACCEPTED

    def context(self) -> dict[str, Any]:
        context: dict[str, Any] = {
            **self.leg.context(),
            "auto_borrowed": format_plain(self.borrow_quantity),
            "first_hour_interest": format_plain(self.first_hour_interest),
            "auto_repaid_interest": format_plain(self.repay_interest),
            "auto_repaid_principal": format_plain(self.repay_principal),
            "holding_changes": {
                a: format_plain(q) for a, q in sorted(self.holding_changes.items())
            },
        }
        if self.valuation_after is not None:
            context |= {
                "level_kind": self.level_kind.value,
                "level_min": format_plain(self.level_min),
            }
            context |= self.valuation_after.context(self.level_kind, "_after")
        return context


def decide_trade(
    *,
    leg: TradeLeg,
    position: Position,
    auto_borrow: bool,
    auto_repay: bool,
    borrow_terms: BorrowTerms | None,
    is_borrowing_enabled: bool,
    cooling_off_until: datetime | None,
    at: datetime,
    first_hour_interest_on_shortfall: Decimal,
    market: Market | None,
    level_kind: LevelKind,
    level_min: Decimal,
) -> TradeDecision:
    """Interpretation: auto-borrow takes exactly the shortfall (no minimum borrow: an order's
    shortfall is what it is) under every other borrow rule, and the account's level after the
    whole trade must stay above the mode's borrow minimum. Auto-repay uses the proceeds left after
    a fee paid in the bought asset, and repays interest before principal."""
    assert leg.sell_asset != leg.buy_asset, leg
    assert leg.sell_quantity > 0 and leg.buy_quantity > 0 and leg.fee_quantity >= 0, leg
    held = position.holdings.get(leg.sell_asset, Decimal(0))
    shortfall = max(Decimal(0), leg.sell_quantity - held)
    borrow_quantity = shortfall if auto_borrow else Decimal(0)
    first_hour = first_hour_interest_on_shortfall if borrow_quantity else Decimal(0)
    after = position_after_borrow(
        position, asset=leg.sell_asset, quantity=borrow_quantity, interest=first_hour
    )
    holdings = dict(after.holdings)
    holdings[leg.sell_asset] = holdings.get(leg.sell_asset, Decimal(0)) - leg.sell_quantity
    holdings[leg.buy_asset] = holdings.get(leg.buy_asset, Decimal(0)) + leg.buy_quantity
    holdings[leg.fee_asset] = holdings.get(leg.fee_asset, Decimal(0)) - leg.fee_quantity
    repay_interest = repay_principal = Decimal(0)
    if auto_repay and holdings[leg.buy_asset] > 0:
        proceeds = leg.buy_quantity - (leg.fee_quantity if leg.fee_asset == leg.buy_asset else 0)
        available = max(Decimal(0), min(proceeds, holdings[leg.buy_asset]))
        repay_interest = min(available, after.interest.get(leg.buy_asset, Decimal(0)))
        repay_principal = min(
            available - repay_interest, after.liabilities.get(leg.buy_asset, Decimal(0))
        )
        holdings[leg.buy_asset] -= repay_interest + repay_principal
    final = Position(
        holdings=holdings,
        liabilities=after.liabilities
        | {leg.buy_asset: after.liabilities.get(leg.buy_asset, Decimal(0)) - repay_principal},
        interest=after.interest
        | {leg.buy_asset: after.interest.get(leg.buy_asset, Decimal(0)) - repay_interest},
    )
    valuation = None
    if shortfall and not auto_borrow:
        verdict = TradeVerdict.INSUFFICIENT_BALANCE
    elif any(q < 0 for q in holdings.values()):
        verdict = TradeVerdict.INSUFFICIENT_BALANCE  # the fee, after the trade
    elif borrow_quantity and (borrow_terms is None or not borrow_terms.borrowable):
        verdict = TradeVerdict.ASSET_NOT_BORROWABLE
    elif borrow_quantity and not is_borrowing_enabled:
        verdict = TradeVerdict.BORROW_DISABLED
    elif borrow_quantity and cooling_off_until is not None and at < cooling_off_until:
        verdict = TradeVerdict.COOLING_OFF
    else:
        verdict = TradeVerdict.ACCEPTED
        if borrow_quantity:
            assert market is not None, "an auto-borrow needs prices"
            valuation = value_position(position=final, market=market)
            if not valuation.is_above(level_kind, level_min):
                verdict = TradeVerdict.MARGIN_LEVEL
    changes = {
        asset: holdings.get(asset, Decimal(0)) - position.holdings.get(asset, Decimal(0))
        for asset in {leg.sell_asset, leg.buy_asset, leg.fee_asset}
    }
    if verdict is TradeVerdict.ACCEPTED:
        assert all(q >= 0 for q in final.holdings.values()), final
        assert all(q >= 0 for q in final.liabilities.values()), final
    return TradeDecision(
        leg=leg,
        borrow_quantity=borrow_quantity,
        first_hour_interest=first_hour,
        repay_interest=repay_interest,
        repay_principal=repay_principal,
        holding_changes={a: q for a, q in changes.items() if q},
        level_kind=level_kind,
        level_min=level_min,
        valuation_after=valuation,
        verdict=verdict,
    )
