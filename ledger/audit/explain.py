"""`ledger explain`: one decision told in full — the request, the rule applied, every figure it
was decided on (from the outcome's context and the events' decisions) and what was recorded."""

import re
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.audit.plain import event_fields
from ledger.domain.registry import event_name
from ledger.domain.request import Request
from ledger.times import format_time

EVENT_ID = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(\d+)$")
COMMON_FIELDS = {
    "originator_id",
    "originator_version",
    "timestamp",
    "effective_at",
    "actor",
    "request_id",
}

PARAMETER_RULE = "a parameter change: one event, in force from its effective_at (DOMAIN.md §8)"
RULES = {
    "transfer_in": "DOMAIN.md §2 opening risk check (an account's first transfer) and §3 the "
    "platform-wide max collateral rule: band from T and U, q_max",
    "complete_verification": "DOMAIN.md §2: a flagged first transfer waits for facial "
    "verification; passed opens the account (the cap is decided then), failed cancels it",
    "transfer_out": "DOMAIN.md §4: the margin level after the transfer-out must stay above the "
    "mode's transfer-out level",
    "borrow": "DOMAIN.md §5 borrow: a borrowable asset, the minimum, the margin level after the "
    "borrow above the initial risk ratio; the first hour's interest charged at once",
    "repay": "DOMAIN.md §5 repay: interest first, then principal",
    "accrue_interest": "DOMAIN.md §5 hourly interest: once per loan and clock hour, rounded up",
    "settle_trade": "DOMAIN.md §5 trades: sell, buy and fee; auto-borrow of a shortfall and "
    "auto-repay from the proceeds; a capped asset bought moves its platform total T but is not "
    "limited by the cap (DOMAIN.md §3: trades may take T past U)",
    "switch_mode": "DOMAIN.md §6 Cross Margin mode switches: Pro eligibility, switches per day, "
    "cooling-off, the level after the switch",
    "admin_force_classic": "DOMAIN.md §6: an administrator moves an account back to Classic",
    "check_margins": "DOMAIN.md §7: margin calls (at most once per 24 h), auto top-up under the "
    "max collateral rule, liquidation at or below the liquidation level, the insurance fund",
    "fund_insurance": "DOMAIN.md §7: the insurance fund is funded by an administrator",
}


class RecordNotFound(LookupError):
    """No request with this id and no event with this id."""


class ExplainedEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    event_type: str
    position: int | None
    effective_at: str
    recorded_at: str
    fields: dict[str, Any]  # the event's own fields (decision included), as JSON


class Explanation(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    command_type: str
    rule: str
    actor: str
    effective_at: str
    recorded_at: str
    status: str
    reason: str | None
    message: str | None
    account: str | None
    command: dict[str, Any]
    figures: dict[str, Any]  # the outcome's context: every figure the decision used
    events: list[ExplainedEvent]
    events_total: int  # a job's request may have caused more events than are listed
    focus_event_id: str | None  # the event asked about, when explain was given an event id


def explain(ledger: Ledger, key: str) -> Explanation:
    """The decision behind a request id or an event id ("<aggregate uuid>:<version>")."""
    from projections.runner import ReadModels

    focus = None
    match = EVENT_ID.match(key.strip().lower())
    if match is not None:
        event = _event(ledger, UUID(match.group(1)), int(match.group(2)))
        if event is None:
            raise RecordNotFound(f"no event {key}")
        request_id, focus = event.request_id, event.event_id
    else:
        request_id = key.strip()
    request = ledger.get_aggregate(Request, Request.create_id(request_id))
    if request is None:
        raise RecordNotFound(f"no request or event with id {key!r}")
    with ReadModels(ledger) as read_models:
        read_models.catch_up(["event_index"])
        with read_models.store.transaction(commit=False) as db:
            rows = db.query(
                "SELECT position, originator_id, originator_version FROM {event_index} "
                "WHERE request_id = ? ORDER BY position",
                (request_id,),
            )
    events = []
    for position, originator_id, version in rows[: limits.EXPLAIN_EVENTS_LISTED_MAX]:
        event = _event(ledger, UUID(originator_id), int(version))
        assert event is not None, (originator_id, version)
        events.append(_explained(event, int(position)))
    outcome = request.outcome
    recorded = _event(ledger, Request.create_id(request_id), 1)  # the stamp every event shares
    return Explanation(
        request_id=request_id,
        command_type=request.command_type,
        rule=RULES.get(request.command_type, PARAMETER_RULE),
        actor=recorded.actor,
        effective_at=format_time(recorded.effective_at),
        recorded_at=format_time(recorded.timestamp),
        status=outcome["status"],
        reason=outcome.get("reason"),
        message=outcome.get("message"),
        account=outcome.get("account"),
        command=request.command,
        figures=outcome.get("context") or {},
        events=events,
        events_total=len(rows),
        focus_event_id=focus,
    )


def _event(ledger: Ledger, originator_id: UUID, version: int) -> Any:
    stored = ledger.recorder.select_events(originator_id, gt=version - 1, lte=version)
    return ledger.mapper.to_domain_event(stored[0]) if stored else None


def _explained(event: Any, position: int) -> ExplainedEvent:
    return ExplainedEvent(
        event_id=event.event_id,
        event_type=event_name(event),
        position=position,
        effective_at=format_time(event.effective_at),
        recorded_at=format_time(event.timestamp),
        fields=event_fields(event, COMMON_FIELDS),
    )
