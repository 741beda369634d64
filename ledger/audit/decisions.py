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

The re-decision engine below (`recorded_steps`, `decide_again`, `decide_part_again`) is shared
with `ledger whatif` (ledger/incident/counterfactual.py), which runs it over a window under
changed parameters.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

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
from ledger.outcomes import Outcome

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
    jobs = job_commands(ledger)
    checked = 0
    with scratch_env(ledger) as env, Ledger(ledger.database_url, env=env) as scratch:
        for step in recorded_steps(ledger, jobs):
            if step.request is None:  # one account's part of a job, decided where it was saved
                command = jobs[step.part[0].request_id]
                decided = decide_part_again(scratch, command, step.part[0].originator_id)
                problem = _part_problem(command, step.part, decided)
                if problem is not None:
                    return _wrong(ledger, checked, step.position, step.part[0], None, problem)
                continue
            request = step.request
            if request.request_id in jobs:
                checked += 1  # its per-account parts were decided again above; the summary
                continue  # counts what one run did, which the log cannot tell apart
            command_data = command_as_decided(request)
            if command_data is None:
                problem = "the recorded outcome does not say when it was decided (effective_at)"
                return _wrong(ledger, checked, step.position, request, None, problem)
            try:
                outcome = decide_again(scratch, command_data)
            except CommandInvalid as exc:
                problem = f"now refused as invalid: {exc}"
                return _wrong(ledger, checked, step.position, request, None, problem)
            decided_outcome = outcome.model_dump(mode="json", exclude={"duplicate"})
            recorded = recorded_outcome(request)
            if decided_outcome != recorded:
                problem = _first_difference(recorded, decided_outcome)
                return _wrong(ledger, checked, step.position, request, decided_outcome, problem)
            checked += 1
            if progress is not None and checked % limits.PROJECTION_BATCH_SIZE == 0:
                progress(step.position, head)
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


# --- the re-decision engine (shared with `ledger whatif`, ledger/incident/counterfactual.py) ---


@dataclass(frozen=True)
class Step:
    """One decision of recorded history, in log order: a request (`request` set, `part` empty)
    or one account's part of a job (`request` None, `part` its recorded events)."""

    position: int
    request: Any | None  # the Request.Recorded event
    part: list[Any]

    @property
    def effective_at(self) -> datetime:
        """Business time: every event of a request or a job part shares its stamp."""
        first = self.request if self.request is not None else self.part[0]
        effective_at: datetime = first.effective_at
        return effective_at

    @property
    def request_id(self) -> str:
        first = self.request if self.request is not None else self.part[0]
        request_id: str = first.request_id
        return request_id


def job_commands(ledger: Ledger) -> dict[str, CommandBase]:
    """The jobs' commands by request id: their per-account parts come before their Request."""
    found = {}
    for _position, request in _requests(ledger):
        if request.command_type in JOB_TYPES:
            data = command_as_decided(request)
            if data is not None:
                found[request.request_id] = parse_command(data)
    return found


def recorded_steps(ledger: Ledger, jobs: dict[str, CommandBase]) -> Iterator[Step]:
    """In log order: every request (at its Request's position), and every per-account part of
    a job (at the position of its first event)."""
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
            yield Step(position=part_position, request=None, part=part)
            part = []
        if is_job_part:
            if not part:
                part_position = position
            part.append(event)
        elif isinstance(event, Request.Recorded):
            yield Step(position=position, request=event, part=[])
    if part:
        yield Step(position=part_position, request=None, part=part)


def decide_again(scratch: Ledger, command_data: dict[str, Any]) -> Outcome:
    """A recorded command decided again on the scratch store; CommandInvalid if now refused."""
    return scratch.execute(parse_command(command_data))


def decide_part_again(scratch: Ledger, command: CommandBase, account_id: UUID) -> list[Any]:
    """One account's part of a job decided again on the scratch store: the events it records
    (none when the job finds nothing to do on that account)."""
    before = scratch.recorder.max_notification_id() or 0
    for _id, part in on_accounts(
        scratch, command, [account_id], account_act(command), stop_on_invalid=True
    ):
        if isinstance(part, CommandInvalid):
            raise part
    return [
        scratch.mapper.to_domain_event(n)
        for n in scratch.recorder.select_notifications(
            start=before, limit=limits.PROJECTION_BATCH_SIZE, inclusive_of_start=False
        )
    ]


def command_as_decided(event: Any) -> dict[str, Any] | None:
    """The command as recorded, with the business time it was decided at when it gave none;
    None when the record does not say (every outcome the ledger writes does)."""
    data = dict(event.command)
    if data.get("effective_at") is None:
        context = event.outcome.get("context")
        if not isinstance(context, dict) or "effective_at" not in context:
            return None
        data["effective_at"] = context["effective_at"]
    return data


def recorded_outcome(event: Any) -> dict[str, Any]:
    """A Request's recorded outcome as `decide_again`'s outcome dumps (no duplicate flag)."""
    return {k: v for k, v in event.outcome.items() if k != "duplicate"}


def facts(events: list[Any]) -> list[dict[str, Any]]:
    return [
        {"type": event_name(e), **e.model_dump(mode="json", exclude={"timestamp"})} for e in events
    ]


def _part_problem(command: CommandBase, recorded: list[Any], decided: list[Any]) -> str | None:
    """What differs between a job part's recorded and decided events, or None."""
    account = recorded[0]
    if not isinstance(account, MarginAccount.Event):
        return "a job's part that does not start with the account's event"
    recorded_facts, decided_facts = facts(recorded), facts(decided)
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
