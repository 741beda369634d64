"""Borrow, repay and the administrator's borrowing switch (DOMAIN.md §4-6)."""

from decimal import Decimal
from typing import Any

from ledger.commands import AdminSetBorrowing, Borrow, Repay
from ledger.domain.account import MarginAccount
from ledger.errors import LedgerInputError
from ledger.handlers.accounts import check_asset_in_account, level_rules
from ledger.handlers.interest import hour_charge, settle_interest
from ledger.handlers.pools import move_platform_total
from ledger.handlers.transfers import account_not_open, check_decimals, pool_for
from ledger.money import format_plain
from ledger.outcomes import RejectionReason, Status
from ledger.rules.borrow import BorrowVerdict, decide_borrow
from ledger.rules.interest import floor_hour
from ledger.rules.repay import RepayVerdict, decide_repay
from ledger.times import format_time
from ledger.unit_of_work import Decided, UnitOfWork

BORROW_MESSAGES = {
    BorrowVerdict.ASSET_NOT_BORROWABLE: "{asset} cannot be borrowed.",
    BorrowVerdict.BORROW_DISABLED: "Borrowing is disabled for this account.",
    BorrowVerdict.COOLING_OFF: "Borrowing is paused by your cooling-off period until {until}.",
    BorrowVerdict.BELOW_MIN_BORROW: (
        "The minimum borrow is {min_borrow_usdt} USDT-equivalent; {asset} {requested} is worth "
        "{value_usdt} USDT."
    ),
    BorrowVerdict.MARGIN_LEVEL: (
        "This borrow would take the {level_name} to {level_after}, which must stay above "
        "{level_min}."
    ),
}
REPAY_MESSAGES = {
    RepayVerdict.INSUFFICIENT_BALANCE: (
        "{asset}: the account holds {holding}, less than {requested}."
    ),
    RepayVerdict.REPAY_EXCEEDS_DEBT: (
        "{asset}: {requested} is more than is owed ({liability} principal and {interest} interest)."
    ),
}


def borrow(unit: UnitOfWork, command: Borrow) -> Decided:
    asset = unit.listed_asset(command.asset)
    check_asset_in_account(unit, command, asset.symbol)
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    pool = pool_for(unit, asset, command.account)
    stamp = unit.stamp(account, pool)
    at = stamp.effective_at
    asset = unit.asset_as_of(asset, at)
    check_decimals(asset, command.quantity)
    context: dict[str, Any] = {"asset": asset.symbol, "requested": format_plain(command.quantity)}
    if account is None or not account.is_open:
        return account_not_open(unit, account, command.account_id, context, stamp, "borrow")
    charges = settle_interest(unit, account, at)
    profile = unit.user_profile_as_of(account.user, at)
    level_kind, thresholds = level_rules(unit, account, at)
    position = account.position()
    market = unit.market(position.assets() | {asset.symbol}, at)
    first_hour_interest = (
        hour_charge(unit, account, asset.symbol, command.quantity, at).quantity
        if asset.borrow_terms is not None
        else Decimal(0)  # refused below as asset_not_borrowable
    )
    decision = decide_borrow(
        asset=asset.symbol,
        quantity_requested=command.quantity,
        position=position,
        market=market,
        borrow_terms=asset.borrow_terms,
        is_borrowing_enabled=account.is_borrowing_enabled,
        cooling_off_until=None if profile is None else profile.cooling_off_until,
        at=at,
        level_kind=level_kind,
        level_min=thresholds.borrow_level_min,
        first_hour_interest=first_hour_interest,
    )
    context = decision.context() | {"interest_settled_hours": len(charges)}
    unit.change(account)
    if not decision.is_accepted:
        account.reject_borrow(
            asset=asset.symbol,
            quantity_requested=command.quantity,
            reason=decision.verdict.value,
            decision=context,
            stamp=stamp,
        )
        template = BORROW_MESSAGES[decision.verdict]
        until = decision.cooling_off_until
        return Decided(
            status=Status.REJECTED,
            reason=RejectionReason(decision.verdict.value),
            message=template.format(
                **{k: v for k, v in context.items() if k != "until"},
                until=None if until is None else format_time(until),
                level_after=context.get(f"{level_kind.value}_after"),
                level_name=level_kind.value.replace("_", " "),
            ),
            account=account.account_id,
            context=context,
        )
    account.borrow(
        asset=asset.symbol,
        quantity=command.quantity,
        is_auto=False,
        first_hour=floor_hour(at),
        first_hour_interest=first_hour_interest,
        decision=context,
        stamp=stamp,
    )
    move_platform_total(
        unit,
        pool,
        account_id=account.account_id,
        movement="borrow",
        change=command.quantity,
        stamp=stamp,
    )
    return Decided(status=Status.ACCEPTED, account=account.account_id, context=context)


def repay(unit: UnitOfWork, command: Repay) -> Decided:
    asset = unit.listed_asset(command.asset)
    check_asset_in_account(unit, command, asset.symbol)
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    pool = pool_for(unit, asset, command.account)
    stamp = unit.stamp(account, pool)
    asset = unit.asset_as_of(asset, stamp.effective_at)
    check_decimals(asset, command.quantity)
    context: dict[str, Any] = {"asset": asset.symbol, "requested": format_plain(command.quantity)}
    if account is None or not account.is_open:
        return account_not_open(unit, account, command.account_id, context, stamp, "repay")
    charges = settle_interest(unit, account, stamp.effective_at)
    decision = decide_repay(
        asset=asset.symbol,
        quantity_requested=command.quantity,
        holding=account.holding(asset.symbol),
        liability=account.liability(asset.symbol),
        interest=account.interest_owed(asset.symbol),
    )
    context = decision.context() | {"interest_settled_hours": len(charges)}
    unit.change(account)
    if not decision.is_accepted:
        account.reject_repay(
            asset=asset.symbol,
            quantity_requested=command.quantity,
            reason=decision.verdict.value,
            decision=context,
            stamp=stamp,
        )
        return Decided(
            status=Status.REJECTED,
            reason=RejectionReason(decision.verdict.value),
            message=REPAY_MESSAGES[decision.verdict].format(**context),
            account=account.account_id,
            context=context,
        )
    account.repay(
        asset=asset.symbol,
        interest_paid=decision.interest_paid,
        principal_paid=decision.principal_paid,
        is_auto=False,
        decision=context,
        stamp=stamp,
    )
    move_platform_total(
        unit,
        pool,
        account_id=account.account_id,
        movement="repay",
        change=-command.quantity,
        stamp=stamp,
    )
    return Decided(status=Status.ACCEPTED, account=account.account_id, context=context)


def admin_set_borrowing(unit: UnitOfWork, command: AdminSetBorrowing) -> Decided:
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    if account is None:
        raise LedgerInputError("account", f"{command.account_id} is not known to the ledger")
    stamp = unit.stamp(account)
    settle_interest(unit, account, stamp.effective_at)
    account.set_borrowing(enabled=command.enabled, note=command.note, stamp=stamp)
    unit.change(account)
    return Decided(
        status=Status.ACCEPTED,
        account=account.account_id,
        context={"borrowing_enabled": command.enabled, "note": command.note},
    )
