"""Business and record times: RFC 3339 in, UTC out."""

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


class NotATime(ValueError):
    """The text is not an RFC 3339 time with a timezone."""


def parse_time(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and _RFC3339.match(value.strip()):
        text = value.strip().upper().replace(" ", "T")
        fraction = re.search(r"\.(\d+)", text)
        if fraction and len(fraction.group(1)) > 6:  # Python keeps microseconds
            text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as error:
            raise NotATime(f"is not a valid RFC 3339 time: {error}") from None
    else:
        raise NotATime('must be an RFC 3339 time with a timezone, like "2026-03-01T12:00:00Z"')
    if moment.tzinfo is None:
        raise NotATime("must carry a timezone")
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """UTC, RFC 3339, with a Z."""
    assert moment.tzinfo is not None, moment
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
