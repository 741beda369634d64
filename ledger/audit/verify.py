"""Verifying the hash chain: recompute every link from the stored events, in log order, and
report the first position where the stored log or the stored chain disagrees.

Reads the events table and the chain table directly (raw rows, in bounded batches): the check
must see the bytes as stored, not as the library would decode them.
"""

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.audit.chain import GENESIS, ChainedRecord, Digest, link_of
from ledger.audit.recorders import CHAIN_TABLE
from ledger.persistence import is_postgres, raw_position_column, raw_rows, raw_table


class ChainReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    is_intact: bool
    events_checked: int
    head: Digest | None  # the last link checked (None: an empty log)
    first_bad_position: int | None
    problem: str | None  # what is wrong at first_bad_position
    digest: Digest | None = None  # the digest checked against, if one was given


def head_digest(ledger: Ledger) -> Digest | None:
    """The chain's last link as stored: the value an auditor writes down."""
    if not _has_log(ledger):
        return None
    rows = list(_chain_rows(ledger, after=0, limit=1, descending=True))
    return None if not rows else Digest(position=rows[0][0], hash=rows[0][1])


def verify_chain(
    ledger: Ledger,
    *,
    digest: Digest | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ChainReport:
    """Recompute the chain from the first event (up to the digest's position if given)."""
    stop = None if digest is None else digest.position
    previous, checked, last = GENESIS, 0, None
    has_log = _has_log(ledger)
    head = (ledger.recorder.max_notification_id() or 0) if has_log else 0
    for position, record, stored_link in _walk(ledger, stop) if has_log else iter(()):
        if record is None:
            return _bad(checked, last, position, "the event is missing (deleted)", digest)
        if stored_link is None:
            return _bad(
                checked,
                last,
                position,
                "the event has no link (written outside the ledger)",
                digest,
            )
        link = link_of(previous, record)
        if link != stored_link:
            return _bad(
                checked,
                last,
                position,
                "the stored event or its stored link was altered, moved or replaced",
                digest,
            )
        previous, checked, last = link, checked + 1, Digest(position=position, hash=link)
        if progress is not None and checked % limits.PROJECTION_BATCH_SIZE == 0:
            progress(position, head)
    if digest is not None:
        if last is None or last.position != digest.position:
            return _bad(checked, last, digest.position, "no event at the digest's position", digest)
        if last.hash != digest.hash:
            return _bad(
                checked,
                last,
                digest.position,
                "the history up to the digest differs from when it was written down",
                digest,
            )
    return ChainReport(
        is_intact=True,
        events_checked=checked,
        head=last,
        first_bad_position=None,
        problem=None,
        digest=digest,
    )


def _bad(
    checked: int, last: Digest | None, position: int, problem: str, digest: Digest | None
) -> ChainReport:
    return ChainReport(
        is_intact=False,
        events_checked=checked,
        head=last,
        first_bad_position=position,
        problem=problem,
        digest=digest,
    )


def _walk(
    ledger: Ledger, stop: int | None
) -> Iterator[tuple[int, ChainedRecord | None, str | None]]:
    """(position, stored event or None, stored link or None) for every position either the
    events table or the chain table has, in order, up to `stop`."""
    records = _records(ledger, stop)
    links = _links(ledger, stop)
    record = next(records, None)
    link = next(links, None)
    while record is not None or link is not None:
        record_position = record.position if record is not None else None
        link_position = link[0] if link is not None else None
        position = min(p for p in (record_position, link_position) if p is not None)
        yield (
            position,
            record if record_position == position else None,
            link[1] if link is not None and link_position == position else None,
        )
        if record_position == position:
            record = next(records, None)
        if link_position == position:
            link = next(links, None)


def _records(ledger: Ledger, stop: int | None) -> Iterator[ChainedRecord]:
    recorder: Any = ledger.recorder
    column = raw_position_column(recorder)
    position = 0
    for _batch in range(limits.PROJECTION_BATCHES_MAX):
        rows = raw_rows(
            recorder,
            f"SELECT {column}, originator_id, originator_version, topic, state "
            f"FROM {raw_table(recorder)} WHERE {column} > ? ORDER BY {column} LIMIT ?",
            (position, limits.PROJECTION_BATCH_SIZE),
        )
        for row_position, originator_id, version, topic, state in rows:
            if stop is not None and row_position > stop:
                return
            yield ChainedRecord(
                position=row_position,
                originator_id=originator_id
                if isinstance(originator_id, UUID)
                else UUID(originator_id),
                originator_version=version,
                topic=topic,
                # Tampering in SQL may leave text where the ledger wrote bytes: same content.
                state=state.encode() if isinstance(state, str) else bytes(state),
            )
        if len(rows) < limits.PROJECTION_BATCH_SIZE:
            return
        position = rows[-1][0]
    raise RuntimeError("the log has more batches than the batch bound allows")


def _links(ledger: Ledger, stop: int | None) -> Iterator[tuple[int, str]]:
    position = 0
    for _batch in range(limits.PROJECTION_BATCHES_MAX):
        rows = list(_chain_rows(ledger, after=position, limit=limits.PROJECTION_BATCH_SIZE))
        for row in rows:
            if stop is not None and row[0] > stop:
                return
            yield row
        if len(rows) < limits.PROJECTION_BATCH_SIZE:
            return
        position = rows[-1][0]
    raise RuntimeError("the chain has more batches than the batch bound allows")


def _chain_rows(
    ledger: Ledger, *, after: int, limit: int, descending: bool = False
) -> Iterator[tuple[int, str]]:
    recorder: Any = ledger.recorder
    order = "DESC" if descending else "ASC"
    for position, link in raw_rows(
        recorder,
        f"SELECT position, hash FROM {raw_table(recorder, CHAIN_TABLE)} WHERE position > ? "
        f"ORDER BY position {order} LIMIT ?",
        (after, limit),
    ):
        yield int(position), str(link)


def _has_log(ledger: Ledger) -> bool:
    """Whether the store has its tables: a read-only opening of a new store creates none, and
    a store where nothing was ever recorded has an empty log."""
    recorder: Any = ledger.recorder
    if is_postgres(ledger.env):
        [(found,)] = raw_rows(
            recorder,
            "SELECT to_regclass(?) IS NOT NULL AND to_regclass(?) IS NOT NULL",
            (raw_table(recorder), raw_table(recorder, CHAIN_TABLE)),
        )
        return bool(found)
    [(count,)] = raw_rows(
        recorder,
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
        (recorder.events_table_name, CHAIN_TABLE),
    )
    return int(count) == 2
