"""Request: one command's idempotency record and its outcome (COMMANDS.md `request_id`)."""

import hashlib
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger.domain.base import LedgerAggregate, Stamp, ledger_id
from ledger.domain.snapshots import InOrder


def payload_digest(canonical_json: str) -> str:
    return hashlib.sha256(canonical_json.encode()).hexdigest()


class Request(LedgerAggregate):
    """Saved in the same transaction as the events the command caused, so a retry that finds it
    knows the command was applied, and answers with the first outcome instead of applying again."""

    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        request_id: str
        command_type: str
        command: dict[str, Any]
        payload_digest: str
        outcome: dict[str, Any]

    class SnapshotState(LedgerAggregate.SnapshotState):  # the state above, in snapshots
        request_id: str
        command_type: str
        command: InOrder[dict[str, Any]]
        payload_digest: str
        outcome: InOrder[dict[str, Any]]

    @staticmethod
    def create_id(request_id: str) -> UUID:
        return ledger_id(f"request:{request_id}")

    class Recorded(LedgerAggregate.Created):
        command_type: str
        command: dict[str, Any]  # the command as given (JSON), effective_at as given
        payload_digest: str
        outcome: dict[str, Any]  # the Outcome's JSON

        def apply(self, request: "Request") -> None:
            request.request_id = self.request_id
            request.command_type = self.command_type
            request.command = self.command
            request.payload_digest = self.payload_digest
            request.outcome = self.outcome

    @classmethod
    def record(
        cls,
        *,
        command_type: str,
        command: dict[str, Any],
        digest: str,
        outcome: dict[str, Any],
        stamp: Stamp,
    ) -> "Request":
        return cls._create(
            cls.Recorded,
            id=cls.create_id(stamp.request_id),
            command_type=command_type,
            command=command,
            payload_digest=digest,
            outcome=outcome,
            **stamp.fields(),
        )
