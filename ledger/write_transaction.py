"""The aggregates the write path keeps in memory, and one write transaction over them.

The cache holds each aggregate as the log stands at `position`. A write transaction takes the
log's write lock, applies the events other writers appended since `position` to the aggregates it
holds (ledger/log_writer.py), and from then on nothing else can change the log: the handlers read
and change the cached aggregates directly (no copy, no query), every command's events are
collected as soon as it is decided, and all of them are appended and committed together.

A command refused as invalid inside a batch leaves the aggregates it touched half-changed: they
are rebuilt from the committed log plus the events this transaction already decided for them, so
the commands before and after it are decided exactly as if it had never been sent.
"""

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent

from ledger.domain.base import LedgerAggregate
from ledger.log_writer import LoggedEvent, Opened

if TYPE_CHECKING:
    from ledger.application import Ledger


@dataclass
class WriteStatistics:
    """What a Ledger's write path did since it opened (for benchmarks and operators)."""

    transactions: int = 0  # committed
    retries: int = 0  # decided again after an append that conflicted
    lock_wait_seconds: float = 0.0  # in begin(): waiting for the log's write lock, and its reads
    snapshot_failures: int = 0  # snapshots not stored after a commit (the commit stands)
    # PostgreSQL (ledger/handoff.py): commands this writer queued that another decided, and
    # commands of other writers this one decided.
    handed_off: int = 0
    served: int = 0
    # PostgreSQL (LogWriter.speculate): transactions committed without a read before deciding,
    # and those that found the log moved at commit and were decided again.
    speculated: int = 0
    speculation_misses: int = 0


class AggregateCache:
    """Aggregates as of log position `position`, least recently used dropped first."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.position: int | None = None  # None: nothing known (empty, or forgotten)
        self._items: OrderedDict[UUID, LedgerAggregate] = OrderedDict()
        # Ids the log had no event for at `position` (a user without a profile, looked up by
        # every job's part for that user): known absent until an event of theirs is appended,
        # by us (accept) or by another writer (the tail).
        self._absent: OrderedDict[UUID, None] = OrderedDict()

    def is_absent(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._absent

    def put_absent(self, aggregate_id: UUID) -> None:
        self._absent[aggregate_id] = None
        self._absent.move_to_end(aggregate_id)
        while len(self._absent) > self.maxsize:
            self._absent.popitem(last=False)

    def discard_absent(self, aggregate_id: UUID) -> None:
        self._absent.pop(aggregate_id, None)

    def get(self, aggregate_id: UUID) -> LedgerAggregate | None:
        found = self._items.get(aggregate_id)
        if found is not None:
            self._items.move_to_end(aggregate_id)
        return found

    def put(self, aggregate: LedgerAggregate) -> None:
        self._absent.pop(aggregate.id, None)
        self._items[aggregate.id] = aggregate
        self._items.move_to_end(aggregate.id)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def discard(self, aggregate_id: UUID) -> None:
        self._items.pop(aggregate_id, None)

    def forget(self) -> None:
        self._items.clear()
        self._absent.clear()
        self.position = None

    def catch_up(self, ledger: "Ledger", opened: Opened) -> None:
        """Apply what others appended since `position`; forget everything when that is more
        than one read brought."""
        if self.position is None or not opened.tail_complete:
            self.forget()
        else:
            for logged in opened.tail:
                self._apply(ledger, logged)
        self.position = opened.head

    def _apply(self, ledger: "Ledger", logged: LoggedEvent) -> None:
        aggregate_id = logged.originator_id
        self._absent.pop(aggregate_id, None)  # another writer created it
        cached = self._items.get(aggregate_id)
        if cached is None:
            return
        if logged.originator_version != cached.version + 1:
            self.discard(aggregate_id)  # a gap we cannot fill from here: load it again
            return
        event = ledger.mapper.to_domain_event(logged.stored())
        event.mutate(cached)  # type: ignore[attr-defined]


class WriteTransaction:
    """One transaction of the write path, open under the log's write lock."""

    def __init__(self, ledger: "Ledger", cache: AggregateCache, opened: Opened) -> None:
        self.ledger = ledger
        self.cache = cache
        self.opened = opened
        self.events: list[Any] = []  # decided, in order: what the commit appends
        # The library's rule: a snapshot at every interval-th version (in a transaction that
        # passes several, the last); taken from memory when a command ends on that version.
        self.snapshots_due: dict[UUID, int] = {}
        self.snapshots_taken: dict[UUID, Any] = {}
        self._events_of: dict[UUID, list[Any]] = {}
        self._absent: set[UUID] = set()
        self.assumed_new: list[UUID] = []
        # Every aggregate this transaction decided events for, as they now are: the cache may
        # drop them (it is bounded) before they are committed, and they must not be read back
        # from the committed log without those events.
        self._decided: dict[UUID, LedgerAggregate] = {}

    def known_absent(self, ids: Iterable[UUID]) -> None:
        """Ids the lock-time lookup found no events for (new requests, new accounts); in a
        speculative transaction (nothing looked up), those assumed new, which its commit
        checks (`assumed_new`)."""
        for aggregate_id in ids:
            if aggregate_id not in self.opened.existing and self.cache.get(aggregate_id) is None:
                self._absent.add(aggregate_id)
                if self.opened.speculative:
                    self.assumed_new.append(aggregate_id)

    def exists(self, aggregate_id: UUID) -> bool:
        return (
            aggregate_id in self._events_of
            or aggregate_id in self.opened.existing
            or (aggregate_id not in self._absent and self.get(aggregate_id) is not None)
        )

    def get(self, aggregate_id: UUID) -> LedgerAggregate | None:
        decided = self._decided.get(aggregate_id)
        if decided is not None:
            return decided
        cached = self.cache.get(aggregate_id)
        if cached is not None:
            return cached
        if aggregate_id in self._absent:
            return None
        if self.cache.is_absent(aggregate_id):
            self._absent.add(aggregate_id)
            return None
        loaded: LedgerAggregate | None = self._committed(aggregate_id)
        if loaded is None:
            self._absent.add(aggregate_id)
            self.cache.put_absent(aggregate_id)
            return None
        self.cache.put(loaded)
        return loaded

    def as_of(self, aggregate_id: UUID, at: datetime) -> LedgerAggregate | None:
        """The aggregate as it stood at business time `at`, counting this transaction's events."""
        decided = self._events_of.get(aggregate_id)
        if not decided or decided[0].effective_at > at:
            found = self.ledger.aggregate_as_of(aggregate_id, at)
            assert found is None or isinstance(found, LedgerAggregate)
            return found
        aggregate = self._committed(aggregate_id)
        for event in decided:
            if event.effective_at > at:
                break
            aggregate = event.mutate(aggregate)
        assert aggregate is None or isinstance(aggregate, LedgerAggregate)
        return aggregate

    def accept(self, aggregates: Iterable[LedgerAggregate], *, cache: bool = True) -> None:
        """A command decided: its aggregates' new events join the transaction, and the cache
        holds the aggregates as they now are (`cache=False` for those read again only by a
        retry, such as requests: kept for this transaction only)."""
        intervals = self.ledger.snapshotting_intervals or {}
        for aggregate in aggregates:
            events = aggregate.collect_events()
            if not events:
                continue
            self._absent.discard(aggregate.id)
            self.cache.discard_absent(aggregate.id)  # even when not cached (a Request)
            self._events_of.setdefault(aggregate.id, []).extend(events)
            self.events.extend(events)
            self._decided[aggregate.id] = aggregate
            if cache:
                self.cache.put(aggregate)
            interval = intervals.get(type(aggregate))
            if interval is not None:
                for event in events:
                    if event.originator_version % interval == 0:
                        self.snapshots_due[aggregate.id] = event.originator_version
                if aggregate.version % interval == 0:  # taken now, put once committed
                    self.snapshots_taken[aggregate.id] = type(aggregate).Snapshot.take(aggregate)

    def forget_decided(self) -> None:
        """The transaction was rolled back: the cache no longer holds what it decided."""
        for aggregate_id in self._decided:
            self.cache.discard(aggregate_id)

    def restore(self, aggregate_ids: Iterable[UUID]) -> None:
        """Undo what a refused command did to these aggregates: as committed, plus the events
        this transaction decided for them before it."""
        for aggregate_id in aggregate_ids:
            self.cache.discard(aggregate_id)
            self._decided.pop(aggregate_id, None)
            decided = self._events_of.get(aggregate_id)
            if not decided:
                continue
            aggregate = self._committed(aggregate_id)
            for event in decided:
                aggregate = event.mutate(aggregate)
            assert isinstance(aggregate, LedgerAggregate)
            self._decided[aggregate_id] = aggregate
            self.cache.put(aggregate)

    def stored_events(self) -> list[StoredEvent]:
        return [self.ledger.mapper.to_stored_event(event) for event in self.events]

    def _committed(self, aggregate_id: UUID) -> Any:
        """The aggregate as the committed log holds it (nobody can append while we hold the
        lock, so the library's own read, on its own connection, sees the same log)."""
        try:
            return self.ledger.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
