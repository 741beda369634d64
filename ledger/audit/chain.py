"""The hash chain over the event log, in log order: each link hashes the previous link and the
event's stored record (position, aggregate id, version, topic and the stored bytes).

Links are written in the same transaction as the events they cover (ledger/audit/recorders.py),
so an event inserted, altered, deleted or moved behind the ledger's back breaks the chain at its
position; a digest an auditor wrote down (position and link) pins everything before it.
"""

import hashlib
from uuid import UUID

from pydantic import BaseModel, ConfigDict

GENESIS = "0" * 64  # the link before the first event


class ChainedRecord(BaseModel):
    """An event as stored: what its link hashes."""

    model_config = ConfigDict(frozen=True)

    position: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


def link_of(previous: str, record: ChainedRecord) -> str:
    return chain_link(
        previous,
        record.position,
        record.originator_id,
        record.originator_version,
        record.topic,
        record.state,
    )


def chain_link(
    previous: str, position: int, originator_id: UUID, version: int, topic: str, state: bytes
) -> str:
    """sha256 over the previous link and the record; the fields are length-prefixed so that no
    two different records hash the same bytes."""
    digest = hashlib.sha256(previous.encode())
    for part in (
        str(position).encode(),
        str(originator_id).encode(),
        str(version).encode(),
        topic.encode(),
        state,
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Digest(BaseModel):
    """The chain's head at some position: what an auditor writes down, as POSITION:HASH."""

    model_config = ConfigDict(frozen=True)

    position: int
    hash: str

    def __str__(self) -> str:
        return f"{self.position}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> "Digest":
        position, separator, link = text.strip().partition(":")
        if not separator or not position.isdigit() or len(link) != 64:
            raise ValueError(
                f"{text!r} is not a digest like 1234:<64 hex digits> (from `ledger digest`)"
            )
        try:
            int(link, 16)
        except ValueError:
            raise ValueError(f"{text!r}: the hash is not hexadecimal") from None
        return cls(position=int(position), hash=link.lower())
