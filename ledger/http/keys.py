"""API keys of the HTTP service: created, listed, revoked and checked; stored hashed.

Keys live in a small `api_keys` table beside the events (the same SQLite file or PostgreSQL
schema), not in the event log: they are access control of one deployment, not facts of the
ledger. Revoking must take effect at once, the log is append-only and chained (a revocation as an
event would be replayed and re-decided by `ledger verify --decisions` for nothing), and an export
of the log must never carry even a key's hash.

A key is `lk_<key id>_<secret>`: the key id (public, printed by `ledger keys list`) finds the row;
only the SHA-256 of the whole key is stored, so the table never holds what it takes to use one.
The secret has 256 bits of entropy, so a plain hash is enough (nothing to brute-force).
"""

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.http.roles import Role
from ledger.persistence import is_postgres, raw_table, schema_setup_lock
from ledger.times import format_time

KEY_PREFIX = "lk"
KEY_PATTERN = re.compile(r"^lk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
TABLE = "api_keys"


class ApiKey(BaseModel):
    """A key as listed: never the key itself, never its hash."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str
    role: Role
    created_at: str
    revoked_at: str | None


class CreatedKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str  # shown once, at creation
    listed: ApiKey


class KeyNotFound(LookupError):
    """No key with this id."""


class KeyStore:
    """The `api_keys` table of one ledger's store, created on first use."""

    def __init__(self, ledger: Ledger) -> None:
        self._datastore: Any = ledger.recorder.datastore  # type: ignore[attr-defined]
        self._postgres = is_postgres(ledger.env)
        self._table = raw_table(ledger.recorder, TABLE)
        with schema_setup_lock(dict(ledger.env)):  # two servers starting at once take turns
            self._execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} ("
                " key_id TEXT PRIMARY KEY,"
                " name TEXT NOT NULL,"
                " role TEXT NOT NULL,"
                " key_sha256 TEXT NOT NULL,"
                " created_at TEXT NOT NULL,"
                " revoked_at TEXT)"
            )

    def create(self, role: Role, name: str) -> CreatedKey:
        assert NAME_PATTERN.match(name), name
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        assert KEY_PATTERN.match(key), key
        created_at = format_time(datetime.now(UTC))
        self._execute(
            f"INSERT INTO {self._table} (key_id, name, role, key_sha256, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (key_id, name, role.value, _sha256(key), created_at),
        )
        listed = ApiKey(key_id=key_id, name=name, role=role, created_at=created_at, revoked_at=None)
        return CreatedKey(key=key, listed=listed)

    def all_keys(self) -> list[ApiKey]:
        rows = self._query(
            f"SELECT key_id, name, role, created_at, revoked_at FROM {self._table}"
            " ORDER BY created_at, key_id"
        )
        return [
            ApiKey(key_id=k, name=n, role=Role(r), created_at=c, revoked_at=v)
            for k, n, r, c, v in rows
        ]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (at once: every request looks its key up); revoking twice keeps the
        first time."""
        self._execute(
            f"UPDATE {self._table} SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (format_time(datetime.now(UTC)), key_id),
        )
        for listed in self.all_keys():
            if listed.key_id == key_id:
                return listed
        raise KeyNotFound(f"no API key with id {key_id!r} (see `ledger keys list`)")

    def role_of(self, key: str) -> Role | None:
        """The role of a valid, unrevoked key; None for anything else."""
        match = KEY_PATTERN.match(key)
        if match is None:
            return None
        rows = self._query(
            f"SELECT role, key_sha256 FROM {self._table} WHERE key_id = ? AND revoked_at IS NULL",
            (match.group(1),),
        )
        if not rows:
            return None
        role, stored = rows[0]
        # Constant time: a timing difference must not tell how much of a guess was right.
        return Role(role) if hmac.compare_digest(stored, _sha256(key)) else None

    def _execute(self, text: str, params: tuple[Any, ...] = ()) -> None:
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(self._placeholders(text), params)

    def _query(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(self._placeholders(text), params)
            rows = cursor.fetchall()
        return [tuple(row.values()) if self._postgres else tuple(row) for row in rows]

    def _placeholders(self, text: str) -> str:
        return text.replace("?", "%s") if self._postgres else text


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
