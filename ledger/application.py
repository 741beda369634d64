"""Ledger: the application service. One method per command; it orchestrates, never decides."""

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Self
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import IntegrityError

from ledger import limits
from ledger.commands import (
    CommandBase,
    CommandInvalid,
    CompleteVerification,
    ListAsset,
    MarkPrices,
    SetAccountQuota,
    SetCollateralCap,
    TransferIn,
    TransferOut,
)
from ledger.domain.base import LedgerAggregate, Stamp
from ledger.domain.request import Request, payload_digest
from ledger.errors import RequestIdReused, SaveRetriesExhausted
from ledger.handlers import parameters, transfers
from ledger.outcomes import Outcome
from ledger.persistence import database_url, ensure_postgres_schema, env_for_url
from ledger.times import format_time
from ledger.unit_of_work import Decided, UnitOfWork

Handler = Callable[[UnitOfWork, Any], Decided]

HANDLERS: dict[type[CommandBase], Handler] = {
    ListAsset: parameters.list_asset,
    SetCollateralCap: parameters.set_collateral_cap,
    SetAccountQuota: parameters.set_account_quota,
    MarkPrices: parameters.mark_prices,
    TransferIn: transfers.transfer_in,
    CompleteVerification: transfers.complete_verification,
    TransferOut: transfers.transfer_out,
}


class Ledger(Application[UUID]):
    """The collateral ledger over one event store (a SQLite file or a PostgreSQL schema)."""

    name = "ledger"

    def __init__(self, url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url(url)
        settings = env_for_url(self.database_url) | (env or {})
        ensure_postgres_schema(settings)
        super().__init__(env=settings)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- commands ------------------------------------------------------------------------------

    def execute(self, command: CommandBase) -> Outcome:
        """Decide and record one command atomically; a retry of the same request is answered
        with its first outcome. Raises CommandInvalid (nothing recorded) for input it refuses."""
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
