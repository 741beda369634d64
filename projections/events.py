"""The events as the read models see them: each stored event's JSON decoded once and shared by
every model, instead of a pydantic domain event validated per event.

The models read a handful of fields per event; validating every event into its pydantic class
cost more than all their work together (a rebuild's profile). The stored JSON is what the
mapper wrote with `model_dump(mode="json")`, so a field's text is exactly what validation would
parse: `Decimal(text)` is the validated Decimal, and a time's text gives the same time key. The
few rare events whose nested fields a model needs whole (listings, brackets, caps) are still
validated, on demand (`Record.event`).
"""

from collections.abc import Sequence
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any, Generic, TypeVar

from eventsourcing.utils import get_topic, resolve_topic
from pydantic import BaseModel
from pydantic_core import from_json

from ledger.money import format_plain
from projections.sql import parse_time_key, time_key

Role = TypeVar("Role")
UTC_TIME_LENGTH = len("2026-01-01T00:00:00Z")
UTC_TIME_US_LENGTH = len("2026-01-01T00:00:00.000000Z")
TIME_KEYS_CACHED = 4096  # the events of one command share their business time


class Record:
    """One event of the log: its position, topic and stored JSON (`data`)."""

    __slots__ = ("_event", "data", "effective_key", "kind", "position", "topic")

    def __init__(self, position: int, topic: str, data: dict[str, Any]) -> None:
        self.position = position
        self.topic = topic
        self.data = data
        self.kind: type[Any] = event_class(topic)
        self.effective_key = time_key_of(data["effective_at"])  # every model needs it
        self._event: Any = None

    @property
    def event(self) -> Any:
        """The pydantic domain event (validated on first use: for rare events only)."""
        if self._event is None:
            self._event = self.kind.model_validate(self.data)
        return self._event

    @property
    def originator_id(self) -> str:
        return str(self.data["originator_id"])

    @property
    def event_id(self) -> str:
        data = self.data
        return f"{data['originator_id']}:{data['originator_version']}"

    def dec(self, field: str) -> Decimal:
        return Decimal(self.data[field])

    @classmethod
    def of_event(cls, position: int, event: Any) -> "Record":
        """A record of a domain event in memory (the library's one-event entry point)."""
        assert isinstance(event, BaseModel), event
        record = cls(position, get_topic(type(event)), event.model_dump(mode="json"))
        record._event = event
        return record


def decode(rows: Sequence[tuple[int, str, bytes]]) -> list[Record]:
    """Records of raw log rows (position, topic, stored state)."""
    return [Record(position, topic, from_json(state)) for position, topic, state in rows]


@cache  # one entry per event class of the ledger
def event_class(topic: str) -> type[Any]:
    return resolve_topic(topic)  # type: ignore[no-any-return]


def derives(kind: type[Any], bases: type[Any] | tuple[type[Any], ...]) -> bool:
    """`issubclass`, remembered: pydantic's model classes answer it slowly (ABCMeta)."""
    key = (kind, bases)
    found = _DERIVES.get(key)
    if found is None:
        found = _DERIVES[key] = issubclass(kind, bases)
    return found


_DERIVES: dict[tuple[type[Any], Any], bool] = {}


class Roles(Generic[Role]):
    """What each event class is to one model, by the first of its `(bases, role)` entries the
    class derives from (`default` for none): worked out once per class, then one lookup."""

    def __init__(
        self, entries: Sequence[tuple[type[Any] | tuple[type[Any], ...], Role]], default: Role
    ) -> None:
        self.entries = tuple(entries)
        self.default = default
        self.known: dict[type[Any], Role] = {}

    def __getitem__(self, kind: type[Any]) -> Role:
        known = self.known
        if kind in known:
            return known[kind]
        found = next((role for bases, role in self.entries if issubclass(kind, bases)), None)
        role = self.default if found is None else found
        known[kind] = role
        return role


@cache
def type_name(topic: str) -> str:
    """The event's class name, as `type(event).__name__`."""
    return event_class(topic).__name__


def time_key_of(text: str) -> str:
    """`time_key` of a stored time: the mapper writes UTC times as "...SSZ" or "...SS.ffffffZ",
    which only need the fraction filled in; any other form is parsed."""
    if len(text) == UTC_TIME_US_LENGTH and text[19] == "." and text[-1] == "Z":
        return text
    if len(text) == UTC_TIME_LENGTH and text[-1] == "Z" and text[10] == "T":
        return f"{text[:-1]}.000000Z"
    return _parsed_time_key(text)


@lru_cache(maxsize=TIME_KEYS_CACHED)
def _parsed_time_key(text: str) -> str:
    return time_key(parse_time_key(text))


def plain_of(text: str) -> str:
    """`format_plain(Decimal(text))` of a stored decimal's text, without the Decimal."""
    if "E" in text or "e" in text:
        return format_plain(Decimal(text))
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("0", "-0", "", "-") else text
