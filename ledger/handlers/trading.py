"""Settling trades from the matching engine, with auto-borrow and auto-repay (DOMAIN.md §5)."""

from decimal import Decimal
from typing import Any

from ledger.commands import SettleTrade
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import Stamp
from ledger.handlers.accounts import check_asset_in_account, level_rules
from ledger.handlers.interest import hour_charge, settle_interest
from ledger.handlers.pools import move_platform_total
from ledger.handlers.transfers import check_decimals, pool_for
from ledger.outcomes import RejectionReason, Status
from ledger.rules.interest import floor_hour
from ledger.rules.trade import TradeDecision, TradeLeg, TradeVerdict, decide_trade
from ledger.unit_of_work import Decided, UnitOfWork

TRADE_MESSAGES = {
    TradeVerdict.INSUFFICIENT_BALANCE: "The account does not hold enough to settle this trade.",
    TradeVerdict.ASSET_NOT_BORROWABLE: "{sell_asset} cannot be borrowed to cover the shortfall.",
    TradeVerdict.BORROW_DISABLED: "Borrowing is disabled for this account.",
    TradeVerdict.COOLING_OFF: "Borrowing is paused by the user's cooling-off period.",
    TradeVerdict.MARGIN_LEVEL: "The auto-borrow would take the margin level below its minimum.",
}


def settle_trade(unit: UnitOfWork, command: SettleTrade) -> Decided:
    symbols = (command.sell_asset, command.buy_asset, command.fee_asset)
    fields = ("sell_asset", "buy_asset", "fee_asset")
    assets = {s: unit.listed_asset(s, field) for s, field in zip(symbols, fields, strict=True)}
    for symbol, field in zip(symbols, fields, strict=True):
        check_asset_in_account(unit, command, symbol, field)
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    pools = {s: pool_for(unit, a, command.account) for s, a in assets.items()}
    stamp = unit.stamp(account, *pools.values())
    at = stamp.effective_at
    for symbol, quantity, field in zip(
        symbols,
        (command.sell_quantity, command.buy_quantity, command.fee_quantity),
        ("sell_quantity", "buy_quantity", "fee_quantity"),
        strict=True,
    ):
        check_decimals(unit.asset_as_of(assets[symbol], at), quantity, field)
    leg = TradeLeg(
        sell_asset=command.sell_asset,
        sell_quantity=command.sell_quantity,
        buy_asset=command.buy_asset,
        buy_quantity=command.buy_quantity,
        fee_asset=command.fee_asset,
        fee_quantity=command.fee_quantity,
    )
    if account is None or not account.is_open:
        return _refuse(unit, account, command, leg, RejectionReason.ACCOUNT_NOT_OPEN, {}, stamp)
    settle_interest(unit, account, at)
    unit.change(account)
    position = account.position()
    shortfall = max(Decimal(0), command.sell_quantity - account.holding(command.sell_asset))
    needs_borrow = command.auto_borrow and shortfall > 0
    profile = unit.user_profile_as_of(account.user, at)
    level_kind, thresholds = level_rules(unit, account, at)
    sell_asset = unit.asset_as_of(assets[command.sell_asset], at)
    decision = decide_trade(
        leg=leg,
        position=position,
        auto_borrow=command.auto_borrow,
        auto_repay=command.auto_repay,
        borrow_terms=sell_asset.borrow_terms,
        is_borrowing_enabled=account.is_borrowing_enabled,
        cooling_off_until=None if profile is None else profile.cooling_off_until,
        at=at,
        first_hour_interest_on_shortfall=hour_charge(
            unit, account, command.sell_asset, shortfall, at
        ).quantity
        if needs_borrow and sell_asset.borrow_terms is not None
        else Decimal(0),
        market=unit.market(position.assets() | set(symbols), at, field="sell_asset")
        if needs_borrow
        else None,
        level_kind=level_kind,
        level_min=thresholds.borrow_level_min,
    )
    context = decision.context()
    if not decision.is_accepted:
        reason = RejectionReason(decision.verdict.value)
        return _refuse(unit, account, command, leg, reason, context, stamp)
    _record(unit, account, pools, decision, context, stamp)
    return Decided(status=Status.ACCEPTED, account=account.account_id, context=context)


def _record(
    unit: UnitOfWork,
    account: MarginAccount,
    pools: dict[str, AssetPool | None],
    decision: TradeDecision,
    context: dict[str, Any],
    stamp: Stamp,
) -> None:
    leg = decision.leg
    if decision.borrow_quantity:
        account.borrow(
            asset=leg.sell_asset,
            quantity=decision.borrow_quantity,
            is_auto=True,
            first_hour=floor_hour(stamp.effective_at),
            first_hour_interest=decision.first_hour_interest,
            decision=context,
            stamp=stamp,
        )
    account.settle_trade(**dict(leg), decision=context, stamp=stamp)
    if decision.repay_interest or decision.repay_principal:
        account.repay(
            asset=leg.buy_asset,
            interest_paid=decision.repay_interest,
            principal_paid=decision.repay_principal,
            is_auto=True,
            decision=context,
            stamp=stamp,
        )
    # Trades move the platform totals of capped assets, and are not limited by the cap (§5).
    for asset, change in decision.holding_changes.items():
        move_platform_total(
            unit,
            pools[asset],
            account_id=account.account_id,
            movement="trade",
            change=change,
            stamp=stamp,
        )


def _refuse(
    unit: UnitOfWork,
    account: MarginAccount | None,
    command: SettleTrade,
    leg: TradeLeg,
    reason: RejectionReason,
    context: dict[str, Any],
    stamp: Stamp,
) -> Decided:
    context = leg.context() | context
    if account is not None:
        unit.change(account)
        account.reject_trade(
            sell_asset=leg.sell_asset,
            buy_asset=leg.buy_asset,
            reason=reason,
            decision=context,
            stamp=stamp,
        )
    message = (
        f"The margin account {command.account_id} is not open."
        if reason is RejectionReason.ACCOUNT_NOT_OPEN
        else TRADE_MESSAGES[TradeVerdict(reason.value)].format(**context)
    )
    return Decided(
        status=Status.REJECTED,
        reason=reason,
        message=message,
        account=command.account_id,
        context=context,
    )
