"""`ledger verify --snapshots`: every stored snapshot against a replay of its aggregate's events.

Snapshots are a cache of aggregate state, written after the events and outside the hash chain:
a snapshot altered in the database would be loaded instead of the history it stands for. This
check rebuilds each snapshotted version from the events alone and compares the state.
"""

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.persistence import raw_rows, raw_table


class SnapshotReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    is_right: bool
    snapshots_checked: int
    aggregate_id: str | None  # the first snapshot that differs from its replay
    version: int | None
    problem: str | None


def verify_snapshots(ledger: Ledger) -> SnapshotReport:
    checked = 0
    for stored in _stored_snapshots(ledger):
        snapshot: Any = ledger.mapper.to_domain_event(stored)
        try:
            restored = snapshot.mutate(None)
        except (AssertionError, ValueError) as exc:  # a state the model refuses
            return _wrong(checked, stored, f"the snapshot cannot be loaded: {exc}")
        replayed = _replay(ledger, stored.originator_id, stored.originator_version)
        if replayed is None:
            return _wrong(checked, stored, "no events for this version: a snapshot of nothing")
        differing = sorted(
            name
            for name in set(vars(restored)) | set(vars(replayed))
            if name != "_pending_events" and vars(restored).get(name) != vars(replayed).get(name)
        )
        if differing:
            return _wrong(checked, stored, f"differs from the replay in {', '.join(differing)}")
        checked += 1
    return SnapshotReport(
        is_right=True, snapshots_checked=checked, aggregate_id=None, version=None, problem=None
    )


def _replay(ledger: Ledger, originator_id: Any, version: int) -> Any:
    aggregate = None
    done = 0
    while done < version:
        batch = ledger.recorder.select_events(
            originator_id, gt=done, lte=version, limit=limits.PROJECTION_BATCH_SIZE
        )
        if not batch:
            return None
        for stored in batch:
            event: Any = ledger.mapper.to_domain_event(stored)
            aggregate = event.mutate(aggregate)
            done = event.originator_version
    return aggregate


def _stored_snapshots(ledger: Ledger) -> Iterator[StoredEvent]:
    if ledger.snapshots is None:
        return
    recorder: Any = ledger.snapshots.recorder
    rows = raw_rows(
        recorder,
        f"SELECT originator_id, originator_version, topic, state FROM {raw_table(recorder)} "
        "ORDER BY originator_id, originator_version",
    )
    for originator_id, version, topic, state in rows:
        yield StoredEvent(
            originator_id=originator_id if isinstance(originator_id, UUID) else UUID(originator_id),
            originator_version=int(version),
            topic=str(topic),
            state=state.encode() if isinstance(state, str) else bytes(state),
        )


def _wrong(checked: int, stored: StoredEvent, problem: str) -> SnapshotReport:
    return SnapshotReport(
        is_right=False,
        snapshots_checked=checked,
        aggregate_id=str(stored.originator_id),
        version=stored.originator_version,
        problem=problem,
    )
