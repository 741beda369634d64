"""Reading the event log in order, one bounded batch at a time: the library's notification log
(every event, never a snapshot), decoded through the ledger's mapper; or, for readers that decode
the stored JSON themselves (the read models), the raw rows."""

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Notification

from ledger import limits
from ledger.persistence import raw_position_column, raw_table

if TYPE_CHECKING:
    from ledger.application import Ledger


def log_batches(
    ledger: "Ledger", *, topics: Sequence[str] = (), stop: int | None = None
) -> Iterator[Sequence[Notification]]:
    """The log's notifications (of these topics, up to position `stop`), a batch at a time."""
    position = 0
    for _batch in range(limits.PROJECTION_BATCHES_MAX):
        notifications = ledger.recorder.select_notifications(
            start=position,
            limit=limits.PROJECTION_BATCH_SIZE,
            stop=stop,
            topics=topics,
            inclusive_of_start=False,
        )
        if notifications:
            yield notifications
        if len(notifications) < limits.PROJECTION_BATCH_SIZE:
            return
        position = notifications[-1].id
    raise RuntimeError("the log has more batches than the batch bound allows")


def log_events(
    ledger: "Ledger", *, topics: Sequence[str] = (), stop: int | None = None
) -> Iterator[tuple[int, Any]]:
    """(position, domain event) in log order."""
    for batch in log_batches(ledger, topics=topics, stop=stop):
        for notification in batch:
            yield notification.id, ledger.mapper.to_domain_event(notification)


RawEvent = tuple[int, str, bytes]  # (position, topic, stored state)


def raw_page(
    ledger: "Ledger", *, after: int, limit: int, stop: int | None = None
) -> list[RawEvent]:
    """Up to `limit` events after position `after` (and up to `stop`), in log order, each
    state as the transcoder wrote it: one keyset query on the events table, with none of the
    library's per-row objects."""
    recorder: Any = ledger.recorder
    column = raw_position_column(recorder)
    is_postgres = column != "rowid"
    mark = "%s" if is_postgres else "?"
    bound = "" if stop is None else f" AND {column} <= {mark}"
    statement = (
        f"SELECT {column}, topic, state FROM {raw_table(recorder)} "
        f"WHERE {column} > {mark}{bound} ORDER BY {column} LIMIT {mark}"
    )
    params = (after, limit) if stop is None else (after, stop, limit)
    with recorder.datastore.transaction(commit=False) as cursor:
        if is_postgres:
            from psycopg.rows import tuple_row

            cursor.row_factory = tuple_row  # this cursor only: no dict per row
            cursor.execute(statement, params, binary=True)
            rows: list[RawEvent] = cursor.fetchall()
        else:
            raw = cursor.sqlite_cursor  # the library's wrapper sets sqlite3.Row on its connection
            raw.row_factory = None
            raw.execute(statement, params)
            rows = raw.fetchall()
    return _plain(ledger, rows)


def notification_page(
    ledger: "Ledger", *, after: int, limit: int, stop: int | None = None
) -> list[RawEvent]:
    """`raw_page` through the library's notification log (what a follower reads: every reader
    of the log goes through the recorder)."""
    notifications = ledger.recorder.select_notifications(
        start=after, limit=limit, stop=stop, inclusive_of_start=False
    )
    return _plain(ledger, [(n.id, n.topic, n.state) for n in notifications])


def is_plain_json(ledger: "Ledger") -> bool:
    """The stored states are the transcoder's JSON as it is (no cipher, no compressor)."""
    return ledger.mapper.cipher is None and ledger.mapper.compressor is None


def _plain(ledger: "Ledger", rows: list[RawEvent]) -> list[RawEvent]:
    """The rows with their states as the transcoder wrote them, undoing what the mapper did
    after it (as `mapper.to_domain_event` does)."""
    if is_plain_json(ledger):
        return rows
    mapper = ledger.mapper
    plain = []
    for position, topic, state in rows:
        if mapper.cipher is not None:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor is not None:
            state = mapper.compressor.decompress(state)
        plain.append((position, topic, state))
    return plain
