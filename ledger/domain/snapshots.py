"""Aggregate snapshots: the state of an aggregate as pydantic JSON, read back as a replay sets it.

The library's own Snapshot keeps `vars(aggregate)` as raw Python values; through our JSON mapper
Decimals would come back as strings, enums as strings, tuples as lists and parameter models as
dicts. So each aggregate class declares its state once more as a typed pydantic model, its
`SnapshotState` (next to its `if TYPE_CHECKING:` block), and a snapshot is that model's JSON:
taken with strict validation (the aggregate must hold exactly the declared fields, of exactly the
declared types) and validated back through the same model into the types a replay gives.

The transcoder sorts JSON object keys, which would reorder an aggregate's dicts (holdings are
kept in the order the assets arrived, and a liquidation sells in that order), so every dict field
is declared `InOrder[...]` and stored as a list of [key, value] pairs.

Snapshots are optional (notes/eventsourcing-9.5.md §4): a snapshot that no longer validates
against its model fails loudly; delete the snapshots and they are taken again from the events.
"""

from datetime import datetime
from typing import Annotated, Any, Self, TypeVar, cast, get_args, get_origin
from uuid import UUID

from eventsourcing.domain import BaseAggregate, CanSnapshotAggregate, MutableOrImmutableAggregate
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WrapSerializer,
)


class _InOrderMarker:
    """Marks a dict field whose JSON keeps its key order (checked by AggregateState)."""


IN_ORDER = _InOrderMarker()


def _dump_pairs(value: dict[Any, Any], handler: SerializerFunctionWrapHandler) -> Any:
    return [[key, item] for key, item in handler(value).items()]


def _load_pairs(value: Any) -> Any:
    return dict(value) if isinstance(value, list) else value


DictT = TypeVar("DictT", bound=dict[Any, Any])

# A dict stored as [[key, value], ...] in JSON, so its key order survives the key-sorted store.
InOrder = Annotated[
    DictT, IN_ORDER, BeforeValidator(_load_pairs), WrapSerializer(_dump_pairs, when_used="json")
]


def _holds_dict(annotation: Any) -> bool:
    """Whether a value of this type may hold a dict (whose key order JSON would lose)."""
    if get_origin(annotation) is dict:
        return True
    return any(_holds_dict(arg) for arg in get_args(annotation))


class AggregateState(BaseModel):
    """The state of an aggregate in a snapshot: the library's attributes besides id, version and
    pending events; each aggregate class's `SnapshotState` adds its own, named as in `vars()`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    created_on: datetime = Field(alias="_created_on")
    modified_on: datetime = Field(alias="_modified_on")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, field in cls.model_fields.items():
            if IN_ORDER in field.metadata:
                assert get_origin(field.annotation) is dict, (cls.__qualname__, name)
                nested = get_args(field.annotation)
            else:
                nested = (field.annotation,)
            assert not any(_holds_dict(arg) for arg in nested), (
                f"{cls.__qualname__}.{name}: declare a dict field InOrder[dict[...]], and keep "
                "dicts out of other containers (the store sorts JSON keys)"
            )

    @classmethod
    def attribute_names(cls) -> set[str]:
        """The names of the aggregate's attributes this state holds, as in `vars()`."""
        return {field.alias or name for name, field in cls.model_fields.items()}

    def attributes(self) -> dict[str, Any]:
        """The validated values by attribute name, in the order of the fields."""
        return {
            field.alias or name: getattr(self, name)
            for name, field in type(self).model_fields.items()
        }


# Held by the library, not by the state: rebuilt from the snapshot's own fields.
_IDENTITY = ("_id", "_version", "_pending_events")


def state_class(aggregate_class: type[Any]) -> type[AggregateState]:
    found = getattr(aggregate_class, "SnapshotState", None)
    assert isinstance(found, type) and issubclass(found, AggregateState), aggregate_class
    return found


class Snapshot(BaseModel, CanSnapshotAggregate[UUID]):
    """A LedgerAggregate's state at a version, as its SnapshotState's JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: MutableOrImmutableAggregate[UUID]) -> Self:
        assert isinstance(aggregate, BaseAggregate), type(aggregate)
        model = state_class(type(aggregate))
        attributes = dict(vars(aggregate))
        assert not attributes["_pending_events"], "a snapshot is of a recorded version"
        for name in _IDENTITY:
            del attributes[name]
        # Fails when the aggregate gained or lost state its SnapshotState does not declare.
        assert set(attributes) == model.attribute_names(), (
            f"{type(aggregate).__qualname__}.SnapshotState does not match its attributes",
            sorted(set(attributes) ^ model.attribute_names()),
        )
        state = model.model_validate(attributes, strict=True)  # exactly the declared types
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state.model_dump(mode="json", by_alias=True),
        )

    def mutate(self, _: None) -> BaseAggregate[UUID]:
        aggregate_class = cast(type[BaseAggregate[UUID]], resolve_topic(self.topic))
        values = state_class(aggregate_class).model_validate(self.state).attributes()
        # vars() in the order a replay sets them: the library's base init, then the created
        # event's apply() (the order of the fields), then LedgerAggregate's last_effective_at.
        attributes = {
            "_id": self.originator_id,
            "_version": self.originator_version,
            "_created_on": values.pop("_created_on"),
            "_modified_on": values.pop("_modified_on"),
            "_pending_events": [],
            **values,
        }
        attributes["last_effective_at"] = attributes.pop("last_effective_at")
        aggregate = object.__new__(aggregate_class)
        object.__setattr__(aggregate, "__dict__", attributes)
        return aggregate
