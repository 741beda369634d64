"""What `ledger whatif` reports: the decisions that differ, recorded against counterfactual,
their counts, and the totals (ledger/incident/totals.py)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.domain.registry import event_name
from ledger.incident.totals import WindowTotals
from ledger.money import format_plain
from ledger.times import format_time

# What a job part's events say about its decisions (the rest follows from these).
PART_FIELDS: dict[str, tuple[str, ...]] = {
    "MarginCalled": (),
    "ToppedUp": ("asset", "quantity", "is_limited"),
    "TopUpBlocked": ("asset", "reason"),
    "Liquidated": ("remainder_usdt", "deficit_usdt"),
    "InterestCharged": ("asset", "hour", "quantity"),
    "Funded": ("source", "amount_usdt"),
    "DeficitCovered": ("deficit_usdt", "covered_usdt", "uncovered_usdt"),
}


class OutcomeBrief(BaseModel):
    """A request's outcome as far as a post-mortem compares it."""

    model_config = ConfigDict(frozen=True)

    status: str
    reason: str | None = None
    message: str | None = None
    account: str | None = None
    q_max: str | None = None
    band: str | None = None
    total: str | None = None  # T just before the decision
    requested: str | None = None


class AccountPart(BaseModel):
    """One account's part of a job, recorded and counterfactual: the actions it took."""

    model_config = ConfigDict(frozen=True)

    account: str
    recorded: list[dict[str, Any]]
    counterfactual: list[dict[str, Any]]


class Difference(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    command_type: str
    position: int  # of the recorded request (a job: its Request record)
    effective_at: str
    recorded: OutcomeBrief
    counterfactual: OutcomeBrief
    accounts: list[AccountPart] = []  # jobs: the accounts whose part differs


class WhatIfReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    since: str
    until: str
    overrides: dict[str, Any]
    prefix_steps: int  # requests and job parts decided again to reach the state at `since`
    prefix_mismatches: int  # of those, decided differently from the record (should be 0)
    requests_replayed: int  # requests of the window decided again
    overridden_requests: list[str]  # parameter commands in the window the overrides rewrote
    differences: list[Difference]
    summary: dict[str, int]
    totals: WindowTotals


def part_actions(events: list[Any]) -> list[dict[str, Any]]:
    """What a job part did, event by event, in the figures PART_FIELDS names."""
    actions = []
    for event in events:
        kind = event_name(event).rsplit(".", 1)[-1]
        if kind in PART_FIELDS:
            figures = {f: _plain(getattr(event, f)) for f in PART_FIELDS[kind]}
            actions.append({"event": kind} | figures)
    return actions


def summary_of(differences: list[Difference]) -> dict[str, int]:
    requests = [d for d in differences if not d.accounts]
    parts = [part for d in differences for part in d.accounts]

    def liquidated(actions: list[dict[str, Any]]) -> bool:
        return any(a["event"] == "Liquidated" for a in actions)

    return {
        "differences": len(differences),
        "accepted_to_rejected": sum(
            d.recorded.status == "accepted" and d.counterfactual.status != "accepted"
            for d in requests
        ),
        "rejected_to_accepted": sum(
            d.recorded.status != "accepted" and d.counterfactual.status == "accepted"
            for d in requests
        ),
        "q_max_changed": sum(
            d.recorded.status == d.counterfactual.status
            and d.recorded.q_max != d.counterfactual.q_max
            for d in requests
        ),
        "jobs_differing": len(differences) - len(requests),
        "account_parts_differing": len(parts),
        "liquidations_avoided": sum(
            liquidated(p.recorded) and not liquidated(p.counterfactual) for p in parts
        ),
        "liquidations_added": sum(
            liquidated(p.counterfactual) and not liquidated(p.recorded) for p in parts
        ),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_plain(value)
    if isinstance(value, datetime):
        return format_time(value)
    return value
