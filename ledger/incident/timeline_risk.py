"""The timeline lines of a margin account's worst hours and of the insurance fund: margin
calls, auto top-ups (limited or blocked), liquidations with their deficits, the fund's movements
(DOMAIN.md §7)."""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ledger.domain.account import MarginAccount
from ledger.domain.insurance_fund import InsuranceFund
from ledger.incident.timeline_kinds import (
    Line,
    Subject,
    TimelineKind,
    cap_figures,
    cap_text,
    plain,
    quantities,
)
from ledger.money import format_plain, quantize_down


def _level(decision: Mapping[str, Any]) -> tuple[str, str | None]:
    """The margin level a risk decision was taken on: (its name, its value before)."""
    kind = str(decision.get("level_kind", "margin_level"))
    return kind, decision.get(f"{kind}_before")


def _level_text(kind: str, level: str | None) -> str:
    """The level for people: 4 decimals, rounded down (the figures keep every digit)."""
    shown = "-" if level is None else format_plain(quantize_down(Decimal(level), 4))
    return f"{kind.replace('_', ' ')} {shown}"


def margin_called(e: MarginAccount.MarginCalled, subject: Subject) -> Line:
    kind, level = _level(e.decision)
    call, liquidation = e.decision.get("margin_call_level"), e.decision.get("liquidation_level")
    return Line(
        kind=TimelineKind.MARGIN_CALL,
        account=subject.account,
        asset=None,
        figures={
            "level_kind": kind,
            "level": level,
            "margin_call_level": call,
            "liquidation_level": liquidation,
            "debt_usdt": e.decision.get("debt_usdt_before"),
        },
        text=f"{subject.account} margin call: {_level_text(kind, level)} "
        f"(call at or below {call}, liquidation at or below {liquidation})",
    )


def topped_up(e: MarginAccount.ToppedUp, subject: Subject) -> Line:
    needed = e.decision.get("needed")
    limited = f", limited (needed {needed})" if e.is_limited else ""
    return Line(
        kind=TimelineKind.TOP_UP,
        account=subject.account,
        asset=e.asset,
        figures={
            "quantity": plain(e.quantity),
            "needed": needed,
            "is_limited": e.is_limited,
            "holding_after": plain(e.holding_after),
        }
        | cap_figures(e.decision),
        text=f"{subject.account} auto top-up of {plain(e.quantity)} {e.asset}{limited}"
        f"{cap_text(e.decision)}",
    )


def top_up_blocked(e: MarginAccount.TopUpBlocked, subject: Subject) -> Line:
    return Line(
        kind=TimelineKind.TOP_UP_BLOCKED,
        account=subject.account,
        asset=e.asset,
        figures={"reason": e.reason, "needed": e.decision.get("needed")} | cap_figures(e.decision),
        text=f"{subject.account} auto top-up of {e.asset} blocked: {e.reason}"
        f"{cap_text(e.decision)}",
    )


def liquidated(e: MarginAccount.Liquidated, subject: Subject) -> Line:
    kind, level = _level(e.decision)
    fee = e.decision.get("fee_usdt")
    uncovered = e.decision.get("uncovered_usdt")
    deficit = (
        f"; deficit {plain(e.deficit_usdt)} USDT ({uncovered} uncovered)"
        if e.deficit_usdt
        else f"; remainder {plain(e.remainder_usdt)} USDT, fee {fee}"
    )
    return Line(
        kind=TimelineKind.LIQUIDATION,
        account=subject.account,
        asset=None,
        figures={
            "level_kind": kind,
            "level": level,
            "sold": quantities(e.sold),
            "proceeds_usdt": e.decision.get("proceeds_usdt"),
            "debt_usdt": e.decision.get("debt_usdt"),
            "fee_usdt": fee,
            "remainder_usdt": plain(e.remainder_usdt),
            "deficit_usdt": plain(e.deficit_usdt),
            "uncovered_usdt": uncovered,
            "fund_balance_after_usdt": e.decision.get("fund_balance_after_usdt"),
        },
        text=f"{subject.account} liquidated at {_level_text(kind, level)}: sold "
        f"{quantities(e.sold)}{deficit}",
    )


def funded(e: InsuranceFund.Funded, subject: Subject) -> Line:
    source = e.source if e.account_id is None else f"{e.source} of {e.account_id}"
    return Line(
        kind=TimelineKind.INSURANCE_FUND,
        account=e.account_id,
        asset="USDT",
        figures={
            "movement": "funded",
            "source": e.source,
            "amount_usdt": plain(e.amount_usdt),
            "balance_after_usdt": plain(e.balance_after_usdt),
        },
        text=f"insurance fund +{plain(e.amount_usdt)} USDT ({source}), balance "
        f"{plain(e.balance_after_usdt)}",
    )


def deficit_covered(e: InsuranceFund.DeficitCovered, subject: Subject) -> Line:
    return Line(
        kind=TimelineKind.INSURANCE_FUND,
        account=e.account_id,
        asset="USDT",
        figures={
            "movement": "deficit_covered",
            "deficit_usdt": plain(e.deficit_usdt),
            "covered_usdt": plain(e.covered_usdt),
            "uncovered_usdt": plain(e.uncovered_usdt),
            "balance_after_usdt": plain(e.balance_after_usdt),
        },
        text=f"insurance fund paid {plain(e.covered_usdt)} of {e.account_id}'s "
        f"{plain(e.deficit_usdt)} USDT deficit ({plain(e.uncovered_usdt)} uncovered), balance "
        f"{plain(e.balance_after_usdt)}",
    )
