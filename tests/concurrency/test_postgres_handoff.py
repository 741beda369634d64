"""Commands handed to the writer holding the log's lock (PostgreSQL, ledger/handoff.py).

A writer that finds the lock busy queues its commands and waits; the next holder decides them
after its own and commits their answers with the events. These tests make each situation happen
on purpose: a holder kept inside its transaction while others queue, a queued run put in the
queue as a waiting writer would, a holder failing after taking one. (Only a transaction that
reads the log under the lock takes what is queued: a writer that has been alone lately decides
before locking (LogWriter.speculate), and a queued writer then leads its own commands.)
"""

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg import sql

from ledger import Ledger
from ledger.audit.recorders import ANSWERS_TABLE, QUEUE_TABLE
from ledger.audit.verify import verify_chain
from ledger.commands import CommandBase, CommandInvalid, FieldError, parse_command
from ledger.domain.asset_pool import AssetPool
from ledger.domain.request import Request
from ledger.errors import LedgerInputError, RequestIdReused
from ledger.handoff import Offer, decode_answers, encode_answers
from ledger.outcomes import Outcome, Status
from ledger.write_transaction import WriteTransaction
from tests.conftest import POSTGRES_URL
from tests.support import command, setup_capped_asset

WAIT_SECONDS = 30


@pytest.fixture
def schema_url(postgres_url: str) -> str:
    with Ledger(postgres_url) as ledger:
        setup_capped_asset(ledger, upper_limit="1000000")
    return postgres_url


def transfer(request_id: str, user: str, quantity: str, asset: str = "ABC") -> CommandBase:
    data = command(
        "transfer_in", request_id, user=user, account="cross", asset=asset, quantity=quantity
    )
    return parse_command(data)


def schema_of(url: str) -> sql.Composable:
    return sql.Identifier(url.rsplit("schema=", 1)[1])


def rows(url: str, table: str, columns: str = "*") -> list[tuple[Any, ...]]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        query = sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(columns), schema_of(url), sql.Identifier(table)
        )
        return connection.execute(query).fetchall()


def queue_as_a_waiting_writer(url: str, commands: list[CommandBase]) -> Offer:
    """What a writer that found the lock busy puts in the queue."""
    offer = Offer.of(commands, [Request.create_id(c.request_id) for c in commands])
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("INSERT INTO {}.{} (ticket, commands, ask) VALUES (%s, %s, %s)").format(
                schema_of(url), sql.Identifier(QUEUE_TABLE)
            ),
            (offer.ticket, offer.commands_json, list(offer.ask)),
        )
    return offer


def answers_for(url: str, offer: Offer) -> list[Outcome | CommandInvalid]:
    found = [text for ticket, text in rows(url, ANSWERS_TABLE) if ticket == offer.ticket]
    assert len(found) == 1, found
    return decode_answers(found[0])


def pool_total(ledger: Ledger) -> Decimal:
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    total: Decimal = pool.platform_total
    return total


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


@contextmanager
def holding_the_lock(url: str) -> Iterator[threading.Event]:
    """A ledger whose write transaction holds the log's lock until the event yielded is set.
    (Open the other Ledgers first: opening one sets up the schema, which waits for the lock.)"""
    held, release = threading.Event(), threading.Event()
    with Ledger(url) as ledger:

        def hold(transaction: WriteTransaction) -> None:
            held.set()
            assert release.wait(WAIT_SECONDS)

        thread = threading.Thread(target=ledger.in_write_transaction, args=(hold,))
        thread.start()
        assert held.wait(WAIT_SECONDS)
        try:
            yield release
        finally:
            release.set()
            thread.join(WAIT_SECONDS)


# --- the holder's side: it decides what was queued, after its own commands --------------------


def test_the_holder_decides_queued_commands_after_its_own_and_commits_their_answers(
    schema_url: str,
) -> None:
    """Goal: a run queued by a waiting writer is decided by the next writer to hold the lock,
    against the state its own commands left (one capped pool), and answered in the same commit.

    Method: queue two transfers as a waiting writer would; execute one transfer; the queued
    ones are then recorded after it, the pool counts all three, and their answers wait in the
    answers table with the events they name; the queue is empty."""
    queued = [transfer("q-1", "qu1", "300"), transfer("q-2", "qu2", "200")]
    offer = queue_as_a_waiting_writer(schema_url, queued)
    with Ledger(schema_url) as ledger:
        own = ledger.execute(transfer("own-1", "own1", "100"))
        assert own.status is Status.ACCEPTED
        assert ledger.write_statistics.served == 2
        assert ledger.write_statistics.transactions == 1
        assert pool_total(ledger) == Decimal(600)
        answers = answers_for(schema_url, offer)
        assert [type(a) for a in answers] == [Outcome, Outcome]
        assert [a.request_id for a in answers] == ["q-1", "q-2"]  # type: ignore[union-attr]
        for answer, request_id in zip(answers, ["q-1", "q-2"], strict=True):
            assert isinstance(answer, Outcome) and answer.status is Status.ACCEPTED
            recorded = ledger.get_aggregate(Request, Request.create_id(request_id))
            assert recorded.outcome == answer.model_dump(mode="json")
        # Decided one after another, its own first: each saw the total the one before left.
        assert [a.context["total"] for a in answers] == ["100", "400"]  # type: ignore[union-attr]
        # A retry of a queued command is answered as a duplicate of the same outcome.
        again = ledger.execute(transfer("q-2", "qu2", "200"))
        assert again.duplicate and again.events == answers[1].events  # type: ignore[union-attr]
        assert verify_chain(ledger).is_intact
    assert rows(schema_url, QUEUE_TABLE) == []


def test_queued_invalid_commands_are_answered_as_invalid_and_leave_no_trace(
    schema_url: str,
) -> None:
    """Goal: what the waiting writer would have raised itself comes back to it, class included:
    a command the ledger's state makes meaningless, an id reused for another payload; the
    valid command queued between them is decided as if they had not been sent."""
    with Ledger(schema_url) as ledger:
        assert ledger.execute(transfer("used", "u0", "10")).is_accepted
        before = pool_total(ledger)
        offer = queue_as_a_waiting_writer(
            schema_url,
            [
                transfer("bad-asset", "u1", "10", asset="NOPE"),
                transfer("fine", "u2", "10"),
                transfer("used", "u0", "999"),
            ],
        )
        with Ledger(schema_url) as server:  # fresh: it reads under the lock, and takes
            assert server.execute(transfer("own", "u3", "10")).is_accepted
        unknown, fine, reused = answers_for(schema_url, offer)
        assert isinstance(unknown, LedgerInputError) and not isinstance(unknown, RequestIdReused)
        assert unknown.request_id == "bad-asset"
        assert [e.field for e in unknown.errors] == ["asset"]
        assert isinstance(fine, Outcome) and fine.is_accepted
        assert isinstance(reused, RequestIdReused) and reused.request_id == "used"
        assert ledger.get_aggregate(Request, Request.create_id("bad-asset")) is None
        assert pool_total(ledger) == before + 20


def test_a_holder_that_fails_after_taking_queued_commands_puts_them_back(
    schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Goal: nothing queued is lost when the writer that took it fails: its transaction rolls
    back the taking with everything else; it decides its own commands again alone; the queued
    ones are decided by the next writer."""
    offer = queue_as_a_waiting_writer(schema_url, [transfer("q-1", "qu1", "300")])
    with Ledger(schema_url) as ledger:
        failures = []
        original = Ledger._serve

        def serve_then_fail(self: Ledger, *args: Any) -> Any:
            answers = original(self, *args)
            if answers and not failures:
                failures.append(answers)
                raise RuntimeError("the holder fails after deciding a queued command")
            return answers

        monkeypatch.setattr(Ledger, "_serve", serve_then_fail)
        assert ledger.execute(transfer("own-1", "own1", "100")).is_accepted
        assert len(failures) == 1
        assert ledger.write_statistics.served == 0
        assert pool_total(ledger) == Decimal(100)
        assert ledger.get_aggregate(Request, Request.create_id("q-1")) is None
        assert [r[0] for r in rows(schema_url, QUEUE_TABLE, "ticket")] == [offer.ticket]
        assert rows(schema_url, ANSWERS_TABLE) == []

        monkeypatch.setattr(Ledger, "_serve", original)
    with Ledger(schema_url) as ledger:  # fresh: it reads under the lock, and takes
        assert ledger.execute(transfer("own-2", "own2", "100")).is_accepted
        (answer,) = answers_for(schema_url, offer)
        assert isinstance(answer, Outcome) and answer.is_accepted
        assert pool_total(ledger) == Decimal(500)
        assert verify_chain(ledger).is_intact


# --- the waiting writers' side: through real contention ------------------------------------


def test_writers_finding_the_lock_busy_get_their_answers_from_whichever_holds_it_next(
    schema_url: str,
) -> None:
    """Goal: the whole round trip under real contention. While one writer holds the lock, two
    others send transfers and an invalid command: both queue and wait; when the lock is let go
    one of them takes both runs and decides them, the other collects its answers without ever
    holding the lock. Each gets exactly what it would have got alone; nothing is left queued.

    Method: three Ledgers on one schema, the first held inside its transaction until both
    others' runs are in the queue; then released."""
    results: dict[str, Any] = {}

    def send(name: str, ledger: Ledger, commands: list[CommandBase]) -> None:
        try:
            results[name] = ledger.execute_batch(commands)
        except Exception as error:  # reported by the assertions below
            results[name] = error

    with Ledger(schema_url) as second, Ledger(schema_url) as third:
        with holding_the_lock(schema_url) as release:
            threads = [
                threading.Thread(
                    target=send,
                    args=(
                        "second",
                        second,
                        [transfer("s-1", "s1", "40"), transfer("s-2", "s2", "2")],
                    ),
                ),
                threading.Thread(
                    target=send, args=("third", third, [transfer("t-1", "t1", "5", asset="NOPE")])
                ),
            ]
            for thread in threads:
                thread.start()
            wait_until(lambda: len(rows(schema_url, QUEUE_TABLE)) == 2, "both runs are queued")
            release.set()
            for thread in threads:
                thread.join(WAIT_SECONDS)

        first_two = results["second"]
        assert [type(a) for a in first_two] == [Outcome, Outcome], first_two
        assert all(a.is_accepted for a in first_two)
        (invalid,) = results["third"]
        assert isinstance(invalid, LedgerInputError)
        assert [e.field for e in invalid.errors] == ["asset"]
        writers = (second.write_statistics, third.write_statistics)
        # One decided both runs; the other's commands were decided for it.
        assert sorted((w.served, w.handed_off) for w in writers) in (
            [(0, 1), (1, 0)],  # the second led: it served the third's one command
            [(0, 2), (2, 0)],  # the third led: it served the second's two
        )
        assert pool_total(second) == Decimal(42)
        assert verify_chain(second).is_intact
    assert rows(schema_url, QUEUE_TABLE) == []
    assert rows(schema_url, ANSWERS_TABLE) == []


def test_after_finding_the_lock_busy_a_writer_queues_first_until_it_is_alone_again(
    schema_url: str,
) -> None:
    """Goal: a writer that found the lock busy while others wrote queues its next commands at
    once (no doomed try of the lock first); when the lock is in fact free it takes its own
    queued commands and decides them like any others, and having met no one else's events it
    tries the lock first again. Nothing is left queued, the chain stays whole.

    Method: one writer queued behind a held lock (the holder appends nothing, so the writer is
    not left busy); then marked busy as after meeting other writers, it sends two commands with
    the lock free, its queries recorded: the first goes through the queue, the second not."""
    with Ledger(schema_url) as writer:
        queued: list[Any] = []
        with holding_the_lock(schema_url) as release:
            thread = threading.Thread(
                target=lambda: queued.append(writer.execute(transfer("b-1", "b1", "5")))
            )
            thread.start()
            wait_until(lambda: len(rows(schema_url, QUEUE_TABLE)) == 1, "the command is queued")
            release.set()
            thread.join(WAIT_SECONDS)
        assert [o.is_accepted for o in queued] == [True]
        log_writer: Any = writer._writer
        assert not log_writer._busy  # no one else's events met: alone
        sent: list[str] = []
        run = log_writer._run

        def recording(query: str) -> Any:
            sent.append(query)
            return run(query)

        log_writer._run = recording
        log_writer._busy = True
        assert writer.execute(transfer("b-2", "b2", "5")).is_accepted
        assert "INSERT INTO" in sent[0] and QUEUE_TABLE in sent[0], sent[0]  # queued at once
        assert not log_writer._busy
        sent.clear()
        assert writer.execute(transfer("b-3", "b3", "5")).is_accepted
        assert not any(QUEUE_TABLE in q and "INSERT INTO" in q for q in sent), sent
        assert writer.write_statistics.handed_off == 0 and writer.write_statistics.served == 0
        assert pool_total(writer) == Decimal(15)
        assert verify_chain(writer).is_intact
    assert rows(schema_url, QUEUE_TABLE) == []
    assert rows(schema_url, ANSWERS_TABLE) == []


def test_a_writer_that_waits_too_long_takes_its_queued_commands_back(schema_url: str) -> None:
    """Goal: a writer whose wait for the lock times out fails cleanly: its commands are
    withdrawn from the queue, so no later holder decides what its caller was told failed."""
    impatient = Ledger(schema_url, env={"POSTGRES_LOCK_TIMEOUT": "1"})
    with impatient, holding_the_lock(schema_url):
        with pytest.raises(OperationalError, match="lock"):
            impatient.execute(transfer("late", "l1", "5"))
        assert rows(schema_url, QUEUE_TABLE) == []
    with Ledger(schema_url) as ledger:
        assert ledger.execute(transfer("after", "a1", "5")).is_accepted
        assert ledger.get_aggregate(Request, Request.create_id("late")) is None
        assert ledger.write_statistics.served == 0


# --- the answers' encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            Outcome(request_id="r1", status=Status.ACCEPTED, events=["a:1"], context={"x": "1"}),
            id="outcome",
        ),
        pytest.param(LedgerInputError("asset", "is not listed", "r2"), id="input-error"),
        pytest.param(RequestIdReused("r3"), id="reused"),
        pytest.param(
            CommandInvalid(
                [FieldError(field="a", problem="p"), FieldError(field="b", problem="q")], "r4"
            ),
            id="invalid",
        ),
    ],
)
def test_answers_travel_with_their_class_and_content(answer: Outcome | CommandInvalid) -> None:
    (back,) = decode_answers(encode_answers([answer]))
    assert type(back) is type(answer)
    if isinstance(answer, Outcome):
        assert back == answer
    else:
        assert isinstance(back, CommandInvalid)
        assert (back.errors, back.request_id, str(back)) == (
            answer.errors,
            answer.request_id,
            str(answer),
        )


def test_a_ticket_is_unique_per_offer() -> None:
    commands = [transfer("x", "u", "1")]
    assert len({Offer.of(commands, []).ticket for _ in range(100)}) == 100
    assert uuid.UUID(str(Offer.of(commands, []).ticket)).version == 4
