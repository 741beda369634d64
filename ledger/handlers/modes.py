"""Cross Margin mode switches by users and by administrators (DOMAIN.md §6)."""

from typing import Any

from ledger.commands import AdminForceClassic, SwitchMode
from ledger.domain.account import MarginAccount, Mode
from ledger.errors import LedgerInputError
from ledger.handlers.interest import settle_interest
from ledger.outcomes import RejectionReason, Status
from ledger.rules.mode_switch import (
    SwitchVerdict,
    decide_mode_switch,
    switches_on_day,
)
from ledger.rules.valuation import value_position
from ledger.unit_of_work import Decided, UnitOfWork

SWITCH_MESSAGES = {
    SwitchVerdict.MODE_SWITCH_LIMIT: (
        "The mode was switched {switches_today} times today (UTC); at most "
        "{switches_per_day_max} switches a day."
    ),
    SwitchVerdict.PRO_QUIZ_NOT_PASSED: "Switching to Pro requires passing the Pro quiz.",
    SwitchVerdict.PRO_TERMS_NOT_AGREED: "Switching to Pro requires agreeing to the Pro terms.",
    SwitchVerdict.PRO_JURISDICTION_UNSUPPORTED: "Pro mode is not available in your jurisdiction.",
    SwitchVerdict.WALLET_VALUE_TOO_LOW: (
        "Switching to Pro requires a cross wallet worth more than {wallet_value_min_usdt} USDT; "
        "it is worth {total_value_usdt_after} USDT."
    ),
    SwitchVerdict.MARGIN_LEVEL: (
        "After the switch the {level_name} would be {level_after}; it must be above {level_min}."
    ),
}


def switch_mode(unit: UnitOfWork, command: SwitchMode) -> Decided:
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, "cross"))
    stamp = unit.stamp(account)
    at = stamp.effective_at
    to_mode = Mode(command.to)
    if account is None or not account.is_open:
        if account is not None:  # known but not open: the refusal is recorded on it too
            unit.change(account)
            account.reject_mode_switch(
                to_mode=to_mode,
                reason=RejectionReason.ACCOUNT_NOT_OPEN,
                decision={"to": command.to, "status": account.status.value},
                stamp=stamp,
            )
        return Decided(
            status=Status.REJECTED,
            reason=RejectionReason.ACCOUNT_NOT_OPEN,
            message=f"The margin account {command.user}:cross is not open.",
            account=f"{command.user}:cross",
            context={"to": command.to},
        )
    assert account.mode is not None
    if account.mode is to_mode:
        raise LedgerInputError("to", f"the cross account is already in {to_mode.value}")
    settle_interest(unit, account, at)
    unit.change(account)
    parameters = unit.risk_parameters(at)
    profile = unit.user_profile(command.user)
    position = account.position()
    valuation = value_position(
        position=position,
        market=unit.market(position.assets(), at, field="to"),
        open_order_loss_usdt=command.open_order_loss_usdt,
    )
    decision = decide_mode_switch(
        from_mode=account.mode.value,
        to_mode=to_mode.value,
        switches_today=switches_on_day(account.mode_switched_at, at),
        pro_quiz_passed=profile is not None and profile.pro_quiz_passed,
        pro_terms_agreed=profile is not None and profile.pro_terms_agreed,
        pro_jurisdiction_supported=profile is not None and profile.pro_jurisdiction_supported,
        valuation=valuation,
        target_thresholds=parameters.thresholds[to_mode.value],
        platform_rules=parameters.platform_rules,
    )
    context: dict[str, Any] = decision.context()
    if not decision.is_accepted:
        reason = RejectionReason(decision.verdict.value)
        account.reject_mode_switch(to_mode=to_mode, reason=reason, decision=context, stamp=stamp)
        message = SWITCH_MESSAGES[decision.verdict].format(
            **context,
            level_name=decision.level_kind.value.replace("_", " "),
            level_after=context.get(f"{decision.level_kind.value}_after"),
        )
        return Decided(
            status=Status.REJECTED,
            reason=reason,
            message=message,
            account=account.account_id,
            context=context,
        )
    account.switch_mode(to_mode=to_mode, is_forced=False, note=None, decision=context, stamp=stamp)
    return Decided(status=Status.ACCEPTED, account=account.account_id, context=context)


def admin_force_classic(unit: UnitOfWork, command: AdminForceClassic) -> Decided:
    """An administrator moves a Pro account back to Classic (DOMAIN.md §6): no level check, and
    not counted among the user's switches of the day."""
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, "cross"))
    if account is None or account.mode is not Mode.PRO:
        raise LedgerInputError("user", f"{command.user}:cross is not an account in Pro mode")
    stamp = unit.stamp(account)
    settle_interest(unit, account, stamp.effective_at)
    unit.change(account)
    context = {"from": Mode.PRO.value, "to": command.to, "note": command.note}
    account.switch_mode(
        to_mode=Mode(command.to), is_forced=True, note=command.note, decision=context, stamp=stamp
    )
    return Decided(status=Status.ACCEPTED, account=account.account_id, context=context)
