"""Exceptions for input the ledger refuses without recording anything, and the errors that
mean its database cannot be used."""

import sqlite3

import psycopg
from eventsourcing.persistence import InfrastructureFactoryError, PersistenceError

from ledger.commands import CommandInvalid, FieldError
from ledger.persistence import DatabaseUrlError


class LedgerInputError(CommandInvalid):
    """A well-formed command that the ledger's state makes meaningless (unknown asset, ...)."""

    def __init__(self, field: str, problem: str, request_id: str | None = None) -> None:
        super().__init__([FieldError(field=field, problem=problem)], request_id)


class RequestIdReused(LedgerInputError):
    """Same request_id, different payload: an idempotency key may name one request only."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            "request_id", "was already used for a different request (idempotency key)", request_id
        )


class SaveRetriesExhausted(RuntimeError):
    """Version conflicts kept recurring past limits.SAVE_RETRY_COUNT_MAX: fail, never guess."""


class ReadOnlyLedger(RuntimeError):
    """A command sent to a Ledger opened read-only (e.g. by an auditor's role)."""


# What every entry point (CLI: exit 2; HTTP: 503) answers as "the database cannot be used".
DATABASE_ERRORS = (
    DatabaseUrlError,
    PersistenceError,  # every error the library raises for its database
    InfrastructureFactoryError,
    psycopg.Error,
    sqlite3.Error,
    SaveRetriesExhausted,  # conflicts that kept recurring: the store is not usable as it is
)
