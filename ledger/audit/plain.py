"""Events as the contract's JSON: quantities as plain decimal strings (no exponent, no trailing
zeros, COMMANDS.md), times in RFC 3339 UTC; what explain and export print."""

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from ledger.money import format_plain
from ledger.times import format_time


def plain_json(value: Any) -> Any:
    """A JSON-ready copy of a value taken from an event (model_dump in python mode)."""
    if isinstance(value, Decimal):
        return format_plain(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, BaseModel):
        return plain_json(value.model_dump())
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def event_fields(event: Any, leave_out: set[str]) -> dict[str, Any]:
    """The event's fields but `leave_out`, as the contract's JSON."""
    return {
        name: plain_json(value)
        for name, value in event.model_dump().items()
        if name not in leave_out
    }
