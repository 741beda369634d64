"""Ledger: the application service. One method per command; it orchestrates, never decides."""

import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, Self
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import BaseAggregate, MutableOrImmutableAggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from ledger import jobs, limits
from ledger.commands import (
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
)
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import LedgerAggregate, Stamp
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.request import Request, payload_digest
from ledger.errors import RequestIdReused, SaveRetriesExhausted
from ledger.handlers import borrowing, modes, parameters, risk, trading, transfers, users
from ledger.outcomes import Outcome, Status
from ledger.persistence import database_url, env_for_url, schema_setup_lock
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
        if read_only:
            self._open(settings | {"CREATE_TABLE": "n"})
            return
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
        if isinstance(command, AccrueInterest | CheckMargins):
            return JOBS[type(command)](self, command)
        handler = HANDLERS[type(command)]
        digest = payload_digest(command.payload_digest_source())
        for _attempt in range(limits.SAVE_RETRY_COUNT_MAX):
            first = self.first_outcome(command)
            if first is not None:
                return first
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

    def check_margins(self, command: CheckMargins) -> Outcome:
        return self.execute(command)

    def fund_insurance(self, command: FundInsurance) -> Outcome:
        return self.execute(command)

    def set_auto_top_up(self, command: SetAutoTopUp) -> Outcome:
        return self.execute(command)

    def record_job(self, command: CommandBase, context: dict[str, Any]) -> Outcome:
        """Record a job's Request with its summary, after its per-account work was saved."""
        digest = payload_digest(command.payload_digest_source())
        decided = Decided(status=Status.ACCEPTED, context=context)
        unit = UnitOfWork(self, command)
        request, outcome = self._record_request(command, digest, decided, [], unit.stamp())
        try:
            self.save(request)
        except IntegrityError:  # the same job recorded concurrently: answer as its retry
            first = self.first_outcome(command)
            assert first is not None, command.request_id
            return first
        return outcome

    def first_outcome(self, command: CommandBase) -> Outcome | None:
        """The recorded outcome of this request as a duplicate, None if it was never recorded."""
        first = self._recorded_request(command.request_id)
        if first is None:
            return None
        if first.payload_digest != payload_digest(command.payload_digest_source()):
            raise RequestIdReused(command.request_id)
        return Outcome.model_validate(first.outcome | {"duplicate": True})

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
