"""Ledger: the application service. One method per command; it orchestrates, never decides."""

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Self
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import IntegrityError, OperationalError
from eventsourcing.utils import get_topic

from ledger import limits
from ledger.commands import (
    AccrueInterest,
    AdminForceClassic,
    AdminSetBorrowing,
    AgreeProTerms,
    Borrow,
    CommandBase,
    CommandInvalid,
    CompleteVerification,
    ListAsset,
    MarkPrices,
    RecordProQuiz,
    Repay,
    SetAccountQuota,
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
)
from ledger.domain.account import MarginAccount
from ledger.domain.base import LedgerAggregate, Stamp
from ledger.domain.request import Request, payload_digest
from ledger.errors import RequestIdReused, SaveRetriesExhausted
from ledger.handlers import borrowing, modes, parameters, trading, transfers, users
from ledger.handlers.interest import settle_interest
from ledger.money import format_plain
from ledger.outcomes import Outcome, Status
from ledger.persistence import database_url, env_for_url, schema_setup_lock
from ledger.rules.interest import HourCharge
from ledger.times import format_time
from ledger.unit_of_work import Decided, UnitOfWork

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
}


class Ledger(Application[UUID]):
    """The collateral ledger over one event store (a SQLite file or a PostgreSQL schema)."""

    name = "ledger"

    def __init__(self, url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url(url)
        settings = env_for_url(self.database_url) | (env or {})
        with schema_setup_lock(settings):
            self._open(settings)

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
        if isinstance(command, AccrueInterest):
            return self._accrue_interest(command)
        handler = HANDLERS[type(command)]
        digest = payload_digest(command.payload_digest_source())
        for _attempt in range(limits.SAVE_RETRY_COUNT_MAX):
            first = self._recorded_request(command.request_id)
            if first is not None:
                if first.payload_digest != digest:
                    raise RequestIdReused(command.request_id)
                return Outcome.model_validate(first.outcome | {"duplicate": True})
            unit = UnitOfWork(self, command)
            try:
                decided = handler(unit, command)
            except CommandInvalid as invalid:
                invalid.request_id = invalid.request_id or command.request_id
                raise
            request, outcome = self._record_request(
                command, digest, decided, unit.changed.values(), unit.resolved_stamp()
            )
            try:
                self.save(*unit.changed.values(), request)
            except IntegrityError:
                continue  # another writer changed what we decided against: decide again
            return outcome
        raise SaveRetriesExhausted(
            f"{command.request_id}: {limits.SAVE_RETRY_COUNT_MAX} version conflicts in a row"
        )

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

    def _accrue_interest(self, command: AccrueInterest) -> Outcome:
        """The accrual job: every open loan's full hours up to `until`, one account at a time.

        Each account's charges are saved atomically; the job's Request is recorded last. A job
        that stopped half-way is simply run again: hours already charged are never charged again
        (each loan remembers the last hour charged), so the rerun completes the rest.
        """
        digest = payload_digest(command.payload_digest_source())
        first = self._recorded_request(command.request_id)
        if first is not None:
            if first.payload_digest != digest:
                raise RequestIdReused(command.request_id)
            return Outcome.model_validate(first.outcome | {"duplicate": True})
        scanned = charged_accounts = hours = 0
        interest: dict[str, Decimal] = {}
        for account_id in self._borrower_ids():
            scanned += 1
            charges = self._settle_account(command, account_id)
            charged_accounts += bool(charges)
            hours += len(charges)
            for charge in charges:
                interest[charge.asset] = interest.get(charge.asset, Decimal(0)) + charge.quantity
        decided = Decided(
            status=Status.ACCEPTED,
            context={
                "until": format_time(command.until),
                "accounts_scanned": scanned,
                "accounts_charged": charged_accounts,
                "hours_charged": hours,
                "interest": {a: format_plain(q) for a, q in sorted(interest.items())},
            },
        )
        unit = UnitOfWork(self, command)
        request, outcome = self._record_request(command, digest, decided, [], unit.stamp())
        try:
            self.save(request)
        except IntegrityError:  # the same job recorded concurrently: answer as its retry
            return self._accrue_interest(command)
        return outcome

    def _settle_account(self, command: AccrueInterest, account_id: UUID) -> list[HourCharge]:
        for _attempt in range(limits.SAVE_RETRY_COUNT_MAX):
            unit = UnitOfWork(self, command)
            account = unit.get(MarginAccount, account_id)
            assert account is not None, account_id
            charges = settle_interest(unit, account, command.until)
            if not charges:
                return []
            try:
                self.save(account)
            except IntegrityError:
                continue  # the account moved meanwhile (and settled its own hours): look again
            return charges
        raise SaveRetriesExhausted(f"{command.request_id}: accrual of {account_id}")

    def _borrower_ids(self) -> Iterator[UUID]:
        """Every account that ever borrowed, from the log (each decides itself what is due)."""
        # TODO(#6): read these from the accounts read model instead of scanning the log.
        seen: set[UUID] = set()
        position = 0
        topics = [get_topic(MarginAccount.Borrowed)]
        for _batch in range(limits.PROJECTION_BATCHES_MAX):
            notifications = self.recorder.select_notifications(
                start=position,
                limit=limits.PROJECTION_BATCH_SIZE,
                topics=topics,
                inclusive_of_start=False,
            )
            for notification in notifications:
                account_id = notification.originator_id
                assert isinstance(account_id, UUID), account_id
                if account_id not in seen:
                    seen.add(account_id)
                    yield account_id
            if len(notifications) < limits.PROJECTION_BATCH_SIZE:
                return
            position = notifications[-1].id
        raise RuntimeError("the log has more borrow events than the batch bound allows")

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
        digest: str,
        decided: Decided,
        changed: Iterable[LedgerAggregate],
        stamp: Stamp,
    ) -> tuple[Request, Outcome]:
        event_ids = [
            event_id for aggregate in changed for event_id in aggregate.pending_event_ids()
        ]
        effective_at = stamp.effective_at
        request_event_id = f"{Request.create_id(command.request_id)}:1"
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
            command=command.model_dump(mode="json"),
            digest=digest,
            outcome=outcome.model_dump(mode="json"),
            stamp=stamp,
        )
        assert request.pending_event_ids() == [request_event_id]
        return request, outcome
