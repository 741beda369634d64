"""The counterfactual store of `ledger whatif`: a scratch store brought to the true state at T1
by the re-decision engine of `ledger verify --decisions` (ledger/audit/decisions.py), then put
under the overridden parameters.

Decisions (README "What if"):
- The state at T1 is every recorded request and job part with `effective_at <= T1`, decided
  again in log order with the parameters of their time: the same outcomes as recorded (a request
  that does not is counted in `prefix_mismatches`; `ledger verify --decisions` names it). The
  window is every request with `T1 < effective_at <= T2`, in log order. Business time never goes
  backwards for an aggregate (DOMAIN.md §8), so two requests on different sides of T1 never
  share an aggregate they change, and taking them by business time reorders nothing that
  matters.
- Overrides are recorded in the scratch store as parameter commands at T1 (`set_collateral_cap`
  with the values in force merged with the overridden ones, `set_margin_thresholds`,
  `set_platform_rules`) and hold for the whole window: a parameter change recorded inside the
  window keeps its other fields but the overridden ones keep the override's value.
- The log has no command that changes a collateral ladder, so a ladder override is applied where
  the scratch store reads an asset's listing (the store is read again from T1 on through a
  mapper that replaces the ladder); a `list_asset` inside the window is rewritten.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from ledger import limits
from ledger.application import Ledger
from ledger.audit.decisions import (
    Step,
    command_as_decided,
    decide_part_again,
    recorded_outcome,
    recorded_steps,
)
from ledger.commands import (
    CommandBase,
    CommandInvalid,
    SetCollateralCap,
    SetMarginThresholds,
    SetPlatformRules,
    parse_command,
)
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.domain.snapshots import Snapshot
from ledger.incident.overrides import OverrideInvalid, ParameterOverrides
from ledger.params import CollateralBracket
from ledger.persistence import PydanticMapper
from ledger.times import format_time

OVERRIDE_ACTOR = "admin:whatif"


class LadderMapper(PydanticMapper):
    """The ledger's mapper, but the overridden assets' listings (and snapshots) carry the
    overriding ladder."""

    def __init__(
        self, *args: Any, ladders: dict[str, tuple[CollateralBracket, ...]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.ladders = ladders
        self.asset_topic = get_topic(Asset)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event: Any = super().to_domain_event(stored_event)
        if isinstance(event, Asset.Listed) and event.symbol in self.ladders:
            return event.model_copy(update={"collateral_ladder": self.ladders[event.symbol]})
        if (
            isinstance(event, Snapshot)
            and event.topic == self.asset_topic
            and event.state.get("symbol") in self.ladders
        ):
            ladder = self.ladders[event.state["symbol"]]
            state = event.state | {"collateral_ladder": [b.model_dump(mode="json") for b in ladder]}
            return event.model_copy(update={"state": state})
        return event


class CounterfactualLedger(Ledger):
    """A Ledger on the scratch store that reads the overridden ladders."""

    name = Ledger.name  # the library names a subclass's tables after the class otherwise

    def __init__(
        self, url: str, env: dict[str, str], ladders: dict[str, tuple[CollateralBracket, ...]]
    ) -> None:
        self._ladders = ladders
        super().__init__(url, env=env)

    def construct_mapper(self) -> Mapper[UUID]:
        return LadderMapper(transcoder=self.construct_transcoder(), ladders=self._ladders)


def steps_between(
    ledger: Ledger, jobs: dict[str, CommandBase], since: datetime | None, until: datetime
) -> Iterator[Step]:
    """The recorded steps with `since < effective_at <= until` (no lower bound without since),
    in log order."""
    for step in recorded_steps(ledger, jobs):
        at = step.effective_at
        if at <= until and (since is None or at > since):
            yield step


def replay_prefix(
    ledger: Ledger,
    scratch: Ledger,
    jobs: dict[str, CommandBase],
    since: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Bring the scratch store to the true state at `since`: (steps decided, mismatches).
    Consecutive requests are decided in batches (one transaction each, as `ledger submit`
    does): each is still decided against the state the ones before it left."""
    head = ledger.recorder.max_notification_id() or 0
    decided = mismatches = 0
    run: list[tuple[Any, dict[str, Any]]] = []
    for step in steps_between(ledger, jobs, None, since):
        decided += 1
        if step.request is None:
            mismatches += _decide_run(scratch, run)
            run = []
            try:
                decide_part_again(scratch, jobs[step.request_id], step.part[0].originator_id)
            except CommandInvalid:
                mismatches += 1  # recorded, so it was valid then: not decided as recorded
        elif step.request_id not in jobs:
            data = command_as_decided(step.request)
            if data is None:
                mismatches += 1
                continue
            run.append((step.request, data))
            if len(run) == limits.BATCH_SIZE_MAX:
                mismatches += _decide_run(scratch, run)
                run = []
        if progress is not None:
            progress(step.position, head)
    return decided, mismatches + _decide_run(scratch, run)


def _decide_run(scratch: Ledger, run: list[tuple[Any, dict[str, Any]]]) -> int:
    """Decide recorded requests in one batch; how many were not decided as recorded."""
    if not run:
        return 0
    mismatches = 0
    commands = []
    for _request, data in run:
        try:
            commands.append(parse_command(data))
        except CommandInvalid:
            mismatches += 1
    results = scratch.execute_batch(commands)
    recorded = {request.request_id: request for request, _data in run}
    for result in results:
        if isinstance(result, CommandInvalid):
            mismatches += 1
            continue
        outcome = result.model_dump(mode="json", exclude={"duplicate"})
        request = recorded[str(result.request_id)]
        mismatches += outcome != recorded_outcome(request)
    return mismatches


@contextmanager
def counterfactual_store(
    ledger: Ledger, env: dict[str, str], overrides: ParameterOverrides, since: datetime
) -> Iterator[Ledger]:
    """The scratch store (already at the state at `since`) reopened under the overrides."""
    for asset in sorted(overrides.ladders):
        if ledger.get_aggregate(Asset, Asset.create_id(asset)) is None:
            raise OverrideInvalid(f"{asset}.collateral_ladder", f"{asset} is not a listed asset")
    with CounterfactualLedger(ledger.database_url, env, dict(overrides.ladders)) as scratch:
        for params, command in override_commands(scratch, overrides, since):
            try:
                scratch.execute(command)
            except CommandInvalid as invalid:
                param = ", ".join(params)
                problem = f"cannot hold at {format_time(since)}: {invalid}"
                raise OverrideInvalid(param, problem) from None
        yield scratch


def override_commands(
    scratch: Ledger, overrides: ParameterOverrides, since: datetime
) -> list[tuple[list[str], CommandBase]]:
    """The parameter commands that put the overrides in force at `since`, each with the
    PARAMs it sets."""
    stamp: dict[str, Any] = {"effective_at": since, "actor": OVERRIDE_ACTOR}
    commands: list[tuple[list[str], CommandBase]] = []
    for asset, fields in sorted(overrides.cap.items()):
        pool = scratch.get_aggregate(AssetPool, AssetPool.create_id(asset))
        first = f"{asset}.{next(iter(fields))}"
        if pool is None:
            raise OverrideInvalid(
                first, f"{asset} is not a capped asset listed by {format_time(since)}"
            )
        in_force = {} if pool.cap_params is None else pool.cap_params.model_dump()
        if "upper_limit" not in in_force | fields:
            raise OverrideInvalid(
                first, f"{asset} has no upper limit in force then: set {asset}.upper_limit too"
            )
        params = [f"{asset}.{field}" for field in fields]
        commands.append(
            (
                params,
                SetCollateralCap(
                    type="set_collateral_cap",
                    request_id=f"whatif.{asset}.cap",
                    asset=asset,
                    **(in_force | fields),
                    **stamp,
                ),
            )
        )
    for mode, fields in sorted(overrides.thresholds.items()):
        commands.append(
            (
                [f"{mode}.{field}" for field in fields],
                SetMarginThresholds(
                    type="set_margin_thresholds",
                    request_id=f"whatif.{mode}.thresholds",
                    mode=mode,  # one of MODES, checked when parsed
                    **fields,
                    **stamp,
                ),
            )
        )
    if overrides.platform_rules:
        commands.append(
            (
                list(overrides.platform_rules),
                SetPlatformRules(
                    type="set_platform_rules",
                    request_id="whatif.platform_rules",
                    **overrides.platform_rules,
                    **stamp,
                ),
            )
        )
    return commands


def rewritten(data: dict[str, Any], overrides: ParameterOverrides) -> dict[str, Any]:
    """A recorded parameter command with the overridden fields replaced: the override holds
    over parameter changes recorded inside the window."""
    kind = data.get("type")
    if kind == "set_collateral_cap" and data.get("asset") in overrides.cap:
        return data | {k: str(v) for k, v in overrides.cap[data["asset"]].items()}
    if kind == "list_asset" and data.get("asset") in overrides.ladders:
        ladder = overrides.ladders[data["asset"]]
        return data | {"collateral_ladder": [b.model_dump(mode="json") for b in ladder]}
    if kind == "set_margin_thresholds" and data.get("mode") in overrides.thresholds:
        return data | {k: str(v) for k, v in overrides.thresholds[data["mode"]].items()}
    if kind == "set_platform_rules" and overrides.platform_rules:
        return data | {
            k: v if isinstance(v, int) else str(v) for k, v in overrides.platform_rules.items()
        }
    return data
