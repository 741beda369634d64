"""Tamper evidence over the event log (ledger/audit): the hash chain written with every save,
`verify_chain` / `ledger verify` finding the first bad position after tampering done directly
in SQL, the append-only triggers, and the PostgreSQL auditor role (scripts/create-auditor-role).

Every store is built through the normal commands (a capped asset, five transfers, a USDT
transfer and a borrow: a few dozen events). Tampering opens the database directly, the way
someone with database access would, and gets past the append-only triggers first: SQLite drops
them in the same connection; PostgreSQL (as the superuser) sets `session_replication_role =
replica` or disables the user triggers. Verification then runs on a freshly opened Ledger.
"""

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger, limits
from ledger.audit.chain import GENESIS, ChainedRecord, Digest, link_of
from ledger.audit.verify import ChainReport, head_digest, verify_chain
from ledger.outcomes import Outcome
from ledger.persistence import env_for_url
from tests.cli.cli_support import (
    EXIT_CANNOT_RUN,
    EXIT_OK,
    invoke,
    json_lines,
    ledger_script,
)
from tests.conftest import POSTGRES_URL
from tests.support import at, command, run, setup_capped_asset, transfer_in

EXIT_TAMPERED = 1
USERS = ("u0", "u1", "u2", "u3", "u4")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "create-auditor-role"
SQLITE_TRIGGERS = {
    "stored_events_refuse_update",
    "stored_events_refuse_delete",
    "event_chain_refuse_update",
    "event_chain_refuse_delete",
    "stored_events_refuse_replace",
    "event_chain_refuse_replace",
}
POSTGRES_TRIGGERS = {
    "ledger_events_refuse_change",
    "ledger_events_refuse_truncate",
    "event_chain_refuse_change",
    "event_chain_refuse_truncate",
}


# --- direct database access ---------------------------------------------------------------------


@dataclass
class Raw:
    """A connection straight to the store's database, beside the ledger.

    SQL is written once with `?` placeholders and `{events}`, `{chain}`, `{pos}` (the events
    table, the chain table, the events' log position column)."""

    connection: Any
    is_postgres: bool
    schema: str = ""

    @property
    def names(self) -> dict[str, str]:
        if self.is_postgres:
            return {
                "events": f'"{self.schema}"."ledger_events"',
                "chain": f'"{self.schema}"."event_chain"',
                "pos": "notification_id",
            }
        return {"events": "stored_events", "chain": "event_chain", "pos": "rowid"}

    def execute(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        statement = text.format(**self.names)
        if self.is_postgres:
            statement = statement.replace("?", "%s")
        cursor = self.connection.execute(statement, params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def rollback(self) -> None:
        self.connection.rollback()

    def event(self, position: int) -> tuple[Any, int, str, bytes]:
        """(originator id as stored, version, topic, state bytes) at a log position."""
        [(originator_id, version, topic, state)] = self.execute(
            "SELECT originator_id, originator_version, topic, state FROM {events} WHERE {pos} = ?",
            (position,),
        )
        return originator_id, int(version), str(topic), bytes(state)

    def events(self) -> list[tuple[int, UUID, int, str, bytes]]:
        """Every stored event as (position, originator id, version, topic, state), in order."""
        return [
            (int(p), UUID(str(o)), int(v), str(t), bytes(s))
            for p, o, v, t, s in self.execute(
                "SELECT {pos}, originator_id, originator_version, topic, state FROM {events} "
                "ORDER BY {pos}"
            )
        ]

    def record(self, position: int) -> ChainedRecord:
        originator_id, version, topic, state = self.event(position)
        return ChainedRecord(
            position=position,
            originator_id=UUID(str(originator_id)),
            originator_version=version,
            topic=topic,
            state=state,
        )

    def links(self) -> dict[int, str]:
        return {
            int(p): str(h)
            for p, h in self.execute("SELECT position, hash FROM {chain} ORDER BY position")
        }

    def last_position(self) -> int:
        [(position,)] = self.execute("SELECT MAX({pos}) FROM {events}")
        return int(position)

    def snapshot(self) -> tuple[list[Any], dict[int, str]]:
        """Everything the log and the chain hold, byte for byte."""
        return self.events(), self.links()

    def triggers(self) -> set[str]:
        if self.is_postgres:
            rows = self.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D' "
                "AND tgrelid IN (?::regclass, ?::regclass)",
                (self.names["events"], self.names["chain"]),
            )
        else:
            rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {str(name) for (name,) in rows}

    def drop_triggers(self) -> None:
        if self.is_postgres:
            for name in POSTGRES_TRIGGERS:
                table = "{events}" if name.startswith("ledger_events") else "{chain}"
                self.execute(f'DROP TRIGGER "{name}" ON {table}')
        else:
            for name in SQLITE_TRIGGERS:
                self.execute(f"DROP TRIGGER {name}")


@contextmanager
def raw(url: str, *, bypass: str | None = None) -> Iterator[Raw]:
    """A direct connection, committed on a clean exit. `bypass` gets past the append-only
    triggers first: "drop" (SQLite: DROP TRIGGER in this connection), "replica" (PostgreSQL:
    session_replication_role) or "disable" (PostgreSQL: ALTER TABLE ... DISABLE TRIGGER USER,
    enabled again before the commit, so that the tampered store looks untouched)."""
    env = env_for_url(url)
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        assert bypass in (None, "drop"), bypass
        connection = sqlite3.connect(env["SQLITE_DBNAME"])
        try:
            db = Raw(connection, is_postgres=False)
            if bypass == "drop":
                db.drop_triggers()
            yield db
            connection.commit()
        finally:
            connection.close()
        return
    assert bypass in (None, "replica", "disable"), bypass
    with psycopg.connect(POSTGRES_URL) as connection:
        db = Raw(connection, is_postgres=True, schema=env["POSTGRES_SCHEMA"])
        if bypass == "replica":
            db.execute("SET session_replication_role = replica")
        if bypass == "disable":
            db.execute("ALTER TABLE {events} DISABLE TRIGGER USER")
            db.execute("ALTER TABLE {chain} DISABLE TRIGGER USER")
        yield db
        if bypass == "disable":
            db.execute("ALTER TABLE {events} ENABLE TRIGGER USER")
            db.execute("ALTER TABLE {chain} ENABLE TRIGGER USER")


def attacker_bypass(url: str, postgres_way: str = "replica") -> str:
    return "drop" if url.startswith("sqlite") else postgres_way


# --- the store ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    url: str
    positions: list[int]  # every event's log position, in order
    links: dict[int, str]  # the chain as the ledger wrote it
    transfers: list[int]  # each user's MarginAccount.TransferredIn of ABC, in log order
    borrowed: int  # the MarginAccount.Borrowed

    @property
    def head(self) -> int:
        return self.positions[-1]

    def digest_at(self, position: int) -> Digest:
        return Digest(position=position, hash=self.links[position])

    def checked_before(self, position: int) -> int:
        return sum(1 for p in self.positions if p < position)


def accepted(outcome: Outcome) -> None:
    assert outcome.is_accepted, outcome


def build_store(url: str) -> Store:
    with Ledger(url) as ledger:
        setup_capped_asset(ledger)
        accepted(
            run(ledger, command("set_borrow_terms", asset="USDT", hourly_interest_rate="0.0001"))
        )
        for minute, user in enumerate(USERS, start=1):
            accepted(transfer_in(ledger, user, "100", effective_at=at(minute)))
        accepted(transfer_in(ledger, "u0", "500", asset="USDT", effective_at=at(7)))
        accepted(
            run(
                ledger,
                command(
                    "borrow",
                    user="u0",
                    account="cross",
                    asset="USDT",
                    quantity="50",
                    effective_at=at(10),
                ),
            )
        )
        notifications = list(ledger.recorder.select_notifications(start=1, limit=10_000))
    with raw(url) as db:
        links = db.links()
        positions = [p for p, *_ in db.events()]
    assert positions == [n.id for n in notifications]
    assert sorted(links) == positions, "every event has its link, and only events have one"
    assert len(positions) >= 30
    transfers = [
        n.id
        for n in notifications
        if n.topic.endswith(":MarginAccount.TransferredIn") and b'"asset":"ABC"' in n.state
    ]
    [borrowed] = [n.id for n in notifications if n.topic.endswith(":MarginAccount.Borrowed")]
    assert len(transfers) == len(USERS)
    return Store(url, positions, links, transfers, borrowed)


def more_commands(url: str) -> None:
    with Ledger(url) as ledger:
        for minute, user in enumerate(("u5", "u6"), start=20):
            accepted(transfer_in(ledger, user, "70", effective_at=at(minute)))
        accepted(
            run(
                ledger,
                command(
                    "repay",
                    user="u0",
                    account="cross",
                    asset="USDT",
                    quantity="20",
                    effective_at=at(30),
                ),
            )
        )


def documented_link(
    previous: str, position: int, originator_id: UUID, version: int, topic: str, state: bytes
) -> str:
    """chain.py's formula written out independently: sha256 over the previous link, then each
    field as an 8-byte big-endian length and its bytes."""
    digest = hashlib.sha256(previous.encode())
    for part in (
        str(position).encode(),
        str(originator_id).encode(),
        str(version).encode(),
        topic.encode(),
        state,
    ):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


# --- the CLI ------------------------------------------------------------------------------------


def verify_json(url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = invoke("verify", "--db", url, "--json", "--quiet", *extra)
    [document] = json_lines(result.stdout)
    return result.exit_code, document


def verify_human(url: str, *extra: str) -> tuple[int, str]:
    result = invoke("verify", "--db", url, *extra)
    return result.exit_code, result.stdout


def says_tampered_at(text: str, position: int) -> bool:
    return "TAMPERED" in text and re.search(rf"first bad position\W+{position}\b", text) is not None


def assert_cli_finds(url: str, report: ChainReport, *extra: str) -> None:
    """`ledger verify --json` says what the API said; the table says TAMPERED and where."""
    assert report.first_bad_position is not None
    code, document = verify_json(url, *extra)
    assert code == EXIT_TAMPERED, document
    assert document == report.model_dump(mode="json")
    code, text = verify_human(url, *extra)
    assert code == EXIT_TAMPERED, text
    assert says_tampered_at(text, report.first_bad_position), text


# --- 1. an untouched log ------------------------------------------------------------------------


def test_an_untouched_log_verifies_and_a_digest_written_down_still_holds_later(
    database_url: str,
) -> None:
    store = build_store(database_url)
    head = store.digest_at(store.head)

    # The stored links are the documented formula over the stored records, from GENESIS.
    with raw(database_url) as db:
        previous = GENESIS
        for position, originator_id, version, topic, state in db.events():
            previous = documented_link(previous, position, originator_id, version, topic, state)
            assert store.links[position] == previous, position

    with Ledger(database_url) as ledger:
        assert head_digest(ledger) == head
        assert verify_chain(ledger) == ChainReport(
            is_intact=True,
            events_checked=len(store.positions),
            head=head,
            first_bad_position=None,
            problem=None,
        )
        assert verify_chain(ledger, digest=head).is_intact

    result = invoke("digest", "--db", database_url)
    assert result.exit_code == EXIT_OK
    assert result.stdout.strip() == str(head) == f"{store.head}:{store.links[store.head]}"
    result = invoke("digest", "--db", database_url, "--json")
    assert result.exit_code == EXIT_OK
    assert json_lines(result.stdout) == [
        {"position": head.position, "hash": head.hash, "digest": str(head)}
    ]

    code, document = verify_json(database_url)
    assert code == EXIT_OK
    assert document["is_intact"] is True
    assert document["events_checked"] == len(store.positions)
    assert document["first_bad_position"] is None
    code, text = verify_human(database_url)
    assert code == EXIT_OK
    assert "intact" in text and "TAMPERED" not in text
    code, document = verify_json(database_url, "--digest", str(head))
    assert code == EXIT_OK
    assert document["digest"] == {"position": head.position, "hash": head.hash}

    # The real console script, the way an operator runs it.
    written_down = subprocess.run(
        [str(ledger_script()), "digest", "--db", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    assert written_down == str(head)

    more_commands(database_url)
    with Ledger(database_url) as ledger:
        later = head_digest(ledger)
        assert later is not None and later.position > head.position
        report = verify_chain(ledger)
        assert report.is_intact and report.head == later
        against_old = verify_chain(ledger, digest=head)
        assert against_old.is_intact, against_old
        assert against_old.events_checked == len(store.positions)  # it stops at the digest
        assert verify_chain(ledger, digest=later).is_intact
    checked = subprocess.run(
        [str(ledger_script()), "verify", "--db", database_url, "--digest", written_down],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == EXIT_OK, (checked.stdout, checked.stderr)
    assert "intact" in checked.stdout

    # A digest that does not match this log (another hash at the position, or a position past
    # the head) is not intact, and names the digest's position.
    wrong_hash = Digest(position=head.position, hash=store.links[head.position - 1])
    beyond = Digest(position=later.position + 5, hash=later.hash)
    for pinned, problem in ((wrong_hash, "differs"), (beyond, "no event")):
        with Ledger(database_url) as ledger:
            report = verify_chain(ledger, digest=pinned)
        assert not report.is_intact
        assert report.first_bad_position == pinned.position
        assert report.problem is not None and problem in report.problem
        assert_cli_finds(database_url, report, "--digest", str(pinned))


def test_an_empty_log_has_no_digest_and_is_intact(database_url: str) -> None:
    result = invoke("digest", "--db", database_url)
    assert result.exit_code == EXIT_OK
    assert "no digest" in result.stdout
    result = invoke("digest", "--db", database_url, "--json")
    assert json_lines(result.stdout) == [None]
    code, document = verify_json(database_url)
    assert code == EXIT_OK
    assert document["is_intact"] is True
    assert (document["events_checked"], document["head"]) == (0, None)
    # A digest cannot hold for a log that has nothing at its position.
    code, document = verify_json(database_url, "--digest", "1:" + "a" * 64)
    assert code == EXIT_TAMPERED
    assert document["first_bad_position"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "12",
        "12:abc",
        "x:" + "a" * 64,
        "-1:" + "a" * 64,
        "12:" + "g" * 64,
        "12:" + "a" * 65,
    ],
)
def test_a_malformed_digest_cannot_run_and_names_the_option(sqlite_url: str, text: str) -> None:
    result = invoke("verify", "--db", sqlite_url, "--digest", text)
    assert result.exit_code == EXIT_CANNOT_RUN
    assert "--digest" in result.stderr
    assert result.stdout == ""


# --- 2. tampering -------------------------------------------------------------------------------


def replace_in_state(db: Raw, position: int, old: bytes, new: bytes) -> None:
    *_, state = db.event(position)
    assert old in state, (position, state)
    db.execute("UPDATE {events} SET state = ? WHERE {pos} = ?", (state.replace(old, new), position))


def alter_quantity(db: Raw, store: Store) -> int:
    p = store.transfers[1]
    replace_in_state(db, p, b'"quantity":"100"', b'"quantity":"900"')
    return p


def alter_first_event(db: Raw, store: Store) -> int:
    replace_in_state(db, store.positions[0], b'"actor":"system"', b'"actor":"admin"')
    return store.positions[0]


def alter_last_event(db: Raw, store: Store) -> int:
    replace_in_state(db, store.head, b'"quantity":"50"', b'"quantity":"5"')
    return store.head


def delete_event(db: Raw, store: Store) -> int:
    p = store.transfers[2]
    db.execute("DELETE FROM {events} WHERE {pos} = ?", (p,))
    return p


def swap_states(db: Raw, store: Store) -> int:
    p, q = store.transfers[1], store.transfers[3]
    *_, state_p = db.event(p)
    *_, state_q = db.event(q)
    assert state_p != state_q
    db.execute("UPDATE {events} SET state = ? WHERE {pos} = ?", (state_q, p))
    db.execute("UPDATE {events} SET state = ? WHERE {pos} = ?", (state_p, q))
    return p


def swap_identities(db: Raw, store: Store) -> int:
    """The originator, version and topic of two events trade places (their states stay)."""
    p, q = store.transfers[1], store.borrowed
    assert p < q
    originator_p, version_p, topic_p, _ = db.event(p)
    originator_q, version_q, topic_q, _ = db.event(q)
    assert originator_p != originator_q and topic_p != topic_q
    update = (
        "UPDATE {events} SET originator_id = ?, originator_version = ?, topic = ? WHERE {pos} = ?"
    )
    db.execute("UPDATE {events} SET originator_version = -1 WHERE {pos} = ?", (p,))  # unique key
    db.execute(update, (originator_p, version_p, topic_p, q))
    db.execute(update, (originator_q, version_q, topic_q, p))
    return p


def forge_event(db: Raw, store: Store) -> tuple[int, ChainedRecord]:
    """A copy of u4's transfer, as the next version of its account, at the end of the log."""
    originator_id, _version, topic, state = db.event(store.transfers[4])
    [(last_version,)] = db.execute(
        "SELECT MAX(originator_version) FROM {events} WHERE originator_id = ?", (originator_id,)
    )
    version = int(last_version) + 1
    document = json.loads(state)
    document["originator_version"] = version
    forged_state = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    db.execute(
        "INSERT INTO {events} (originator_id, originator_version, topic, state) "
        "VALUES (?, ?, ?, ?)",
        (originator_id, version, topic, forged_state),
    )
    position = db.last_position()
    assert position > store.head
    return position, db.record(position)


def append_forged_event(db: Raw, store: Store) -> int:
    position, _record = forge_event(db, store)
    return position


def append_forged_event_and_link(db: Raw, store: Store) -> int:
    position, record = forge_event(db, store)
    wrong_previous = store.links[store.head - 1]  # a real link, but not the last one
    db.execute(
        "INSERT INTO {chain} (position, hash) VALUES (?, ?)",
        (position, link_of(wrong_previous, record)),
    )
    return position


def alter_link(db: Raw, store: Store) -> int:
    p = store.transfers[2]
    db.execute(
        "UPDATE {chain} SET hash = ? WHERE position = ?",
        (hashlib.sha256(b"forged").hexdigest(), p),
    )
    return p


@dataclass(frozen=True)
class Tampering:
    name: str
    apply: Callable[[Raw, Store], int]  # returns the first bad position
    problem: str  # words the report's problem must contain
    postgres_way: str = "replica"

    def __str__(self) -> str:
        return self.name


TAMPERINGS = [
    Tampering("alter-quantity", alter_quantity, "altered"),
    Tampering("alter-first-event", alter_first_event, "altered", "disable"),
    Tampering("alter-last-event", alter_last_event, "altered"),
    Tampering("delete-event", delete_event, "missing", "disable"),
    Tampering("swap-states", swap_states, "altered"),
    Tampering("swap-originator-version-topic", swap_identities, "altered", "disable"),
    Tampering("append-forged-event", append_forged_event, "no link"),
    Tampering("append-forged-event-and-link", append_forged_event_and_link, "altered", "disable"),
    Tampering("alter-link", alter_link, "altered"),
]


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=str)
def test_tampering_in_sql_is_found_at_its_first_bad_position(
    database_url: str, tampering: Tampering, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = build_store(database_url)
    with raw(database_url) as db:
        before = db.snapshot()
    with raw(database_url, bypass=attacker_bypass(database_url, tampering.postgres_way)) as db:
        bad = tampering.apply(db, store)
    with raw(database_url) as db:
        assert db.snapshot() != before, "the tampering was committed"

    with Ledger(database_url) as ledger:
        report = verify_chain(ledger)
        monkeypatch.setattr(limits, "PROJECTION_BATCH_SIZE", 3)  # batch edges change nothing
        in_small_batches = verify_chain(ledger)
        monkeypatch.undo()
    assert not report.is_intact
    assert report.first_bad_position == bad
    assert report.problem is not None and tampering.problem in report.problem
    assert report.events_checked == store.checked_before(bad)
    assert report.head == (None if bad == store.positions[0] else store.digest_at(bad - 1))
    assert in_small_batches == report
    assert_cli_finds(database_url, report)


def test_a_rewrite_with_every_later_link_recomputed_is_found_against_an_earlier_digest(
    database_url: str,
) -> None:
    store = build_store(database_url)
    p = store.transfers[1]
    written_down = store.digest_at(store.head)
    with raw(database_url, bypass=attacker_bypass(database_url)) as db:
        replace_in_state(db, p, b'"quantity":"100"', b'"quantity":"900"')
        previous = store.links[p - 1]
        for position in (q for q in store.positions if q >= p):
            previous = link_of(previous, db.record(position))
            db.execute("UPDATE {chain} SET hash = ? WHERE position = ?", (previous, position))

    with Ledger(database_url) as ledger:
        plain = verify_chain(ledger)
        against_head = verify_chain(ledger, digest=written_down)
        against_p = verify_chain(ledger, digest=store.digest_at(p))
        before_p = verify_chain(ledger, digest=store.digest_at(p - 1))
    # Without a digest the rewritten chain is consistent with itself...
    assert plain.is_intact
    assert plain.events_checked == len(store.positions)
    assert plain.head is not None and plain.head.position == store.head
    assert plain.head.hash != written_down.hash
    code, document = verify_json(database_url)
    assert (code, document["is_intact"]) == (EXIT_OK, True)
    # ...but not with what the auditor wrote down before the tampering.
    assert not against_head.is_intact
    assert against_head.first_bad_position == written_down.position
    assert against_head.problem is not None and "digest" in against_head.problem
    assert against_head.digest == written_down
    assert_cli_finds(database_url, against_head, "--digest", str(written_down))
    # A digest written down right after the event at p names p itself...
    assert (against_p.is_intact, against_p.first_bad_position) == (False, p)
    # ...and one from before p still holds: the history up to it is unchanged.
    assert before_p.is_intact, before_p
    code, document = verify_json(database_url, "--digest", str(store.digest_at(p - 1)))
    assert (code, document["is_intact"]) == (EXIT_OK, True)


def test_a_log_cut_short_with_its_links_is_found_against_an_earlier_digest(
    database_url: str,
) -> None:
    store = build_store(database_url)
    written_down = store.digest_at(store.head)
    cut = store.positions[-3]
    with raw(database_url, bypass=attacker_bypass(database_url, "disable")) as db:
        db.execute("DELETE FROM {events} WHERE {pos} >= ?", (cut,))
        db.execute("DELETE FROM {chain} WHERE position >= ?", (cut,))
    with Ledger(database_url) as ledger:
        plain = verify_chain(ledger)
        report = verify_chain(ledger, digest=written_down)
    assert plain.is_intact and plain.events_checked == store.checked_before(cut)
    assert not report.is_intact
    assert report.first_bad_position == written_down.position
    assert report.problem is not None and "no event" in report.problem
    assert_cli_finds(database_url, report, "--digest", str(written_down))


def test_a_position_left_unused_by_a_rolled_back_write_is_not_tampering(
    database_url: str,
) -> None:
    """PostgreSQL's sequence skips the position a rolled-back insert took: a gap in the log
    that the chain must not mistake for a deleted event."""
    store = build_store(database_url)
    with raw(database_url) as db:
        db.execute(
            "INSERT INTO {events} (originator_id, originator_version, topic, state) "
            "VALUES (?, 1, 'rolled.back:Event', ?)",
            (uuid.uuid4() if db.is_postgres else uuid.uuid4().hex, b"{}"),
        )
        db.rollback()
    more_commands(database_url)
    with raw(database_url) as db:
        positions = [p for p, *_ in db.events()]
    if database_url.startswith("postgresql"):
        assert positions[-1] > len(positions), "the rolled-back insert left a gap"
    with Ledger(database_url) as ledger:
        report = verify_chain(ledger)
        against_old = verify_chain(ledger, digest=store.digest_at(store.head))
    assert report.is_intact, report
    assert report.events_checked == len(positions)
    assert against_old.is_intact, against_old
    code, _document = verify_json(database_url)
    assert code == EXIT_OK


# --- 3. append-only in the database -------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    name: str
    statement: str
    params: tuple[Any, ...] = ()


BOTH = [
    Refused("update-event-state", "UPDATE {events} SET state = ?", (b"{}",)),
    Refused(
        "update-last-event-version",
        "UPDATE {events} SET originator_version = originator_version + 1000 "
        "WHERE {pos} = (SELECT MAX({pos}) FROM {events})",
    ),
    Refused(
        "delete-last-event", "DELETE FROM {events} WHERE {pos} = (SELECT MAX({pos}) FROM {events})"
    ),
    Refused("delete-all-events", "DELETE FROM {events}"),
    Refused(
        "upsert-event",
        "INSERT INTO {events} (originator_id, originator_version, topic, state) "
        "SELECT originator_id, originator_version, topic, ? FROM {events} WHERE {pos} = 1 "
        "ON CONFLICT (originator_id, originator_version) DO UPDATE SET state = excluded.state",
        (b"{}",),
    ),
    Refused("update-link", "UPDATE {chain} SET hash = ?", ("0" * 64,)),
    Refused(
        "delete-last-link",
        "DELETE FROM {chain} WHERE position = (SELECT MAX(position) FROM {chain})",
    ),
    Refused(
        "upsert-link",
        "INSERT INTO {chain} (position, hash) VALUES (1, ?) "
        "ON CONFLICT (position) DO UPDATE SET hash = excluded.hash",
        ("0" * 64,),
    ),
]
POSTGRES_ONLY = [
    Refused("truncate-events", "TRUNCATE {events}"),
    Refused("truncate-chain", "TRUNCATE {chain}"),
]
SQLITE_ONLY = [
    Refused(
        "replace-event",
        "REPLACE INTO {events} (rowid, originator_id, originator_version, topic, state) "
        "SELECT rowid, originator_id, originator_version, topic, ? FROM {events} WHERE rowid = 1",
        (b"{}",),
    ),
    Refused(
        "replace-link", "INSERT OR REPLACE INTO {chain} (position, hash) VALUES (1, ?)", ("0" * 64,)
    ),
]
REFUSED_CASES = [
    *(
        pytest.param(backend, case, id=f"{backend}-{case.name}")
        for backend in ("sqlite", "postgres")
        for case in BOTH
    ),
    *(pytest.param("postgres", case, id=f"postgres-{case.name}") for case in POSTGRES_ONLY),
    *(pytest.param("sqlite", case, id=f"sqlite-{case.name}") for case in SQLITE_ONLY),
]


@pytest.mark.parametrize(("backend", "refused"), REFUSED_CASES)
def test_the_database_refuses_to_change_the_log_or_the_chain(
    request: pytest.FixtureRequest, backend: str, refused: Refused
) -> None:
    url = str(request.getfixturevalue(f"{backend}_url"))
    store = build_store(url)
    with raw(url) as db:
        before = db.snapshot()
    with raw(url) as db:
        with pytest.raises((sqlite3.Error, psycopg.Error)) as raised:
            db.execute(refused.statement, refused.params)
        db.rollback()
    assert "append-only" in str(raised.value)
    with raw(url) as db:
        assert db.snapshot() == before
    with Ledger(url) as ledger:
        assert verify_chain(ledger, digest=store.digest_at(store.head)).is_intact


def test_reopening_the_ledger_recreates_dropped_triggers(database_url: str) -> None:
    build_store(database_url)
    expected = POSTGRES_TRIGGERS if database_url.startswith("postgresql") else SQLITE_TRIGGERS
    with raw(database_url) as db:
        assert db.triggers() == expected
        db.drop_triggers()
    with raw(database_url) as db:
        assert db.triggers() == set()
    Ledger(database_url).close()
    with raw(database_url) as db:
        assert db.triggers() == expected
        before = db.snapshot()
    with raw(database_url) as db:
        with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
            db.execute("DELETE FROM {events}")
        db.rollback()
    with raw(database_url) as db:
        assert db.snapshot() == before


def test_reopening_the_ledger_enables_disabled_triggers_again(postgres_url: str) -> None:
    build_store(postgres_url)
    with raw(postgres_url) as db:
        db.execute("ALTER TABLE {events} DISABLE TRIGGER USER")
        db.execute("ALTER TABLE {chain} DISABLE TRIGGER USER")
    with raw(postgres_url) as db:
        assert db.triggers() == set()  # only enabled ones are listed
    Ledger(postgres_url).close()
    with raw(postgres_url) as db:
        assert db.triggers() == POSTGRES_TRIGGERS
        before = db.snapshot()
    with raw(postgres_url) as db:
        with pytest.raises(psycopg.Error, match="append-only"):
            db.execute("TRUNCATE {chain}")
        db.rollback()
    with raw(postgres_url) as db:
        assert db.snapshot() == before


# --- 4. the auditor role (PostgreSQL) -----------------------------------------------------------


@pytest.fixture
def auditor() -> Iterator[str]:
    """A role name unique to the test; the role and its privileges are dropped afterwards."""
    role = f"auditor_{uuid.uuid4().hex[:12]}"
    yield role
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            connection.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def create_auditor_role(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def schema_of(url: str) -> str:
    return env_for_url(url)["POSTGRES_SCHEMA"]


def as_role(url: str, role: str) -> str:
    parsed = urlparse(url)
    return parsed._replace(netloc=f"{role}@{parsed.hostname}:{parsed.port or 5432}").geturl()


@dataclass
class SchemaTables:
    """Every table of the store's schema, read as the owner (postgres)."""

    schema: str
    names: list[str] = field(default_factory=list)

    def qualified(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    def load(self) -> "SchemaTables":
        with psycopg.connect(POSTGRES_URL) as connection:
            rows = connection.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
                (self.schema,),
            ).fetchall()
        self.names = [str(name) for (name,) in rows]
        return self

    def contents(self) -> dict[str, list[str]]:
        with psycopg.connect(POSTGRES_URL) as connection:
            return {
                table: sorted(
                    repr(row)
                    for row in connection.execute(
                        sql.SQL("SELECT * FROM {}").format(self.qualified(table))
                    ).fetchall()
                )
                for table in self.names
            }

    def first_column(self, table: str) -> str:
        with psycopg.connect(POSTGRES_URL) as connection:
            [(column,)] = connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s AND ordinal_position = 1",
                (self.schema, table),
            ).fetchall()
        return str(column)


def refused_writes(tables: SchemaTables, table: str) -> list[sql.Composable]:
    name = tables.qualified(table)
    column = sql.Identifier(tables.first_column(table))
    return [
        sql.SQL("INSERT INTO {0} SELECT * FROM {0} LIMIT 1").format(name),
        sql.SQL("UPDATE {0} SET {1} = {1}").format(name, column),
        sql.SQL("DELETE FROM {0}").format(name),
        sql.SQL("TRUNCATE {0}").format(name),
        sql.SQL("ALTER TABLE {0} DISABLE TRIGGER USER").format(name),
    ]


def test_the_auditor_role_reads_everything_and_writes_nothing(
    postgres_url: str, auditor: str
) -> None:
    build_store(postgres_url)
    assert invoke("project", "--db", postgres_url, "--quiet").exit_code == EXIT_OK
    created = create_auditor_role(postgres_url, "--role", auditor)
    assert created.returncode == EXIT_OK, created.stderr
    assert auditor in created.stdout

    tables = SchemaTables(schema_of(postgres_url)).load()
    assert {"ledger_events", "event_chain", "accounts"} <= set(tables.names)
    before = tables.contents()
    assert before["accounts"] and before["event_chain"]

    with psycopg.connect(POSTGRES_URL, user=auditor, autocommit=True) as connection:
        for table in tables.names:
            rows = connection.execute(
                sql.SQL("SELECT * FROM {}").format(tables.qualified(table))
            ).fetchall()
            assert sorted(map(repr, rows)) == before[table], table

        writes = [s for table in tables.names for s in refused_writes(tables, table)]
        writes += [
            sql.SQL("CREATE TABLE {} (x int)").format(tables.qualified("auditor_made")),
            sql.SQL("SET session_replication_role = replica"),
        ]
        for statement in writes:
            # In its default (read-only) transactions...
            with pytest.raises(
                (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege)
            ):
                connection.execute(statement)
            # ...and where it asks for a read-write one: the privileges refuse, not the mode.
            connection.execute("BEGIN READ WRITE")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)
            connection.execute("ROLLBACK")

    assert SchemaTables(tables.schema).load().names == tables.names
    assert tables.contents() == before


def test_the_auditor_role_reads_tables_created_after_it(postgres_url: str, auditor: str) -> None:
    build_store(postgres_url)
    assert invoke("project", "--db", postgres_url, "--quiet").exit_code == EXIT_OK
    assert create_auditor_role(postgres_url, "--role", auditor).returncode == EXIT_OK
    tables = SchemaTables(schema_of(postgres_url))

    # The accounts read model is dropped and created again by its owner...
    rebuilt = invoke("projections", "rebuild", "accounts", "--db", postgres_url, "--quiet")
    assert rebuilt.exit_code == EXIT_OK, rebuilt.stderr
    # ...and a table appears that did not exist when the role was made.
    with psycopg.connect(POSTGRES_URL) as connection:
        connection.execute(sql.SQL("CREATE TABLE {} (x int)").format(tables.qualified("later")))
        connection.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(tables.qualified("later")))
    owner = tables.load().contents()
    assert len(owner["accounts"]) == len(USERS)

    with psycopg.connect(POSTGRES_URL, user=auditor, autocommit=True) as connection:
        for table in ("accounts", "later"):
            rows = connection.execute(
                sql.SQL("SELECT * FROM {}").format(tables.qualified(table))
            ).fetchall()
            assert sorted(map(repr, rows)) == owner[table], table
        connection.execute("BEGIN READ WRITE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(sql.SQL("DELETE FROM {}").format(tables.qualified("accounts")))
        connection.execute("ROLLBACK")


def test_creating_the_auditor_role_twice_is_fine(postgres_url: str, auditor: str) -> None:
    build_store(postgres_url)
    first = create_auditor_role(postgres_url, "--role", auditor)
    again = create_auditor_role(postgres_url, "--role", auditor, "--password", "s3cret")
    assert (first.returncode, again.returncode) == (EXIT_OK, EXIT_OK), again.stderr
    tables = SchemaTables(schema_of(postgres_url))
    with psycopg.connect(POSTGRES_URL, user=auditor, autocommit=True) as connection:
        [(count,)] = connection.execute(
            sql.SQL("SELECT COUNT(*) FROM {}").format(tables.qualified("event_chain"))
        ).fetchall()
        assert count > 0
        connection.execute("BEGIN READ WRITE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(sql.SQL("DELETE FROM {}").format(tables.qualified("event_chain")))
        connection.execute("ROLLBACK")


def test_the_auditor_role_can_run_verify_and_digest(postgres_url: str, auditor: str) -> None:
    store = build_store(postgres_url)
    assert create_auditor_role(postgres_url, "--role", auditor).returncode == EXIT_OK
    url = as_role(postgres_url, auditor)
    result = invoke("digest", "--db", url)
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stdout.strip() == str(store.digest_at(store.head))
    code, document = verify_json(url, "--digest", str(store.digest_at(store.head)))
    assert (code, document["is_intact"]) == (EXIT_OK, True)


@pytest.mark.parametrize(
    ("url", "role", "says"),
    [
        pytest.param("sqlite:///ledger.sqlite3", "auditor", "PostgreSQL", id="sqlite-url"),
        pytest.param(f"{POSTGRES_URL}?schema=x", "Bad-Role", "--role", id="upper-case-dash"),
        pytest.param(f"{POSTGRES_URL}?schema=x", "1auditor", "--role", id="leading-digit"),
        pytest.param(
            f"{POSTGRES_URL}?schema=x", 'a"; DROP ROLE postgres; --', "--role", id="quote"
        ),
        pytest.param(f"{POSTGRES_URL}?schema=x", "a" * 64, "--role", id="too-long"),
        pytest.param(
            "postgresql://postgres@127.0.0.1:1/none?schema=x", "auditor", "error", id="unreachable"
        ),
    ],
)
def test_the_auditor_script_cannot_run_on_a_bad_url_or_role(url: str, role: str, says: str) -> None:
    result = create_auditor_role(url, "--role", role)
    assert result.returncode == EXIT_CANNOT_RUN, (result.stdout, result.stderr)
    assert says in result.stderr
    assert result.stdout == ""
