"""Base classes for the ledger's aggregates and their pydantic events (DOMAIN.md §8)."""

from datetime import datetime
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Self
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    OriginatorIDError,
    OriginatorVersionError,
    datetime_now_with_tzinfo,
)
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import BaseModel, ConfigDict, Field

from ledger.domain.snapshots import AggregateState, Snapshot

# Every aggregate id is a uuid5 in this namespace of a readable key ("account:u1:cross").
LEDGER_NAMESPACE = uuid5(NAMESPACE_URL, "https://collateral-ledger.invalid/ids")


@lru_cache(maxsize=65_536)  # the same few keys (assets, parameters, hot accounts) again and again
def ledger_id(key: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, key)


@cache
def _topic_of(aggregate_class: type) -> str:
    return get_topic(aggregate_class)


@cache
def _class_of(topic: str) -> Any:
    return resolve_topic(topic)


def event_id(originator_id: UUID, originator_version: int) -> str:
    """An event's id: its aggregate and version, which the store keeps unique."""
    return f"{originator_id}:{originator_version}"


class DomainEvent(BaseModel):
    """What every event carries: ids and version, both times, the actor and the request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    originator_id: UUID
    originator_version: int
    timestamp: datetime = Field(default_factory=datetime_now_with_tzinfo)  # recorded_at
    effective_at: datetime  # business time, from the request
    actor: str
    request_id: str

    @property
    def event_id(self) -> str:
        return event_id(self.originator_id, self.originator_version)

    @property
    def recorded_at(self) -> datetime:
        return self.timestamp


class LedgerAggregate(BaseAggregate[UUID]):
    """An aggregate that remembers the business time of its latest event.

    DOMAIN.md §8 Interpretation: effective_at never goes backwards for an aggregate, so its
    history up to a time is a prefix of its events.
    """

    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        last_effective_at: datetime

    class SnapshotState(AggregateState):  # the state above, in snapshots (domain/snapshots.py)
        last_effective_at: datetime

    Snapshot = Snapshot

    class Event(DomainEvent, CanMutateAggregate[UUID]):
        # The library's mutate, with the aggregate's fields set directly rather than through
        # its properties: every event of every command, every replay (docs/performance.md).
        def mutate(self, aggregate: Any) -> Any:
            assert self.effective_at >= aggregate.last_effective_at, (
                self.effective_at,
                aggregate.last_effective_at,
            )
            if self.originator_id != aggregate._id:
                raise OriginatorIDError(self.originator_id, aggregate._id)
            if self.originator_version != aggregate._version + 1:
                raise OriginatorVersionError(self.originator_version, aggregate._version + 1)
            self.apply(aggregate)
            aggregate._version = self.originator_version
            aggregate._modified_on = self.timestamp
            aggregate.last_effective_at = self.effective_at
            return aggregate

    class Created(Event, CanInitAggregate[UUID]):
        originator_topic: str

        def mutate(self, aggregate: Any) -> Any:
            """The library's: a new aggregate of the topic's class, its base fields set, then
            this event applied. The ledger's aggregates have no __init__ of their own; one that
            had would take the library's way, which calls it with the event's fields."""
            assert aggregate is None, aggregate
            aggregate_class = _class_of(self.originator_topic)
            if aggregate_class.__init__ is not object.__init__:
                created = CanInitAggregate.mutate(self, None)
                assert created is not None
            else:
                created = aggregate_class.__new__(aggregate_class)
                created.__base_init__(self.originator_id, self.originator_version, self.timestamp)
                self.apply(created)
            created.last_effective_at = self.effective_at
            return created

    # The library's _create and trigger_event, without what the ledger never uses (explicit
    # topics, ids made by create_id from the event's fields, a copy of the keyword arguments):
    # every event of every command goes through them (docs/performance.md).
    @classmethod
    def _create(  # type: ignore[override]
        cls, event_class: type[Any], *, id: UUID, **kwargs: Any
    ) -> Self:
        created = event_class(
            originator_topic=_topic_of(cls),
            originator_id=id,
            originator_version=cls.INITIAL_VERSION,
            **kwargs,
        )
        aggregate: Self = created.mutate(None)
        aggregate._pending_events.append(created)
        return aggregate

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        event = event_class(originator_id=self._id, originator_version=self._version + 1, **kwargs)
        event.mutate(self)
        self._pending_events.append(event)

    def pending_event_ids(self) -> list[str]:
        return [e.event_id for e in self._pending_events]  # type: ignore[attr-defined]


class Stamp(BaseModel):
    """The metadata every event of one command shares."""

    model_config = ConfigDict(frozen=True)

    effective_at: datetime
    actor: str
    request_id: str

    def fields(self) -> dict[str, Any]:
        return {
            "effective_at": self.effective_at,
            "actor": self.actor,
            "request_id": self.request_id,
        }
