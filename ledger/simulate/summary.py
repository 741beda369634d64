"""What a simulated run did, summarised from its commands and their outcomes."""

from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ledger.money import format_plain


def summarize(
    commands: Sequence[dict[str, Any]], outcomes: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """What a run did, from its commands and their outcomes (the contract's JSON)."""
    by_type: dict[str, Counter[str]] = {}
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    top_ups: Counter[str] = Counter({"topped_up": 0, "limited": 0, "blocked": 0})
    margin_calls = liquidations = with_deficit = 0
    deficit = uncovered = Decimal(0)
    fund: str | None = None
    for command, outcome in zip(commands, outcomes, strict=True):
        status = outcome["status"]
        by_type.setdefault(command["type"], Counter())[status] += 1
        statuses[status] += 1
        if status == "rejected":
            reasons[outcome["reason"]] += 1
        context = outcome.get("context", {})
        if command["type"] == "fund_insurance" and status == "accepted":
            fund = context["balance_usdt"]
        if command["type"] != "check_margins" or status != "accepted":
            continue
        margin_calls += context["margin_calls"]
        liquidations += context["liquidations"]
        top_ups.update(context["top_ups"])
        deficit += Decimal(context["deficit_usdt"])
        uncovered += Decimal(context["uncovered_usdt"])
        fund = context["insurance_fund_usdt"]
        with_deficit += sum(
            1
            for done in context["accounts"]
            if done["action"] == "liquidation" and Decimal(done["deficit_usdt"]) > 0
        )
    return {
        "commands": len(commands),
        "statuses": dict(sorted(statuses.items())),
        "by_type": {t: dict(sorted(c.items())) for t, c in sorted(by_type.items())},
        "rejection_reasons": dict(sorted(reasons.items())),
        "invalid": statuses["invalid"],
        "margin_calls": margin_calls,
        "top_ups": dict(top_ups),
        "liquidations": liquidations,
        "liquidations_with_deficit": with_deficit,
        "deficit_usdt": format_plain(deficit),
        "uncovered_usdt": format_plain(uncovered),
        "insurance_fund_usdt": fund,
    }
