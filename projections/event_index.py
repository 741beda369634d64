"""The event index: one row per event, so that "which version of this aggregate was in force at
time T, or at log position N" is an indexed lookup, not a scan of the aggregate's history."""

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from eventsourcing.utils import get_topic

from projections.sql import Db, Table, time_key
from projections.store import Positioned, ReadModel

EVENT_INDEX = Table(
    name="event_index",
    columns=(
        ("position", "int"),
        ("event_id", "text"),
        ("originator_id", "text"),
        ("originator_version", "int"),
        ("event_type", "text"),
        ("topic", "text"),
        ("effective_at", "text"),
        ("recorded_at", "text"),
        ("request_id", "text"),
        ("actor", "text"),
    ),
    primary_key=("position",),
    indexes=(("originator_id", "effective_at"), ("originator_id", "position"), ("request_id",)),
)


class EventIndex(ReadModel):
    name = "event_index"
    description = "every event's position, aggregate, version, type, times and request"
    tables: ClassVar[tuple[Table, ...]] = (EVENT_INDEX,)

    def apply(self, db: Db, events: Sequence[Positioned]) -> None:
        db.upsert(
            EVENT_INDEX,
            (
                (
                    position,
                    event.event_id,
                    str(event.originator_id),
                    event.originator_version,
                    type(event).__name__,
                    get_topic(type(event)),
                    time_key(event.effective_at),
                    time_key(event.timestamp),
                    event.request_id,
                    event.actor,
                )
                for position, event in events
            ),
            update=(),
        )


def version_at(
    db: Db, originator_id: UUID, *, at: datetime | None = None, position: int | None = None
) -> int | None:
    """The aggregate's last version at business time `at` or log position `position`.

    Business time never goes backwards within an aggregate (DOMAIN.md §8), so its history as of
    a time is a prefix of its events.
    """
    assert (at is None) != (position is None), (at, position)
    if at is not None:
        rows = db.query(
            "SELECT MAX(originator_version) FROM {event_index} "
            "WHERE originator_id = ? AND effective_at <= ?",
            (str(originator_id), time_key(at)),
        )
    else:
        rows = db.query(
            "SELECT MAX(originator_version) FROM {event_index} "
            "WHERE originator_id = ? AND position <= ?",
            (str(originator_id), position),
        )
    value = rows[0][0] if rows else None
    return None if value is None else int(value)
