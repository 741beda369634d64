"""Ledger: the application service. One method per command; it orchestrates, never decides."""

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Self, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import BaseAggregate, MutableOrImmutableAggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from ledger import jobs, limits
from ledger.commands import (
    AccountCommand,
    AccrueInterest,
    AdminForceClassic,
    AdminSetBorrowing,
    AgreeProTerms,
    Borrow,
    CheckMargins,
    CommandBase,
    CommandInvalid,
    CompleteVerification,
    FundInsurance,
    ListAsset,
    MarkPrices,
    RecordProQuiz,
    Repay,
    SetAccountQuota,
    SetAutoTopUp,
    SetBnbDiscount,
    SetBorrowTerms,
    SetCollateralCap,
    SetMaintenanceBrackets,
    SetMarginThresholds,
    SetPlatformRules,
    SetProJurisdiction,
    SettleTrade,
    StartCoolingOff,
    SwitchMode,
    TransferIn,
    TransferOut,
    canonical_json,
)
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import LedgerAggregate, Stamp, event_id
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.request import Request, payload_digest
from ledger.errors import ReadOnlyLedger, RequestIdReused, SaveRetriesExhausted
from ledger.gc_pause import collections_paused
from ledger.handlers import borrowing, modes, parameters, risk, trading, transfers, users
from ledger.handoff import HandedOff, Offer, decode_answers, encode_answers, queued_commands
from ledger.log_writer import (
    LogWriter,
    PostgresLogWriter,
    Queued,
    SpeculationMissed,
    SQLiteLogWriter,
)
from ledger.outcomes import Outcome, Status
from ledger.persistence import database_url, env_for_url, is_postgres, schema_setup_lock
from ledger.times import format_time
from ledger.unit_of_work import Decided, UnitOfWork
from ledger.write_transaction import AggregateCache, WriteStatistics, WriteTransaction

logger = logging.getLogger(__name__)

T = TypeVar("T")
_NOTHING_BEFORE = 2**62  # an empty cache needs no tail of the log

Handler = Callable[[UnitOfWork, Any], Decided]

HANDLERS: dict[type[CommandBase], Handler] = {
    ListAsset: parameters.list_asset,
    SetCollateralCap: parameters.set_collateral_cap,
    SetAccountQuota: parameters.set_account_quota,
    MarkPrices: parameters.mark_prices,
    SetBorrowTerms: parameters.set_borrow_terms,
    SetMarginThresholds: parameters.set_margin_thresholds,
    SetPlatformRules: parameters.set_platform_rules,
    SetMaintenanceBrackets: parameters.set_maintenance_brackets,
    TransferIn: transfers.transfer_in,
    CompleteVerification: transfers.complete_verification,
    TransferOut: transfers.transfer_out,
    Borrow: borrowing.borrow,
    Repay: borrowing.repay,
    AdminSetBorrowing: borrowing.admin_set_borrowing,
    RecordProQuiz: users.record_pro_quiz,
    AgreeProTerms: users.agree_pro_terms,
    SetProJurisdiction: users.set_pro_jurisdiction,
    StartCoolingOff: users.start_cooling_off,
    SetBnbDiscount: users.set_bnb_discount,
    SettleTrade: trading.settle_trade,
    SwitchMode: modes.switch_mode,
    AdminForceClassic: modes.admin_force_classic,
    FundInsurance: risk.fund_insurance,
    SetAutoTopUp: risk.set_auto_top_up,
}


# Jobs act on many accounts, each saved on its own, and record their Request last.
JOBS: dict[type[CommandBase], Callable[["Ledger", Any], Outcome]] = {
    AccrueInterest: jobs.accrue_interest,
    CheckMargins: jobs.check_margins,
}


class Ledger(Application[UUID]):
    """The collateral ledger over one event store (a SQLite file or a PostgreSQL schema)."""

    name = "ledger"
    # The aggregates that gain events without bound (domain/snapshots.py); the others have a few.
    snapshotting_intervals: ClassVar[dict[type[MutableOrImmutableAggregate[Any]], int]] = {
        MarginAccount: limits.SNAPSHOT_INTERVAL,
        AssetPool: limits.SNAPSHOT_INTERVAL,
        Asset: limits.SNAPSHOT_INTERVAL,
        InsuranceFund: limits.SNAPSHOT_INTERVAL,
        AssetCatalog: limits.SNAPSHOT_INTERVAL,
    }

    def __init__(
        self, url: str | None = None, env: dict[str, str] | None = None, *, read_only: bool = False
    ) -> None:
        """Open the store at `url`, creating its tables if needed; `read_only` opens an existing
        store without any DDL (for roles that may only read, e.g. an auditor's)."""
        self.database_url = database_url(url)
        settings = env_for_url(self.database_url) | (env or {})
        self._writer: LogWriter | None = None
        self._write_lock = threading.Lock()
        self._write_cache = AggregateCache(limits.AGGREGATE_CACHE_SIZE)
        self.write_statistics = WriteStatistics()
        if read_only:
            self._open(settings | {"CREATE_TABLE": "n"})
            return
        with schema_setup_lock(settings):
            self._open(settings)
        table = self.recorder.events_table_name  # type: ignore[attr-defined]
        self._writer = (
            PostgresLogWriter(settings, table)
            if is_postgres(settings)
            else SQLiteLogWriter(
                settings["SQLITE_DBNAME"], table, float(settings["SQLITE_LOCK_TIMEOUT"])
            )
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        super().close()

    def _open(self, settings: dict[str, str]) -> None:
        """The library's set-up, waiting out another connection's write lock on a new SQLite
        file: switching it to WAL fails at once with "database is locked" instead of waiting."""
        deadline = time.monotonic() + limits.OPEN_LOCKED_SECONDS_MAX
        for _attempt in range(limits.OPEN_ATTEMPTS_MAX):
            try:
                super().__init__(env=settings)
            except (OperationalError, sqlite3.OperationalError) as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(limits.OPEN_RETRY_SECONDS)
            else:
                return
        raise OperationalError(f"could not open {self.database_url}: still locked")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- commands ------------------------------------------------------------------------------

    def execute(self, command: CommandBase) -> Outcome:
        """Decide and record one command atomically; a retry of the same request is answered
        with its first outcome. Raises CommandInvalid (nothing recorded) for input it refuses."""
        (result,) = self.execute_batch([command])
        if isinstance(result, CommandInvalid):
            raise result
        return result

    def execute_batch(self, commands: Sequence[CommandBase]) -> list[Outcome | CommandInvalid]:
        """Decide commands one after another, each against the state the ones before it left,
        and record them in one transaction: many commands for one commit. Each is atomic in
        effect: one refused as invalid is answered with its CommandInvalid and leaves no trace,
        the others are decided as if it had not been sent. Jobs (which save account by account)
        run on their own, in their place in the sequence."""
        results: list[Outcome | CommandInvalid] = []
        run: list[CommandBase] = []
        for command in commands:
            if isinstance(command, AccrueInterest | CheckMargins):
                results.extend(self._decide_in_one_transaction(run))
                run = []
                try:
                    results.append(JOBS[type(command)](self, command))
                except CommandInvalid as invalid:
                    invalid.request_id = invalid.request_id or command.request_id
                    results.append(invalid)
            else:
                run.append(command)
                if len(run) == limits.BATCH_SIZE_MAX:
                    results.extend(self._decide_in_one_transaction(run))
                    run = []
        results.extend(self._decide_in_one_transaction(run))
        return results

    def _decide_in_one_transaction(
        self, commands: Sequence[CommandBase]
    ) -> list[Outcome | CommandInvalid]:
        if not commands:
            return []
        requests = [Request.create_id(c.request_id) for c in commands]
        ask = [*requests, *(self._account_ids(commands))]
        offer = None
        if (
            self._writer is not None
            and self._writer.hands_off
            and len(commands) <= limits.HANDOFF_COMMANDS_MAX
        ):
            offer = Offer.of(commands, ask)
        result = self._write(
            lambda transaction: [self._decide(transaction, command) for command in commands],
            ask,
            offer,
        )
        if isinstance(result, HandedOff):
            self.write_statistics.handed_off += len(commands)
            return result.answers
        return result

    def in_write_transaction(
        self, work: Callable[[WriteTransaction], T], ask: Sequence[UUID] = ()
    ) -> T:
        """Run `work` in one write transaction (the log's write lock held throughout) and
        append and commit what it decided; `ask` names aggregates worth looking up at once."""
        result = self._write(work, ask, None)
        assert not isinstance(result, HandedOff)
        return result

    def _write(
        self, work: Callable[[WriteTransaction], T], ask: Sequence[UUID], offer: Offer | None
    ) -> T | HandedOff:
        """in_write_transaction; with an `offer`, the commands may be decided by the writer
        holding the lock instead (their answers, HandedOff), and this transaction decides
        those other writers queued (ledger/handoff.py)."""
        if self._writer is None:
            raise ReadOnlyLedger(f"{self.database_url} was opened read-only")
        speculate = True
        with self._write_lock, collections_paused():
            for _attempt in range(limits.SAVE_RETRY_COUNT_MAX):
                cache = self._write_cache
                after = cache.position if cache.position is not None else _NOTHING_BEFORE
                started = time.perf_counter()
                opened = (self._writer.speculate(after) if speculate else None) or (
                    self._writer.begin(after, ask, offer)
                )
                self.write_statistics.lock_wait_seconds += time.perf_counter() - started
                if opened.answers is not None:  # committed by the writer that decided them
                    return HandedOff(decode_answers(opened.answers))
                try:
                    cache.catch_up(self, opened)
                    transaction = WriteTransaction(self, cache, opened)
                    transaction.known_absent(ask)
                    result = work(transaction)
                    answers = self._serve(transaction, opened.taken, offer)
                    positions = self._writer.commit(
                        opened,
                        transaction.stored_events(),
                        [a[:2] for a in answers],
                        transaction.assumed_new,
                    )
                except (SpeculationMissed, IntegrityError) as missed:
                    self._writer.rollback()
                    if opened.speculative:
                        # Decided on the log as this writer left it, which had moved (or an
                        # id assumed new was not): decide again, reading under the lock.
                        transaction.forget_decided()
                        self._writer.missed(
                            absent_assumed_wrongly=isinstance(missed, IntegrityError)
                        )
                        self.write_statistics.speculation_misses += 1
                        speculate = False
                        continue
                    # Someone appended without the lock (not the ledger): decide again.
                    cache.forget()
                    self.write_statistics.retries += 1
                    continue
                except Exception:
                    self._writer.rollback()
                    cache.forget()  # what the cached aggregates hold was never committed
                    if offer is None or not opened.taken:
                        raise
                    # Perhaps another writer's command failed: those go back to the queue
                    # for their own writer, and this one decides its own alone.
                    offer = None
                    continue
                except BaseException:
                    self._writer.rollback()
                    cache.forget()
                    raise
                self.write_statistics.transactions += 1
                self.write_statistics.speculated += opened.speculative
                self.write_statistics.served += sum(count for _, _, count in answers)
                if positions:
                    cache.position = positions[-1]
                self._take_due_snapshots_after_commit(transaction)
                return result
        raise SaveRetriesExhausted(f"{limits.SAVE_RETRY_COUNT_MAX} conflicts in a row")

    def _serve(
        self, transaction: WriteTransaction, taken: list[Queued], offer: Offer | None
    ) -> list[tuple[UUID, str, int]]:
        """Decide the commands other writers queued, after this writer's own: their tickets,
        answers and how many."""
        answers = []
        for ticket, commands_json, ask in taken:
            if offer is not None and ticket == offer.ticket:
                continue  # queued by this writer, decided by `work` already
            transaction.known_absent(ask)
            decided = [
                self._decide(transaction, command) for command in queued_commands(commands_json)
            ]
            answers.append((ticket, encode_answers(decided), len(decided)))
        return answers

    def _decide(
        self, transaction: WriteTransaction, command: CommandBase
    ) -> Outcome | CommandInvalid:
        """One command inside a write transaction: its outcome, or why it is invalid."""
        given, digest = _given_and_digest(command)
        first = self._first_in(transaction, command, digest)
        if first is not None:
            return first
        unit = UnitOfWork(self, command, transaction)
        try:
            decided = HANDLERS[type(command)](unit, command)
        except CommandInvalid as invalid:
            transaction.restore([*unit.loaded_ids(), *unit.changed])
            invalid.request_id = invalid.request_id or command.request_id
            return invalid
        request, outcome = self._record_request(
            command, given, digest, decided, unit.changed.values(), unit.resolved_stamp()
        )
        transaction.accept(unit.changed.values())
        transaction.accept([request], cache=False)
        return outcome

    @staticmethod
    def _first_in(
        transaction: WriteTransaction, command: CommandBase, digest: str
    ) -> Outcome | CommandInvalid | None:
        """A retry's answer (its first outcome), or why the request id cannot be used again;
        None when this request is new."""
        request_id = Request.create_id(command.request_id)
        if not transaction.exists(request_id):
            return None
        first = transaction.get(request_id)
        assert isinstance(first, Request), first
        return _retry_answer(first, command, digest)

    def _take_due_snapshots_after_commit(self, transaction: WriteTransaction) -> None:
        """The commands are recorded once committed: a snapshot that cannot be stored must not
        make their caller believe otherwise (and retry). A snapshot only saves replay time; a
        missing one is taken at the aggregate's next interval, and `ledger verify --snapshots`
        checks those that exist."""
        try:
            self._take_due_snapshots(transaction)
        except Exception:
            self.write_statistics.snapshot_failures += 1
            logger.exception("snapshots after a committed transaction were not stored")

    def _take_due_snapshots(self, transaction: WriteTransaction) -> None:
        """Snapshots of the versions the transaction passed (ledger/write_transaction.py):
        those taken in memory, else by the library at that version (a replay)."""
        assert self.snapshots is not None
        taken = transaction.snapshots_taken
        for aggregate_id, version in transaction.snapshots_due.items():
            snapshot = taken.get(aggregate_id)
            if snapshot is not None and snapshot.originator_version == version:
                self.snapshots.put([snapshot])
            else:
                self.take_snapshot(aggregate_id, version=version)

    @staticmethod
    def _account_ids(commands: Iterable[CommandBase]) -> list[UUID]:
        """The accounts the commands name: new ones are known absent without a read each."""
        return [
            MarginAccount.create_id(c.user, c.account)
            for c in commands
            if isinstance(c, AccountCommand)
        ]

    def list_asset(self, command: ListAsset) -> Outcome:
        return self.execute(command)

    def set_collateral_cap(self, command: SetCollateralCap) -> Outcome:
        return self.execute(command)

    def set_account_quota(self, command: SetAccountQuota) -> Outcome:
        return self.execute(command)

    def mark_prices(self, command: MarkPrices) -> Outcome:
        return self.execute(command)

    def transfer_in(self, command: TransferIn) -> Outcome:
        return self.execute(command)

    def complete_verification(self, command: CompleteVerification) -> Outcome:
        return self.execute(command)

    def transfer_out(self, command: TransferOut) -> Outcome:
        return self.execute(command)

    def set_borrow_terms(self, command: SetBorrowTerms) -> Outcome:
        return self.execute(command)

    def set_margin_thresholds(self, command: SetMarginThresholds) -> Outcome:
        return self.execute(command)

    def set_platform_rules(self, command: SetPlatformRules) -> Outcome:
        return self.execute(command)

    def set_maintenance_brackets(self, command: SetMaintenanceBrackets) -> Outcome:
        return self.execute(command)

    def borrow(self, command: Borrow) -> Outcome:
        return self.execute(command)

    def repay(self, command: Repay) -> Outcome:
        return self.execute(command)

    def accrue_interest(self, command: AccrueInterest) -> Outcome:
        return self.execute(command)

    def admin_set_borrowing(self, command: AdminSetBorrowing) -> Outcome:
        return self.execute(command)

    def record_pro_quiz(self, command: RecordProQuiz) -> Outcome:
        return self.execute(command)

    def agree_pro_terms(self, command: AgreeProTerms) -> Outcome:
        return self.execute(command)

    def set_pro_jurisdiction(self, command: SetProJurisdiction) -> Outcome:
        return self.execute(command)

    def start_cooling_off(self, command: StartCoolingOff) -> Outcome:
        return self.execute(command)

    def set_bnb_discount(self, command: SetBnbDiscount) -> Outcome:
        return self.execute(command)

    def settle_trade(self, command: SettleTrade) -> Outcome:
        return self.execute(command)

    def switch_mode(self, command: SwitchMode) -> Outcome:
        return self.execute(command)

    def admin_force_classic(self, command: AdminForceClassic) -> Outcome:
        return self.execute(command)

    def check_margins(self, command: CheckMargins) -> Outcome:
        return self.execute(command)

    def fund_insurance(self, command: FundInsurance) -> Outcome:
        return self.execute(command)

    def set_auto_top_up(self, command: SetAutoTopUp) -> Outcome:
        return self.execute(command)

    def record_job(self, command: CommandBase, context: dict[str, Any]) -> Outcome:
        """Record a job's Request with its summary, after its per-account work was recorded."""
        given, digest = _given_and_digest(command)
        decided = Decided(status=Status.ACCEPTED, context=context)

        def record(transaction: WriteTransaction) -> Outcome:
            first = self._first_in(transaction, command, digest)
            if first is not None:  # the same job recorded concurrently: answer as its retry
                assert not isinstance(first, CommandInvalid), first
                return first
            unit = UnitOfWork(self, command, transaction)
            request, outcome = self._record_request(
                command, given, digest, decided, [], unit.stamp()
            )
            transaction.accept([request], cache=False)
            return outcome

        return self.in_write_transaction(record, ask=[Request.create_id(command.request_id)])

    def first_outcome(self, command: CommandBase) -> Outcome | None:
        """The recorded outcome of this request as a duplicate, None if it was never recorded."""
        first = self._recorded_request(command.request_id)
        if first is None:
            return None
        answer = _retry_answer(first, command, _given_and_digest(command)[1])
        if isinstance(answer, RequestIdReused):
            raise answer
        return answer

    # --- history -------------------------------------------------------------------------------

    def aggregate_as_of(self, aggregate_id: UUID, at: datetime) -> BaseAggregate[UUID] | None:
        """An aggregate as it stood at business time `at` (a prefix of its events), or None."""
        version = None
        for stored in self.recorder.select_events(aggregate_id):
            event = self.mapper.to_domain_event(stored)
            if event.effective_at > at:  # type: ignore[attr-defined]
                break
            version = event.originator_version
        if version is None:
            return None
        return self.repository.get(aggregate_id, version=version)

    def get_aggregate(self, cls: type[LedgerAggregate], aggregate_id: UUID) -> Any:
        aggregate: LedgerAggregate
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(aggregate, cls), (cls, aggregate)
        return aggregate

    # --- helpers -------------------------------------------------------------------------------

    def _recorded_request(self, request_id: str) -> Request | None:
        found = self.get_aggregate(Request, Request.create_id(request_id))
        assert found is None or isinstance(found, Request)
        return found

    @staticmethod
    def _record_request(
        command: CommandBase,
        given: dict[str, Any],
        digest: str,
        decided: Decided,
        changed: Iterable[LedgerAggregate],
        stamp: Stamp,
    ) -> tuple[Request, Outcome]:
        """The command's Request (`given`: the command's JSON, `digest` its digest) and the
        outcome it records."""
        event_ids = [
            event_id for aggregate in changed for event_id in aggregate.pending_event_ids()
        ]
        effective_at = stamp.effective_at
        request_event_id = event_id(Request.create_id(command.request_id), 1)
        outcome = Outcome(
            request_id=command.request_id,
            status=decided.status,
            reason=decided.reason,
            message=decided.message,
            account=decided.account,
            events=[*event_ids, request_event_id],
            context=decided.context | {"effective_at": format_time(effective_at)},
        )
        request = Request.record(
            command_type=command.command_type,
            command=given,
            digest=digest,
            outcome=outcome.model_dump(mode="json"),
            stamp=stamp,
        )
        assert request.pending_event_ids() == [request_event_id]
        return request, outcome


def _given_and_digest(command: CommandBase) -> tuple[dict[str, Any], str]:
    """The command as given (its JSON, what its Request records) and the digest a retry must
    repeat: the JSON dumped once for both."""
    given = command.model_dump(mode="json")
    return given, payload_digest(canonical_json(given))


def _retry_answer(first: Request, command: CommandBase, digest: str) -> Outcome | RequestIdReused:
    """A request recorded before: its first outcome again, or (another payload under the same
    id) why the id cannot be used."""
    if first.payload_digest != digest:
        return RequestIdReused(command.request_id)
    return Outcome.model_validate(first.outcome | {"duplicate": True})
