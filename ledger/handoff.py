"""Handing commands to the writer that holds the log's lock (PostgreSQL): group commit across
processes.

Writers of one store take turns on the log's write lock, and each turn costs a commit (an
fsync) and two round trips whatever it decides. When the lock is busy, a writer with a few
commands does not only wait its turn: it queues them (an unlogged table, no fsync) and then
waits for the lock. Whoever holds the lock next takes everything queued and decides it after
its own commands, one after another against the state the ones before left, exactly as a batch
(ledger/write_transaction.py), and commits the answers with the events. A writer whose
commands were decided meanwhile finds its answers once it holds the lock, and leaves at once.

Nothing is lost or applied twice: the queue's rows are taken, and the answers written, in the
transaction that appends the events, so a leader that fails puts them back; a command queued by
a process that died is still decided (its request id answers a retry, as for any command that
reached the ledger).
"""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import UUID

from ledger.commands import CommandBase, CommandInvalid, FieldError, command_adapter
from ledger.errors import LedgerInputError, RequestIdReused
from ledger.outcomes import Outcome

Answer = Outcome | CommandInvalid


@dataclass(frozen=True)
class Offer:
    """Commands a writer is ready to hand to the lock's holder: its ticket, the commands, and
    the aggregate ids worth looking up for them (as for its own transaction)."""

    ticket: UUID
    commands: Sequence[CommandBase]
    ask: Sequence[UUID]

    @classmethod
    def of(cls, commands: Sequence[CommandBase], ask: Sequence[UUID]) -> "Offer":
        return cls(ticket=uuid.uuid4(), commands=commands, ask=ask)

    @cached_property
    def commands_json(self) -> str:
        """The commands as queued: encoded only if the lock was busy (most offers are not
        queued: the lock was free, or the writer decided before locking)."""
        return "[" + ",".join(command_adapter.dump_json(c).decode() for c in self.commands) + "]"  # type: ignore[arg-type]


def queued_commands(text: str) -> list[CommandBase]:
    """The commands of an Offer, as the writer holding the lock reads them from the queue."""
    return [command_adapter.validate_python(c) for c in json.loads(text)]


@dataclass(frozen=True)
class HandedOff:
    """The answers to a writer's commands, decided and committed by another writer."""

    answers: list[Answer]


def encode_answers(answers: Sequence[Answer]) -> str:
    return json.dumps([_encoded(answer) for answer in answers], separators=(",", ":"))


def decode_answers(text: str) -> list[Answer]:
    return [_decoded(item) for item in json.loads(text)]


def _encoded(answer: Answer) -> dict[str, Any]:
    if isinstance(answer, Outcome):
        return {"outcome": answer.model_dump(mode="json")}
    return {
        "invalid": {
            "errors": [e.model_dump(mode="json") for e in answer.errors],
            "request_id": answer.request_id,
            "kind": _kind(answer),
        }
    }


def _decoded(item: dict[str, Any]) -> Answer:
    if "outcome" in item:
        return Outcome.model_validate(item["outcome"])
    invalid = item["invalid"]
    errors = [FieldError.model_validate(e) for e in invalid["errors"]]
    if invalid["kind"] == "reused":
        return RequestIdReused(invalid["request_id"])
    if invalid["kind"] == "input":
        (error,) = errors
        return LedgerInputError(error.field, error.problem, invalid["request_id"])
    return CommandInvalid(errors, invalid["request_id"])


def _kind(invalid: CommandInvalid) -> str:
    """The class the writer that sent the command would have raised, for the callers that
    tell them apart (an HTTP retry under a reused id is a conflict, not bad input)."""
    if isinstance(invalid, RequestIdReused):
        return "reused"
    if isinstance(invalid, LedgerInputError) and len(invalid.errors) == 1:
        return "input"
    return "command"
