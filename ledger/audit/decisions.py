"""`ledger verify --decisions`: re-execution verification.

Every recorded request is decided again, in log order, by today's rules against a scratch store
that has seen exactly the requests before it: the same parameters, prices and state as at its
time. Its outcome (accepted or rejected, reason, message, every figure of its context such as
band, T, U, q_max, amounts, and the events it recorded) must be what was recorded. A job (the
interest accrual, the risk sweep) saves each account's part on its own, before its Request and
maybe between other requests: each part is decided again where it was saved and its events
compared (the job's summary counts what one run did, which the log cannot tell apart). The hash
chain proves the log intact; this proves the decisions in it right. The cap invariant over
history is checked on the way: no capped pool's T ever passed its upper limit through a
transfer-in or a top-up.
"""

import json
from collections.abc import Callable, Iterator
from typing import Any

from eventsourcing.utils import get_topic
from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.commands import CommandBase, CommandInvalid, parse_command
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.domain.registry import event_name
from ledger.domain.request import Request
from ledger.jobs import account_act, on_accounts
from ledger.log import log_events
from ledger.money import format_plain

JOB_TYPES = ("accrue_interest", "check_margins")

# The movements the max collateral rule governs (DOMAIN.md §3, §7): transfer-ins and top-ups.
CAPPED_MOVEMENTS = ("transfer_in", "auto_top_up")


class DecisionReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    is_right: bool
    requests_checked: int
    first_bad_position: int | None  # the position of the first request decided differently
    request_id: str | None
    problem: str | None
    recorded: dict[str, Any] | None = None  # that request's recorded outcome
    decided: dict[str, Any] | None = None  # and what the rules decide now
    cap_overshoots: list[dict[str, str]]  # capped pools whose T passed U, with the position


def verify_decisions(
    ledger: Ledger, *, progress: Callable[[int, int], None] | None = None
) -> DecisionReport:
    from ledger.audit.reconcile import scratch_env

    head = ledger.recorder.max_notification_id() or 0
    jobs = _job_commands(ledger)
    checked = 0
    with scratch_env(ledger) as env, Ledger(ledger.database_url, env=env) as scratch:
        for position, events, request in _transactions(ledger, jobs):
            if request is None:  # one account's part of a job, decided where it was saved
                problem = _redo_job_part(scratch, jobs[events[0].request_id], events)
                if problem is not None:
                    return _wrong(ledger, checked, position, events[0], None, problem)
                continue
            if request.request_id in jobs:
                checked += 1  # its per-account parts were decided again above; the summary
                continue  # counts what one run did, which the log cannot tell apart
            command_data = _command_as_decided(request)
            if command_data is None:
                problem = "the recorded outcome does not say when it was decided (effective_at)"
                return _wrong(ledger, checked, position, request, None, problem)
            try:
                outcome = scratch.execute(parse_command(command_data))
            except CommandInvalid as exc:
                problem = f"now refused as invalid: {exc}"
                return _wrong(ledger, checked, position, request, None, problem)
            decided = outcome.model_dump(mode="json", exclude={"duplicate"})
            recorded = {k: v for k, v in request.outcome.items() if k != "duplicate"}
            if decided != recorded:
                problem = _first_difference(recorded, decided)
                return _wrong(ledger, checked, position, request, decided, problem)
            checked += 1
            if progress is not None and checked % limits.PROJECTION_BATCH_SIZE == 0:
                progress(position, head)
    overshoots = cap_overshoots(ledger)
    first = overshoots[0] if overshoots else None
    return DecisionReport(
        is_right=not overshoots,
        requests_checked=checked,
        first_bad_position=None if first is None else int(first["position"]),
        request_id=None,
        problem=None
        if first is None
        else f"{first['event_id']} took T to {first['platform_total_after']}, past U "
        f"{first['upper_limit']}",
        cap_overshoots=overshoots,
    )


def _job_commands(ledger: Ledger) -> dict[str, CommandBase]:
    """The jobs' commands by request id: their per-account parts come before their Request."""
    found = {}
    for _position, request in _requests(ledger):
        if request.command_type in JOB_TYPES:
            data = _command_as_decided(request)
            if data is not None:
                found[request.request_id] = parse_command(data)
    return found


def _transactions(
    ledger: Ledger, jobs: dict[str, CommandBase]
) -> Iterator[tuple[int, list[Any], Any]]:
    """In log order: (position, [], Request) for every request, and (position of its first
    event, its events, None) for every per-account part of a job."""
    part: list[Any] = []
    part_position = 0
    for position, event in log_events(ledger):
        is_job_part = event.request_id in jobs and not isinstance(event, Request.Recorded)
        starts_part = isinstance(event, MarginAccount.Event) and (
            not part
            or part[0].originator_id != event.originator_id
            or part[0].request_id != event.request_id
        )
        if part and (not is_job_part or starts_part):
            yield part_position, part, None
            part = []
        if is_job_part:
            if not part:
                part_position = position
            part.append(event)
        elif isinstance(event, Request.Recorded):
            yield position, [], event
    if part:
        yield part_position, part, None


def _redo_job_part(scratch: Ledger, command: CommandBase, recorded: list[Any]) -> str | None:
    """Decide one account's part of a job again; what differs, or None."""
    account = recorded[0]
    if not isinstance(account, MarginAccount.Event):
        return "a job's part that does not start with the account's event"
    before = scratch.recorder.max_notification_id() or 0
    for _id, part in on_accounts(
        scratch, command, [account.originator_id], account_act(command), stop_on_invalid=True
    ):
        if isinstance(part, CommandInvalid):
            raise part
    decided = [
        scratch.mapper.to_domain_event(n)
        for n in scratch.recorder.select_notifications(
            start=before, limit=limits.PROJECTION_BATCH_SIZE, inclusive_of_start=False
        )
    ]
    recorded_facts, decided_facts = _facts(recorded), _facts(decided)
    if recorded_facts == decided_facts:
        return None
    for index, (was, now) in enumerate(zip(recorded_facts, decided_facts, strict=False)):
        if was != now:
            return (
                f"{command.command_type} on {account.originator_id}, event {index + 1}: "
                f"recorded {json.dumps(was)}, decided now {json.dumps(now)}"
            )
    return (
        f"{command.command_type} on {account.originator_id}: recorded "
        f"{len(recorded_facts)} events, decided now {len(decided_facts)}"
    )


def _facts(events: list[Any]) -> list[dict[str, Any]]:
    return [
        {"type": event_name(e), **e.model_dump(mode="json", exclude={"timestamp"})} for e in events
    ]


def _command_as_decided(event: Any) -> dict[str, Any] | None:
    """The command as recorded, with the business time it was decided at when it gave none;
    None when the record does not say (every outcome the ledger writes does)."""
    data = dict(event.command)
    if data.get("effective_at") is None:
        context = event.outcome.get("context")
        if not isinstance(context, dict) or "effective_at" not in context:
            return None
        data["effective_at"] = context["effective_at"]
    return data


def _requests(ledger: Ledger) -> Iterator[tuple[int, Any]]:
    return log_events(ledger, topics=[get_topic(Request.Recorded)])


def cap_overshoots(ledger: Ledger) -> list[dict[str, str]]:
    """Every increase of a capped pool by a transfer-in or top-up that left T above U."""
    topics = [get_topic(AssetPool.CapSet), get_topic(AssetPool.TotalIncreased)]
    upper_limits: dict[Any, Any] = {}
    found = []
    for position, event in log_events(ledger, topics=topics):
        if isinstance(event, AssetPool.CapSet):
            upper_limits[event.originator_id] = event.cap_params.upper_limit
            continue
        limit = upper_limits.get(event.originator_id)
        if (
            limit is not None
            and event.movement in CAPPED_MOVEMENTS
            and event.platform_total_after > limit
        ):
            found.append(
                {
                    "position": str(position),
                    "event_id": event.event_id,
                    "account": event.account_id,
                    "platform_total_after": format_plain(event.platform_total_after),
                    "upper_limit": format_plain(limit),
                }
            )
    return found


def _wrong(
    ledger: Ledger,
    checked: int,
    position: int,
    event: Any,
    decided: dict[str, Any] | None,
    problem: str,
) -> DecisionReport:
    """The report of the first request decided differently (the cap check still runs)."""
    return DecisionReport(
        is_right=False,
        requests_checked=checked,
        first_bad_position=position,
        request_id=event.request_id,
        problem=problem,
        recorded=event.outcome,
        decided=decided,
        cap_overshoots=cap_overshoots(ledger),
    )


def _first_difference(recorded: dict[str, Any], decided: dict[str, Any]) -> str:
    for key in sorted(set(recorded) | set(decided)):
        if recorded.get(key) != decided.get(key):
            if isinstance(recorded.get(key), dict) and isinstance(decided.get(key), dict):
                inner = _first_difference(recorded[key], decided[key])
                return f"{key}.{inner}"
            return (
                f"{key}: recorded {json.dumps(recorded.get(key))}, "
                f"decided now {json.dumps(decided.get(key))}"
            )
    return "the outcomes differ"
