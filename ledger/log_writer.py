"""The write path's own connection to the event log: one transaction per batch of commands that
holds the log's write lock from its first statement to its commit.

Holding the lock while deciding (pessimistic, where the library locks only to insert) is what
makes the ledger's aggregate cache safe without a query per aggregate: under the lock the only
events a cached aggregate can miss are those appended since this process last held it, and one
query for "everything after the position I last saw" brings them all. It also makes decisions
serial: no version conflicts, no retries, and a cap decided against the total as it stands.

Statements are few, and on PostgreSQL two round trips in all: the lock, the chain's head, the
next position, the tail of the log and the idempotency lookups go in the first; the events, the
chain's links, the notification and the commit in the second. Under the lock the next positions
are known before inserting (no one else can append), so the links are computed first and travel
with the events.
"""

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent

from ledger import limits
from ledger.audit.chain import GENESIS
from ledger.audit.recorders import (
    ANSWERS_TABLE,
    CHAIN_TABLE,
    EXPECT_FUNCTION,
    QUEUE_TABLE,
    links_for,
)
from ledger.handoff import Offer

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class LoggedEvent:
    """An event of the log's tail: its position, aggregate and version, and its stored record,
    built only when asked (for an aggregate the cache holds: most of a busy tail is other
    writers' requests and accounts)."""

    position: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes  # as the driver returned it
    state_as_hex_text: bool = False  # PostgreSQL's text form of bytea: \x and hexadecimal

    def stored(self) -> StoredEvent:
        state = bytes.fromhex(self.state[2:].decode()) if self.state_as_hex_text else self.state
        return StoredEvent(
            originator_id=self.originator_id,
            originator_version=self.originator_version,
            topic=self.topic,
            state=state,
        )


Answered = tuple[UUID, str]  # a queued run's ticket, and its answers as JSON (ledger/handoff.py)
Queued = tuple[UUID, str, list[UUID]]  # a queued run: ticket, commands as JSON, ids to look up


@dataclass(frozen=True)
class Opened:
    """What a write transaction sees once it holds the lock."""

    head: int  # the last position in the log (0 when empty)
    head_link: str  # the chain's link at `head`
    tail: list[LoggedEvent]  # events after the position asked for, up to TAIL_EVENTS_MAX
    tail_complete: bool  # False: more than TAIL_EVENTS_MAX events followed it
    existing: set[UUID]  # which of the ids asked about have events
    # PostgreSQL, commands handed to the lock's holder (ledger/handoff.py): other writers'
    # queued commands this transaction took to decide (ticket, commands as JSON, their ids),
    # or, when another writer decided ours meanwhile, their answers (the lock already let go).
    taken: list[Queued] = field(default_factory=list)
    answers: str | None = None
    # PostgreSQL: opened without the lock or any read, the log assumed where this writer left
    # it; the commit takes the lock and checks that (LogWriter.speculate).
    speculative: bool = False


class SpeculationMissed(Exception):
    """A transaction opened by speculate() found the log moved (or the lock busy) at commit:
    nothing was written; decide again in a transaction opened by begin()."""


class LogWriter(Protocol):
    hands_off: bool  # whether begin() takes an Offer (ledger/handoff.py)

    def speculate(self, after: int) -> Opened | None:
        """A transaction that reads nothing and takes no lock until its commit, when this
        writer alone has been writing lately and the log is where it left it (`after`); None
        when that is not worth betting on."""
        ...

    def missed(self, *, absent_assumed_wrongly: bool) -> None:
        """A speculative transaction was rolled back (SpeculationMissed, or an id it assumed
        new had events)."""
        ...

    def begin(self, after: int, ask: Sequence[UUID], offer: Offer | None = None) -> Opened: ...

    def commit(
        self,
        opened: Opened,
        stored: Sequence[StoredEvent],
        answers: Sequence[Answered] = (),
        assumed_new: Sequence[UUID] = (),
    ) -> list[int]:
        """Append the events and their chain links, and the answers to the commands taken
        from other writers, and commit; the events' positions."""
        ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class SQLiteLogWriter:
    """BEGIN IMMEDIATE takes SQLite's one write lock at once (a deferred BEGIN would take it at
    the first insert, after deciding against a state another writer may change meanwhile)."""

    def __init__(self, path: str, events_table: str, lock_timeout: float) -> None:
        self.events = events_table
        self.lock_timeout = lock_timeout
        self.connection = sqlite3.connect(
            path, uri=True, isolation_level=None, check_same_thread=False, timeout=0
        )
        self._next_position = 0

    hands_off = False  # one file, one writer at a time, no server to queue commands on

    def speculate(self, after: int) -> Opened | None:
        return None  # its reads under the lock are local calls, not round trips

    def missed(self, *, absent_assumed_wrongly: bool) -> None:
        raise AssertionError("SQLite writers never speculate")

    def begin(self, after: int, ask: Sequence[UUID], offer: Offer | None = None) -> Opened:
        assert offer is None, "SQLite writers do not hand commands off"
        self._take_lock()
        try:
            return self._read_under_lock(after, ask)
        except BaseException:
            self.rollback()
            raise

    def _take_lock(self) -> None:
        """BEGIN IMMEDIATE, retried every millisecond up to the lock timeout: SQLite's own busy
        handler backs off to 100 ms sleeps, so a writer that commits and begins again keeps the
        lock while the others sleep (they starve)."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                self.connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise OperationalError(error) from error
                time.sleep(limits.SQLITE_LOCK_POLL_SECONDS)

    def _read_under_lock(self, after: int, ask: Sequence[UUID]) -> Opened:
        c = self.connection
        row = c.execute(
            f"SELECT position, hash FROM {CHAIN_TABLE} ORDER BY position DESC LIMIT 1"
        ).fetchone()
        head, head_link = (0, GENESIS) if row is None else (int(row[0]), str(row[1]))
        # The log is append-only (triggers refuse deletes), so under the write lock the next
        # rows are max(rowid)+1, +2, ...: positions known before inserting, one executemany.
        self._next_position = (
            int(c.execute(f"SELECT coalesce(max(rowid), 0) FROM {self.events}").fetchone()[0]) + 1
        )
        tail_rows = c.execute(
            f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events} "
            "WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, limits.TAIL_EVENTS_MAX + 1),
        ).fetchall()
        existing: set[UUID] = set()
        for start in range(0, len(ask), limits.SQL_PARAMETERS_MAX):
            chunk = [i.hex for i in ask[start : start + limits.SQL_PARAMETERS_MAX]]
            marks = ",".join("?" * len(chunk))
            existing.update(
                UUID(r[0])
                for r in c.execute(
                    f"SELECT originator_id FROM {self.events} WHERE originator_id IN ({marks}) "
                    "AND originator_version = 1",
                    chunk,
                )
            )
        return _opened(
            head,
            head_link,
            [LoggedEvent(int(p), UUID(i), int(v), str(t), bytes(s)) for p, i, v, t, s in tail_rows],
            existing,
        )

    def commit(
        self,
        opened: Opened,
        stored: Sequence[StoredEvent],
        answers: Sequence[Answered] = (),
        assumed_new: Sequence[UUID] = (),
    ) -> list[int]:
        assert not answers, "SQLite writers take no commands from others"
        c = self.connection
        positions = list(range(self._next_position, self._next_position + len(stored)))
        try:
            c.executemany(
                f"INSERT INTO {self.events} "
                "(rowid, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        position,
                        _uuid(event.originator_id).hex,
                        event.originator_version,
                        event.topic,
                        event.state,
                    )
                    for position, event in zip(positions, stored, strict=True)
                ],
            )
            c.executemany(
                f"INSERT INTO {CHAIN_TABLE} (position, hash) VALUES (?, ?)",
                links_for(opened.head_link, positions, stored),
            )
        except sqlite3.IntegrityError as error:
            raise IntegrityError(error) from error
        c.execute("COMMIT")
        return positions

    def rollback(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")

    def close(self) -> None:
        self.connection.close()


# The columns' types, in the order the COPYs below send them (binary COPY is typed exactly).
COPY_EVENT_TYPES = ("int8", "uuid", "int8", "text", "bytea")
COPY_LINK_TYPES = ("int8", "text")


class PostgresLogWriter:
    """The same EXCLUSIVE lock the library's recorder takes to insert (so its writers and ours
    queue on one lock and commit in position order), taken first instead of last."""

    def __init__(self, env: dict[str, str], events_table: str) -> None:
        import psycopg
        from psycopg.sql import SQL, Identifier

        schema = Identifier(env["POSTGRES_SCHEMA"] or "public")
        events = SQL("{0}.{1}").format(schema, Identifier(events_table))
        chain = SQL("{0}.{1}").format(schema, Identifier(CHAIN_TABLE))
        self.psycopg = psycopg
        self.env = env

        def text(template: str, *parts: Any) -> str:
            """Composed once: psycopg would compose a SQL object again on every execute."""
            return SQL(template).format(*parts).as_string(None)

        queue = SQL("{0}.{1}").format(schema, Identifier(QUEUE_TABLE))
        answers = SQL("{0}.{1}").format(schema, Identifier(ANSWERS_TABLE))
        self.events_table = text("{0}", events)

        def begin(lock: str, *then: str) -> str:
            # One simple-protocol query (several statements, literal values, one round trip):
            # a psycopg pipeline of the same statements costs more than the round trip saves.
            return text(
                "BEGIN; SET LOCAL lock_timeout = '{0}s'; LOCK TABLE {1} IN EXCLUSIVE MODE"
                + lock
                + "; EXECUTE ledger_head; EXECUTE ledger_next; "
                "EXECUTE ledger_tail(%(after)d, %(limit)d); EXECUTE ledger_exists('{{%(ids)s}}')"
                + "".join("; " + statement for statement in then),
                int(env["POSTGRES_LOCK_TIMEOUT"]),
                events,
            )

        self.begin_query = begin("")
        # With commands to hand off (ledger/handoff.py). First the lock if it is free at once,
        # taking whatever other writers queued meanwhile. Else the commands are queued
        # (committed on their own, unlogged: no fsync) and this writer waits for the holder to
        # finish, in ROW SHARE mode (in conflict with the holder's EXCLUSIVE only: the waiters
        # do not queue behind each other), and collects its answers if the holder took its
        # commands; if not, it tries the lock at once again (with its own queued commands
        # among those taken), and waits again if another waiter was quicker.
        self.begin_at_once_query = begin(" NOWAIT", "EXECUTE ledger_take(%(take)d, '%(nobody)s')")
        wait = text(
            "BEGIN; SET LOCAL lock_timeout = '{0}s'; LOCK TABLE {1} IN ROW SHARE MODE; "
            "EXECUTE ledger_answered('%(ticket)s'); COMMIT",
            int(env["POSTGRES_LOCK_TIMEOUT"]),
            events,
        )
        self.queue_and_wait_query = (
            text(
                "ROLLBACK; INSERT INTO {0} (ticket, commands, ask) "
                "VALUES ('%(ticket)s', %(commands)s, '{{%(ids)s}}'); COMMIT; ",
                queue,
            )
            + wait
        )
        self.wait_query = "ROLLBACK; " + wait
        self.begin_queued_query = begin(
            " NOWAIT",
            "EXECUTE ledger_take(%(take)d, '%(ticket)s')",
            "EXECUTE ledger_answered('%(ticket)s')",
        )
        self.withdraw_query = text("DELETE FROM {0} WHERE ticket = '%(ticket)s'", queue)
        self.answers_insert = text("INSERT INTO {0} (ticket, answers) VALUES ", answers)
        # Planned once per connection (planning them on every command cost more than running
        # them), by PREPARE rather than psycopg's automatic preparing, which deallocates every
        # prepared statement of the connection when it sees a ROLLBACK.
        self.prepare = [
            text(
                "PREPARE ledger_head AS "
                "SELECT position, hash FROM {0} ORDER BY position DESC LIMIT 1",
                chain,
            ),
            text(
                "PREPARE ledger_tail(bigint, bigint) AS SELECT notification_id, originator_id, "
                "originator_version, topic, state FROM {0} WHERE notification_id > $1 "
                "ORDER BY notification_id LIMIT $2",
                events,
            ),
            text(
                "PREPARE ledger_exists(uuid[]) AS SELECT originator_id FROM {0} "
                "WHERE originator_id = ANY($1) AND originator_version = 1",
                events,
            ),
            # Up to $1 queued runs, oldest first, unless $2's commands were answered already
            # (that writer then only collects its answers); each with which of its ids exist.
            text(
                "PREPARE ledger_take(bigint, uuid) AS WITH taken AS (DELETE FROM {0} "
                "WHERE seq IN (SELECT seq FROM {0} ORDER BY seq LIMIT $1) "
                "AND NOT EXISTS (SELECT FROM {1} WHERE ticket = $2) "
                "RETURNING seq, ticket, commands, ask) "
                "SELECT ticket, commands, ask, ARRAY(SELECT e.originator_id FROM {2} e "
                "WHERE e.originator_id = ANY(taken.ask) AND e.originator_version = 1) "
                "FROM taken ORDER BY seq",
                queue,
                answers,
                events,
            ),
            text(
                "PREPARE ledger_answered(uuid) AS DELETE FROM {0} WHERE ticket = $1 "
                "RETURNING answers",
                answers,
            ),
        ]
        # The events, their links, the notification and the commit as one query. The positions
        # are those the position column's sequence would draw next (read under the lock, where
        # no one else draws from it), given explicitly so that the links are computed before
        # anything is sent; the sequence is then moved past them, as drawing them would have.
        # Values are literals: integers, UUIDs, hexadecimal, and topics quoted by _quoted.
        self.commit_query = text(
            "INSERT INTO {0} (notification_id, originator_id, originator_version, topic, state) "
            "VALUES %(events)s; SELECT setval(%(sequence)s, %(last)d); "
            "INSERT INTO {1} (position, hash) VALUES %(links)s; NOTIFY {2}; COMMIT",
            events,
            chain,
            # The library's subscribers LISTEN on the events table's name.
            Identifier(events_table.replace(".", "_")),
        )
        # Many events: COPY of the events and of their links, then this.
        # Binary: the states go as they are, not as hex text the server decodes again (5,000
        # events and links of a capped transfer-in batch: 65 ms as text, 40 ms binary).
        self.copy_events = text(
            "COPY {0} (notification_id, originator_id, originator_version, topic, state) "
            "FROM STDIN (FORMAT BINARY)",
            events,
        )
        self.copy_links = text("COPY {0} (position, hash) FROM STDIN (FORMAT BINARY)", chain)
        self.finish_query = text(
            "SELECT setval(%(sequence)s, %(last)d); NOTIFY {0}; COMMIT",
            Identifier(events_table.replace(".", "_")),
        )
        self.hands_off = True
        self.sequence = ""  # the position column's sequence, as a literal (per connection)
        self._next_position = 0
        # Where this writer left the log (head, link, next position) when it has reason to
        # think nobody else is writing: the last transaction it opened saw no one else's
        # events, and its commit since then is the log's head. None: read under the lock.
        self._left: tuple[int, str, int] | None = None
        self._cold_transactions = 0  # transactions left before speculating again
        self._quiet = False  # the last transaction opened by begin() saw no one else's events
        # The lock was busy when this writer last offered commands: queue the next ones at
        # once rather than try the lock first (one round trip less while writers contend).
        self._busy = False
        self.expect_query = text(
            "BEGIN; SET LOCAL lock_timeout = '{0}s'; LOCK TABLE {1} IN EXCLUSIVE MODE NOWAIT; "
            "EXECUTE ledger_expect(%(head)d, %(next)d, '{{%(ids)s}}'); ",
            int(env["POSTGRES_LOCK_TIMEOUT"]),
            events,
        )
        self.expect_function = text(
            "{0}", SQL("{0}.{1}").format(schema, Identifier(EXPECT_FUNCTION))
        )
        self.chain_table = text("{0}", chain)
        self.connection = self._connect()

    def _connect(self) -> "psycopg.Connection[Any]":
        from ledger.persistence import postgres_connect

        connection = postgres_connect(self.env)
        connection.prepare_threshold = None
        connection.execute(b"SET bytea_output = 'hex'")  # the tail's states, read as text
        for statement in self.prepare:
            connection.execute(statement.encode())
        row = connection.execute(
            "SELECT pg_get_serial_sequence(%s, 'notification_id')", (self.events_table,)
        ).fetchone()
        assert row is not None and row[0] is not None, self.events_table
        sequence = str(row[0])  # quoted where it needs to be
        self.sequence = _quoted(sequence)
        next_position = (
            f"SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {sequence}"
        )
        connection.execute(f"PREPARE ledger_next AS {next_position}".encode())
        connection.execute(
            f"PREPARE ledger_expect(bigint, bigint, uuid[]) AS SELECT {self.expect_function}("
            f"(SELECT coalesce(max(position), 0) FROM {self.chain_table}) = $1 "
            f"AND ({next_position}) = $2, NOT EXISTS (SELECT FROM {self.events_table} "
            "WHERE originator_id = ANY($3) AND originator_version = 1))".encode()
        )
        return connection

    def speculate(self, after: int) -> Opened | None:
        if self._cold_transactions > 0:
            self._cold_transactions -= 1
            return None
        left, self._left = self._left, None  # until this transaction commits
        if left is None or left[0] != after:
            return None
        head, link, self._next_position = left
        return Opened(
            head=head, head_link=link, tail=[], tail_complete=True, existing=set(), speculative=True
        )

    def missed(self, *, absent_assumed_wrongly: bool) -> None:
        """A speculation missed: the next transactions read under the lock; after a miss on
        an aggregate assumed absent, for a while (a cold cache would miss again and again)."""
        self._left = None
        if absent_assumed_wrongly:
            self._cold_transactions = limits.SPECULATION_PAUSE_TRANSACTIONS

    def begin(self, after: int, ask: Sequence[UUID], offer: Offer | None = None) -> Opened:
        self._left = None
        if self.connection.closed or self.connection.broken:
            self.connection.close()
            self.connection = self._connect()  # the server restarted, or ended our session
        values = {
            "after": after,
            "limit": limits.TAIL_EVENTS_MAX + 1,
            "ids": _uuid_list(ask),
            "take": limits.HANDOFF_TAKE_MAX,
            "nobody": _NOBODY,
        }
        if offer is None:
            return self._begin(self.begin_query % values)
        if not self._busy:
            try:
                return self._begin(self.begin_at_once_query % values, at_once=True)
            except _LockBusy:
                pass
        self._busy = True
        queued = values | {"ticket": offer.ticket, "commands": _quoted(offer.commands_json)}
        deadline = time.monotonic() + int(self.env["POSTGRES_LOCK_TIMEOUT"])
        wait = self.queue_and_wait_query
        try:
            while True:
                (answered,) = self._run(wait % queued)
                if answered:
                    return _handed_off(answered[0][0].decode())
                try:
                    opened = self._begin(self.begin_queued_query % queued, at_once=True)
                except _LockBusy:
                    if time.monotonic() > deadline:
                        raise OperationalError("the log's write lock stayed busy") from None
                    wait = self.wait_query
                    continue
                self._busy = not self._quiet  # others appended meanwhile: still contended
                return opened
        except self.psycopg.OperationalError as error:
            self._withdraw(offer)
            raise OperationalError(error) from error
        except OperationalError:
            self._withdraw(offer)
            raise
        except BaseException:
            self.rollback()
            raise

    def _begin(self, query: str, at_once: bool = False) -> Opened:
        try:
            head_rows, next_rows, tail_rows, existing_rows, *handoff = self._run(query)
        except self.psycopg.errors.LockNotAvailable as error:
            if at_once:
                raise _LockBusy from error  # the next query rolls back first
            self.rollback()
            raise OperationalError(error) from error
        except self.psycopg.OperationalError as error:
            self.rollback()
            raise OperationalError(error) from error
        except BaseException:
            self.rollback()
            raise
        self._next_position = int(next_rows[0][0])
        self._quiet = not tail_rows  # no one else appended since this writer's last look
        existing = {UUID(r[0].decode()) for r in existing_rows}
        taken = []
        if handoff:
            taken = _taken(handoff[0], existing)
            if len(handoff) > 1 and handoff[1]:
                self._run("COMMIT")  # nothing but the answers' row changed: no fsync
                return _handed_off(handoff[1][0][0].decode())
        return _opened(
            0 if not head_rows else int(head_rows[0][0]),
            GENESIS if not head_rows else head_rows[0][1].decode(),
            [  # text values (the state's \x text decoded only if needed)
                LoggedEvent(int(p), UUID(i.decode()), int(v), t.decode(), s, state_as_hex_text=True)
                for p, i, v, t, s in tail_rows
            ],
            existing,
            taken,
        )

    def _withdraw(self, offer: Offer) -> None:
        """After waiting too long for the lock: take the queued commands back, unless a
        holder took them already (then their answers come with that holder's commit)."""
        try:
            self.rollback()
            self._run(self.withdraw_query % {"ticket": offer.ticket})
        except self.psycopg.Error:
            pass  # the error being raised says more than this one

    def commit(
        self,
        opened: Opened,
        stored: Sequence[StoredEvent],
        answers: Sequence[Answered] = (),
        assumed_new: Sequence[UUID] = (),
    ) -> list[int]:
        answered = ""
        if answers:
            answered = (
                self.answers_insert
                + ",".join(f"('{ticket}',{_quoted(text)})" for ticket, text in answers)
                + "; "
            )
        expect = ""
        if opened.speculative:
            expect = self.expect_query % {
                "head": opened.head,
                "next": self._next_position,
                "ids": _uuid_list(assumed_new),
            }
        if not stored:
            # Nothing to append; a speculation's answers still stand on the log as it is.
            self._run_expecting(expect + answered + "COMMIT", opened)
            self._remember(opened, opened.head, opened.head_link, self._next_position)
            return []
        positions = list(range(self._next_position, self._next_position + len(stored)))
        links = links_for(opened.head_link, positions, stored)
        if len(stored) >= limits.POSTGRES_COPY_EVENTS_MIN:
            if expect:
                self._run_expecting(expect, opened)
            self._copy_and_commit(opened, positions, stored, links, answered)
            self._remember(opened, positions[-1], links[-1][1], positions[-1] + 1)
            return positions
        query = (
            expect
            + answered
            + self.commit_query
            % {
                "events": ",".join(
                    f"({position},'{_uuid(e.originator_id)}',{int(e.originator_version)},"
                    f"{_quoted(e.topic)},decode('{e.state.hex()}','hex'))"
                    for position, e in zip(positions, stored, strict=True)
                ),
                "sequence": self.sequence,
                "last": positions[-1],
                "links": ",".join(  # positions and hex digests: digits and letters only
                    f"({position},'{link}')" for position, link in links
                ),
            }
        )
        self._run_expecting(query, opened)
        self._remember(opened, positions[-1], links[-1][1], positions[-1] + 1)
        return positions

    def _run_expecting(self, query: str, opened: Opened) -> None:
        """Run a commit; a speculation that finds the log moved or the lock busy is missed."""
        try:
            self._run(query)
        except (
            self.psycopg.errors.LockNotAvailable,
            self.psycopg.errors.SerializationFailure,
        ) as error:
            if not opened.speculative:
                raise
            self.rollback()
            raise SpeculationMissed(str(error)) from error
        except self.psycopg.IntegrityError as error:
            raise IntegrityError(error) from error

    def _remember(self, opened: Opened, head: int, link: str, next_position: int) -> None:
        """After a commit: where the log now ends, if this writer seems to be alone."""
        alone = opened.speculative or (self._quiet and not opened.taken)
        self._left = (head, link, next_position) if alone else None

    def _copy_and_commit(
        self,
        opened: Opened,
        positions: list[int],
        stored: Sequence[StoredEvent],
        links: list[tuple[int, str]],
        answered: str,
    ) -> None:
        try:
            with self.connection.cursor() as cursor:
                with cursor.copy(self.copy_events.encode()) as copy:
                    copy.set_types(COPY_EVENT_TYPES)
                    for position, e in zip(positions, stored, strict=True):
                        row = (position, _uuid(e.originator_id), e.originator_version, e.topic)
                        copy.write_row((*row, e.state))
                with cursor.copy(self.copy_links.encode()) as copy:
                    copy.set_types(COPY_LINK_TYPES)
                    for link in links:
                        copy.write_row(link)
            self._run(
                answered + self.finish_query % {"sequence": self.sequence, "last": positions[-1]}
            )
        except self.psycopg.IntegrityError as error:
            raise IntegrityError(error) from error

    def _run(self, query: str) -> list[list[tuple[Any, ...]]]:
        """One simple-protocol query sent through libpq the way psycopg's cursor sends it, but
        without the cursor, which builds column descriptions and loaders for every statement
        (~40 µs of a ~140 µs round trip, docs/performance.md): the rows of each statement that
        returns rows, values as text bytes. A failing statement raises its psycopg error (those
        after it did not run)."""
        from psycopg import generators
        from psycopg.errors import error_from_result

        pgconn = self.connection.pgconn
        pgconn.send_query(query.encode())
        results = self.connection.wait(generators.execute(pgconn))
        status = self.psycopg.pq.ExecStatus
        rows = []
        for result in results:
            if result.status == status.FATAL_ERROR:
                raise error_from_result(result, encoding=self.connection.info.encoding)
            if result.status == status.TUPLES_OK:
                fields = range(result.nfields)
                rows.append(
                    [tuple(result.get_value(r, f) for f in fields) for r in range(result.ntuples)]
                )
        return rows

    def rollback(self) -> None:
        self._left = None
        if self.connection.closed or self.connection.broken:
            return  # nothing to undo: the server ended the transaction with the session
        if self.connection.info.transaction_status != self.psycopg.pq.TransactionStatus.IDLE:
            self.connection.execute("ROLLBACK")

    def close(self) -> None:
        self.connection.close()


def _opened(
    head: int,
    head_link: str,
    tail_rows: Sequence[LoggedEvent],
    existing: set[UUID],
    taken: list[Queued] | None = None,
) -> Opened:
    """The tail read one past its bound."""
    return Opened(
        head=head,
        head_link=head_link,
        tail=list(tail_rows[: limits.TAIL_EVENTS_MAX]),
        tail_complete=len(tail_rows) <= limits.TAIL_EVENTS_MAX,
        existing=existing,
        taken=taken or [],
    )


def _handed_off(answers: str) -> Opened:
    """What a writer whose commands another decided sees: their answers (it holds no lock,
    and read nothing of the log)."""
    return Opened(
        head=0, head_link=GENESIS, tail=[], tail_complete=True, existing=set(), answers=answers
    )


class _LockBusy(Exception):
    """The write lock was not free at once (LOCK ... NOWAIT)."""


_NOBODY = UUID(int=0)  # a ticket no writer holds


def _taken(rows: list[tuple[Any, ...]], existing: set[UUID]) -> list[Queued]:
    """ledger_take's rows: the runs, oldest first; which of their ids have events."""
    taken = []
    for ticket, commands, ask, found in rows:
        taken.append((UUID(ticket.decode()), commands.decode(), _uuids(ask)))
        existing.update(_uuids(found))
    return taken


def _uuid_list(ids: Sequence[UUID]) -> str:
    return ",".join(str(_uuid(i)) for i in ids)  # UUIDs: hexadecimal and dashes only


def _uuids(array_text: bytes) -> list[UUID]:
    """A uuid[] in PostgreSQL's text form: {a,b,c} (UUIDs are never quoted)."""
    inner = array_text.decode()[1:-1]
    return [UUID(text) for text in inner.split(",")] if inner else []


def _quoted(text: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings, on since 9.1: quotes only)."""
    return "'" + text.replace("'", "''") + "'"


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
