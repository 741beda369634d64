"""`ledger whatif`: every recorded request of a window decided again under changed parameters,
from the true state at its start, in a scratch store that never touches the real log; the
decisions that differ, and what that does to the platform totals and the insurance fund.

How the scratch store is built and how overrides hold: ledger/incident/counterfactual.py.
A request differs when its status, reason or `q_max` differs; a job (`check_margins`,
`accrue_interest`) differs when one of its accounts' parts does (margin call, top-up and its
quantity or block, liquidation and its deficit, fund movements, interest charges), including an
account the recorded run left alone and that the counterfactual one acts on.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.application import Ledger
from ledger.audit.decisions import (
    Step,
    command_as_decided,
    decide_again,
    decide_part_again,
    job_commands,
    recorded_outcome,
)
from ledger.commands import CommandBase, CommandInvalid
from ledger.domain.account import MarginAccount
from ledger.incident.counterfactual import (
    counterfactual_store,
    replay_prefix,
    rewritten,
    steps_between,
)
from ledger.incident.overrides import ParameterOverrides
from ledger.incident.totals import window_totals
from ledger.incident.whatif_report import (
    AccountPart,
    Difference,
    OutcomeBrief,
    WhatIfReport,
    part_actions,
    summary_of,
)
from ledger.times import format_time

DECISION_KEYS = ("status", "reason", "q_max")  # a request differs when one of these does


def what_if(
    ledger: Ledger,
    *,
    since: datetime,
    until: datetime,
    overrides: ParameterOverrides,
    progress: Callable[[int, int], None] | None = None,
) -> WhatIfReport:
    """Decide the window (since, until] again under `overrides`; the real log is only read.
    Raises OverrideInvalid when an override cannot hold at `since`."""
    from ledger.audit.reconcile import scratch_env

    assert since <= until, (since, until)
    jobs = job_commands(ledger)
    with scratch_env(ledger) as env:
        with Ledger(ledger.database_url, env=env) as scratch:
            prefix_steps, prefix_mismatches = replay_prefix(ledger, scratch, jobs, since, progress)
        with counterfactual_store(ledger, env, overrides, since) as counterfactual:
            window = _Window(ledger, counterfactual, jobs, overrides)
            window.run(since, until, progress)
            totals = window_totals(ledger, counterfactual, since, until)
    return WhatIfReport(
        since=format_time(since),
        until=format_time(until),
        overrides=overrides.described(),
        prefix_steps=prefix_steps,
        prefix_mismatches=prefix_mismatches,
        requests_replayed=window.replayed,
        overridden_requests=window.overridden,
        differences=window.differences,
        summary=summary_of(window.differences),
        totals=totals,
    )


class _Window:
    """The window's requests decided again on the counterfactual store, in log order."""

    def __init__(
        self,
        ledger: Ledger,
        counterfactual: Ledger,
        jobs: dict[str, CommandBase],
        overrides: ParameterOverrides,
    ) -> None:
        self.ledger = ledger
        self.counterfactual = counterfactual
        self.jobs = jobs
        self.overrides = overrides
        self.replayed = 0
        self.overridden: list[str] = []
        self.differences: list[Difference] = []
        # per job request id: account id -> (recorded actions, counterfactual actions)
        self.parts: dict[str, dict[UUID, tuple[list[dict[str, Any]], list[dict[str, Any]]]]] = {}

    def run(
        self, since: datetime, until: datetime, progress: Callable[[int, int], None] | None
    ) -> None:
        head = self.ledger.recorder.max_notification_id() or 0
        for step in steps_between(self.ledger, self.jobs, since, until):
            if step.request is None:
                self._part(step)
            elif step.request_id in self.jobs:
                self._job(step)
            else:
                self._request(step)
            if progress is not None:
                progress(step.position, head)

    def _part(self, step: Step) -> None:
        account_id = step.part[0].originator_id
        decided = self._decide_part(self.jobs[step.request_id], account_id)
        self.parts.setdefault(step.request_id, {})[account_id] = (part_actions(step.part), decided)

    def _decide_part(self, command: CommandBase, account_id: UUID) -> list[dict[str, Any]]:
        try:
            return part_actions(decide_part_again(self.counterfactual, command, account_id))
        except CommandInvalid as invalid:
            return [{"event": "invalid", "problem": str(invalid)}]

    def _job(self, step: Step) -> None:
        """The job's Request: its parts were decided again where they were saved; now the
        accounts the recorded run left alone, which the counterfactual run may act on."""
        from ledger.jobs import borrower_ids

        self.replayed += 1
        parts = self.parts.pop(step.request_id, {})
        command = self.jobs[step.request_id]
        for account_id in borrower_ids(self.counterfactual):
            if account_id not in parts:
                decided = self._decide_part(command, account_id)
                if decided:
                    parts[account_id] = ([], decided)
        differing = [
            AccountPart(
                account=self._account_name(account_id), recorded=recorded, counterfactual=now
            )
            for account_id, (recorded, now) in parts.items()
            if recorded != now
        ]
        if not differing:
            return
        assert step.request is not None
        recorded_brief = _brief(recorded_outcome(step.request))
        self.differences.append(
            Difference(
                request_id=step.request_id,
                command_type=step.request.command_type,
                position=step.position,
                effective_at=format_time(step.effective_at),
                recorded=recorded_brief,
                counterfactual=recorded_brief,  # the job itself runs either way
                accounts=sorted(differing, key=lambda part: part.account),
            )
        )

    def _request(self, step: Step) -> None:
        assert step.request is not None
        self.replayed += 1
        data = command_as_decided(step.request)
        if data is None:
            now = OutcomeBrief(status="invalid", message="no effective_at recorded")
        else:
            changed = rewritten(data, self.overrides)
            if changed != data:
                self.overridden.append(step.request_id)
            try:
                outcome = decide_again(self.counterfactual, changed)
                now = _brief(outcome.model_dump(mode="json"))
            except CommandInvalid as invalid:
                now = OutcomeBrief(status="invalid", message=str(invalid))
        was = _brief(recorded_outcome(step.request))
        if _decision(was) != _decision(now):
            self.differences.append(
                Difference(
                    request_id=step.request_id,
                    command_type=step.request.command_type,
                    position=step.position,
                    effective_at=format_time(step.effective_at),
                    recorded=was,
                    counterfactual=now,
                )
            )

    def _account_name(self, account_id: UUID) -> str:
        account = self.counterfactual.get_aggregate(MarginAccount, account_id)
        if account is None:
            account = self.ledger.get_aggregate(MarginAccount, account_id)
        return str(account_id) if account is None else str(account.account_id)


def _brief(outcome: dict[str, Any]) -> OutcomeBrief:
    context = outcome.get("context") or {}

    def figure(key: str) -> str | None:
        value = context.get(key)
        return None if value is None else str(value)

    return OutcomeBrief(
        status=str(outcome["status"]),
        reason=outcome.get("reason"),
        message=outcome.get("message"),
        account=outcome.get("account"),
        q_max=figure("q_max"),
        band=figure("band"),
        total=figure("total"),
        requested=figure("requested"),
    )


def _decision(brief: OutcomeBrief) -> tuple[Any, ...]:
    return tuple(getattr(brief, key) for key in DECISION_KEYS)
