"""Collateral movements: transfer-in (opening check, cap), verification, transfer-out."""

from decimal import Decimal
from typing import Any

from ledger.commands import CompleteVerification, TransferIn, TransferOut
from ledger.domain.account import AccountStatus, MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import Stamp
from ledger.errors import LedgerInputError
from ledger.handlers.accounts import check_asset_in_account, level_rules, load_or_register_account
from ledger.handlers.interest import settle_interest
from ledger.handlers.pools import move_platform_total
from ledger.money import decimal_places, format_plain
from ledger.outcomes import RejectionReason, Status
from ledger.rules.cap_band import CapDecision, cap_rejection_message, decide_cap_band
from ledger.rules.opening_check import OPENING_RISK_MESSAGE, OpeningVerdict, decide_opening_check
from ledger.rules.transfer_out import TransferOutVerdict, decide_transfer_out
from ledger.rules.valuation import value_position
from ledger.unit_of_work import Decided, UnitOfWork

VERIFICATION_PENDING_MESSAGE = (
    "The first transfer to this account is awaiting facial verification; "
    "no further transfer-in is possible until it completes."
)
TRANSFER_OUT_MESSAGES = {
    TransferOutVerdict.INSUFFICIENT_BALANCE: (
        "{asset}: the account holds {holding}, less than the {requested} requested."
    ),
    TransferOutVerdict.MARGIN_LEVEL: (
        "This transfer would take the account's margin level to "
        "{collateral_margin_level_after}, which must stay above {collateral_margin_level_min}."
    ),
}
ACCOUNT_NOT_OPEN_MESSAGE = "The margin account {account} is not open."


def transfer_in(unit: UnitOfWork, command: TransferIn) -> Decided:
    asset = unit.listed_asset(command.asset)
    check_asset_in_account(unit, command, asset.symbol)
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    pool = pool_for(unit, asset, command.account)
    stamp = unit.stamp(account, pool)
    asset = unit.asset_as_of(asset, stamp.effective_at)
    check_decimals(asset, command.quantity)
    account = load_or_register_account(unit, command, account, stamp)
    settle_interest(unit, account, stamp.effective_at)
    unit.change(account)
    account_id = account.account_id
    requested: dict[str, Any] = {
        "asset": asset.symbol,
        "requested": format_plain(command.quantity),
    }

    if account.status is AccountStatus.PENDING_VERIFICATION:
        return _reject_transfer_in(
            account,
            command.quantity,
            RejectionReason.VERIFICATION_PENDING,
            VERIFICATION_PENDING_MESSAGE,
            requested,
            stamp,
        )

    opening = decide_opening_check(
        is_first_transfer=not account.is_open,
        risk_flagged=command.risk_flagged,
        channel=command.channel,
    )
    if opening.verdict is OpeningVerdict.REJECTED:
        return _reject_transfer_in(
            account,
            command.quantity,
            RejectionReason.OPENING_RISK_CHECK,
            OPENING_RISK_MESSAGE,
            opening.context() | requested,
            stamp,
        )

    cap = _decide_cap(asset, pool, account, command.quantity)
    context = opening.context() | requested | ({} if cap is None else cap.context())
    if cap is not None and not cap.is_accepted:
        return _refuse_for_cap(unit, account, pool, cap, context, stamp)

    if opening.verdict is OpeningVerdict.PENDING_VERIFICATION:
        # Interpretation (DOMAIN.md §2): the cap is checked now (no point waiting for a
        # verification the cap would refuse anyway) and decided again when verification passes.
        account.hold_for_verification(
            transfer_request_id=command.request_id,
            asset=asset.symbol,
            quantity=command.quantity,
            decision=context,
            stamp=stamp,
        )
        return Decided(status=Status.PENDING, account=account_id, context=context)

    _credit(unit, account, pool, asset.symbol, command.quantity, command.request_id, context, stamp)
    return Decided(status=Status.ACCEPTED, account=account_id, context=context)


def complete_verification(unit: UnitOfWork, command: CompleteVerification) -> Decided:
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    pending = account.pending_transfer if account is not None else None
    if (
        account is None
        or pending is None
        or (pending["transfer_request_id"] != command.transfer_request_id)
    ):
        raise LedgerInputError(
            "transfer_request_id",
            f"no transfer {command.transfer_request_id} awaits verification on "
            f"{command.account_id}",
        )
    asset = unit.listed_asset(pending["asset"])
    pool = pool_for(unit, asset, command.account)
    stamp = unit.stamp(account, pool)
    asset = unit.asset_as_of(asset, stamp.effective_at)
    quantity: Decimal = pending["quantity"]
    unit.change(account)
    account.complete_verification(
        transfer_request_id=command.transfer_request_id, passed=command.passed, stamp=stamp
    )
    base_context: dict[str, Any] = {
        "transfer_request_id": command.transfer_request_id,
        "verification": "passed" if command.passed else "failed",
        "asset": asset.symbol,
        "requested": format_plain(quantity),
    }
    if not command.passed:
        account.cancel_pending_transfer(reason="verification_failed", stamp=stamp)
        return Decided(
            status=Status.ACCEPTED,
            account=account.account_id,
            context=base_context | {"transfer": "cancelled"},
        )
    cap = _decide_cap(asset, pool, account, quantity)
    context = base_context | ({} if cap is None else cap.context())
    if cap is not None and not cap.is_accepted:
        account.cancel_pending_transfer(reason=RejectionReason.COLLATERAL_CAP, stamp=stamp)
        return _refuse_for_cap(
            unit, account, pool, cap, context | {"transfer": "cancelled"}, stamp, record=False
        )
    _credit(
        unit,
        account,
        pool,
        asset.symbol,
        quantity,
        command.transfer_request_id,
        context | {"transfer": "completed"},
        stamp,
    )
    return Decided(
        status=Status.ACCEPTED,
        account=account.account_id,
        context=context | {"transfer": "completed"},
    )


def transfer_out(unit: UnitOfWork, command: TransferOut) -> Decided:
    asset = unit.listed_asset(command.asset)
    check_asset_in_account(unit, command, asset.symbol)
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    pool = pool_for(unit, asset, command.account)
    stamp = unit.stamp(account, pool)
    asset = unit.asset_as_of(asset, stamp.effective_at)
    check_decimals(asset, command.quantity)
    account_id = command.account_id
    context: dict[str, Any] = {"asset": asset.symbol, "requested": format_plain(command.quantity)}
    if account is None or not account.is_open:
        return account_not_open(unit, account, account_id, context, stamp, "transfer_out")
    settle_interest(unit, account, stamp.effective_at)
    decision = decide_transfer_out(
        asset=asset.symbol,
        quantity_requested=command.quantity,
        holding=account.holding(asset.symbol),
        **_level_after_transfer_out(unit, account, asset.symbol, command.quantity, stamp),
    )
    context = decision.context()
    unit.change(account)
    if not decision.is_accepted:
        reason = RejectionReason(decision.verdict.value)
        account.reject_transfer_out(
            asset=asset.symbol,
            quantity_requested=command.quantity,
            reason=reason,
            decision=context,
            stamp=stamp,
        )
        return Decided(
            status=Status.REJECTED,
            reason=reason,
            message=TRANSFER_OUT_MESSAGES[decision.verdict].format(**context),
            account=account_id,
            context=context,
        )
    account.transfer_out(
        asset=asset.symbol, quantity=command.quantity, decision=context, stamp=stamp
    )
    move_platform_total(
        unit,
        pool,
        account_id=account_id,
        movement="transfer_out",
        change=-command.quantity,
        stamp=stamp,
    )
    return Decided(status=Status.ACCEPTED, account=account_id, context=context)


def account_not_open(
    unit: UnitOfWork,
    account: MarginAccount | None,
    account_id: str,
    context: dict[str, Any],
    stamp: Stamp,
    action: str,
) -> Decided:
    """Refuse a command that needs an open account; recorded on the account if it exists."""
    status = AccountStatus.NOT_OPEN if account is None else account.status
    context = context | {"status": status.value}
    if account is not None:
        unit.change(account)
        reject = {
            "transfer_out": account.reject_transfer_out,
            "borrow": account.reject_borrow,
            "repay": account.reject_repay,
        }[action]
        reject(
            asset=context["asset"],
            quantity_requested=Decimal(context["requested"]),
            reason=RejectionReason.ACCOUNT_NOT_OPEN,
            decision=context,
            stamp=stamp,
        )
    return Decided(
        status=Status.REJECTED,
        reason=RejectionReason.ACCOUNT_NOT_OPEN,
        message=ACCOUNT_NOT_OPEN_MESSAGE.format(account=account_id),
        account=account_id,
        context=context,
    )


def _level_after_transfer_out(
    unit: UnitOfWork, account: MarginAccount, asset: str, quantity: Decimal, stamp: Stamp
) -> dict[str, Any]:
    """The level terms after the transfer, valued at the prices in force (only with debt)."""
    position = account.position()
    if not any(position.debt(a) for a in position.assets()):
        return {
            "debt_usdt": Decimal(0),
            "collateral_value_after_usdt": None,
            "collateral_margin_level_min": None,
        }
    level_kind, thresholds = level_rules(unit, account, stamp.effective_at)
    holding_after = max(account.holding(asset) - quantity, Decimal(0))
    after = position.model_copy(update={"holdings": position.holdings | {asset: holding_after}})
    market = unit.market(after.assets() | {asset}, stamp.effective_at)
    numerator, denominator = value_position(position=after, market=market).level_terms(level_kind)
    return {
        "debt_usdt": denominator,
        "collateral_value_after_usdt": numerator,
        "collateral_margin_level_min": thresholds.transfer_out_level_min,
    }


def pool_for(unit: UnitOfWork, asset: Asset, account: str) -> AssetPool | None:
    """The pool that tracks this movement, if the asset is cap-eligible and the account counts."""
    if not asset.is_cap_eligible or account.startswith("isolated:"):
        return None
    pool = unit.get(AssetPool, AssetPool.create_id(asset.symbol))
    assert pool is not None, asset.symbol  # opened at listing
    return pool


def check_decimals(asset: Asset, quantity: Decimal, field: str = "quantity") -> None:
    if decimal_places(quantity) > asset.quantity_decimals:
        raise LedgerInputError(
            field,
            f"has more than {asset.quantity_decimals} decimal places, "
            f"the precision of {asset.symbol}",
        )


def _decide_cap(
    asset: Asset, pool: AssetPool | None, account: MarginAccount, quantity: Decimal
) -> CapDecision | None:
    if pool is None or pool.cap_params is None:
        return None  # uncapped rank, no upper limit set, or an isolated account
    # The price comes from the pool (noted by every mark), like T: one consistent read.
    if pool.price_usdt is None:
        raise LedgerInputError(
            "asset", f"{asset.symbol} has no index price in force; mark_prices must come first"
        )
    return decide_cap_band(
        asset=asset.symbol,
        quantity_requested=quantity,
        platform_total=pool.platform_total,
        price_usdt=pool.price_usdt,
        params=pool.cap_params,
        quantity_decimals=asset.quantity_decimals,
        fixed_quota_usdt_override=account.fixed_quota_usdt_overrides.get(asset.symbol),
    )


def _reject_transfer_in(
    account: MarginAccount,
    quantity: Decimal,
    reason: RejectionReason,
    message: str,
    context: dict[str, Any],
    stamp: Stamp,
) -> Decided:
    account.reject_transfer_in(
        asset=context["asset"],
        quantity_requested=quantity,
        reason=reason,
        decision=context,
        stamp=stamp,
    )
    return Decided(
        status=Status.REJECTED,
        reason=reason,
        message=message,
        account=account.account_id,
        context=context,
    )


def _refuse_for_cap(
    unit: UnitOfWork,
    account: MarginAccount,
    pool: AssetPool | None,
    cap: CapDecision,
    context: dict[str, Any],
    stamp: Stamp,
    *,
    record: bool = True,
) -> Decided:
    assert pool is not None and not cap.is_accepted, cap
    pool.refuse_transfer_in(
        account_id=account.account_id,
        quantity_requested=cap.quantity_requested,
        decision=context,
        stamp=stamp,
    )
    unit.change(pool)
    message = cap_rejection_message(asset=cap.asset, quantity_max=cap.quantity_max)
    if not record:  # a cancelled pending transfer: the account recorded the cancellation
        return Decided(
            status=Status.REJECTED,
            reason=RejectionReason.COLLATERAL_CAP,
            message=message,
            account=account.account_id,
            context=context,
        )
    return _reject_transfer_in(
        account, cap.quantity_requested, RejectionReason.COLLATERAL_CAP, message, context, stamp
    )


def _credit(
    unit: UnitOfWork,
    account: MarginAccount,
    pool: AssetPool | None,
    asset: str,
    quantity: Decimal,
    transfer_request_id: str,
    context: dict[str, Any],
    stamp: Stamp,
) -> None:
    if not account.is_open:
        account.open(transfer_request_id=transfer_request_id, stamp=stamp)
    account.transfer_in(asset=asset, quantity=quantity, decision=context, stamp=stamp)
    move_platform_total(
        unit,
        pool,
        account_id=account.account_id,
        movement="transfer_in",
        change=quantity,
        stamp=stamp,
        decision=context,
    )
