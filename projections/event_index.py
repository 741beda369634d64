"""The event index: one row per event, so that "which version of this aggregate was in force at
time T, or at log position N" is an indexed lookup, not a scan of the aggregate's history."""

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from projections.events import Record, time_key_of, type_name
from projections.sql import Db, Table, time_key
from projections.store import ReadModel

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

    def apply(self, db: Db, records: Sequence[Record]) -> None:
        if db.bulk and db.events is not None and db.is_postgres:
            _fill_in_sql(db, records[0].position, records[-1].position)
            return
        rows = []
        for record in records:
            data = record.data
            originator_id = data["originator_id"]
            version = data["originator_version"]
            rows.append(
                (
                    record.position,
                    f"{originator_id}:{version}",
                    originator_id,
                    version,
                    type_name(record.topic),
                    record.topic,
                    record.effective_key,
                    time_key_of(data["timestamp"]),
                    data["request_id"],
                    data["actor"],
                )
            )
        db.append(EVENT_INDEX, rows)


# A PostgreSQL rebuild fills the index in SQL, from the stored JSON: the server's work, done on
# another core while Python applies the other models. (SQLite's JSON functions parse each
# state again per field: slower there than Python.)


def _postgres_time_key(text: str) -> str:
    utc = f"({text})::timestamptz AT TIME ZONE 'UTC'"
    return f"""to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _postgres_fill(events: str, position: str) -> str:
    effective_at = _postgres_time_key("s ->> 'effective_at'")
    recorded_at = _postgres_time_key("s ->> 'timestamp'")
    # The class name is the topic's last dotted part.
    return (
        f"INSERT INTO {{event_index}} SELECT {position}, "
        "(s ->> 'originator_id') || ':' || (s ->> 'originator_version'), "
        "s ->> 'originator_id', (s ->> 'originator_version')::bigint, "
        "regexp_replace(split_part(topic, ':', 2), '^.*\\.', ''), topic, "
        f"{effective_at}, {recorded_at}, s ->> 'request_id', s ->> 'actor' FROM ("
        f"SELECT {position}, topic, convert_from(state, 'UTF8')::jsonb AS s FROM {events} "
        f"WHERE {position} BETWEEN ? AND ?) AS stored"
    )


def _fill_in_sql(db: Db, first: int, last: int) -> None:
    assert db.events is not None
    db.execute(_postgres_fill(*db.events), (first, last))


def version_at(
    db: Db, originator_id: UUID, *, at: datetime | None = None, position: int | None = None
) -> int | None:
    """The aggregate's last version at business time `at` or log position `position`.

    Business time never goes backwards within an aggregate (DOMAIN.md §8), so its history as of
    a time is a prefix of its events, and its versions grow with their log positions: each
    lookup is one probe of an index from the end (the last business time up to `at`, then the
    highest version among that time's few events), never a scan of the aggregate's history,
    which a MAX over a range would read whole (a hot account or asset holds thousands).
    """
    assert (at is None) != (position is None), (at, position)
    if at is not None:
        rows = db.query(
            "SELECT MAX(originator_version) FROM {event_index} "
            "WHERE originator_id = ? AND effective_at = ("
            "SELECT effective_at FROM {event_index} WHERE originator_id = ? AND effective_at <= ? "
            "ORDER BY effective_at DESC LIMIT 1)",
            (str(originator_id), str(originator_id), time_key(at)),
        )
    else:
        rows = db.query(
            "SELECT originator_version FROM {event_index} "
            "WHERE originator_id = ? AND position <= ? ORDER BY position DESC LIMIT 1",
            (str(originator_id), position),
        )
    value = rows[0][0] if rows else None
    return None if value is None else int(value)
