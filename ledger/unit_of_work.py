"""One attempt at one command: the aggregates it loaded, changed, and the business time it uses."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from pydantic import BaseModel, ConfigDict

from ledger.commands import CommandBase
from ledger.domain.asset import Asset, AssetCatalog, Unpriced, market_of
from ledger.domain.base import LedgerAggregate, Stamp
from ledger.domain.risk_parameters import RiskParameters
from ledger.domain.user_profile import UserProfile
from ledger.errors import LedgerInputError
from ledger.outcomes import RejectionReason, Status
from ledger.rules.valuation import Market
from ledger.times import format_time

if TYPE_CHECKING:
    from ledger.application import Ledger
    from ledger.write_transaction import WriteTransaction

A = TypeVar("A", bound=LedgerAggregate)


class Decided(BaseModel):
    """What a handler decided; the application turns it into the recorded Outcome."""

    model_config = ConfigDict(frozen=True)

    status: Status
    reason: RejectionReason | None = None
    message: str | None = None
    account: str | None = None
    context: dict[str, Any] = {}


class UnitOfWork:
    def __init__(
        self, ledger: "Ledger", command: CommandBase, transaction: "WriteTransaction | None" = None
    ) -> None:
        """Aggregates come from `transaction` (the write path, under the log's lock) when given,
        else from the library's repository (reads outside any write)."""
        self.ledger = ledger
        self.command = command
        self.transaction = transaction
        self.changed: dict[UUID, LedgerAggregate] = {}
        self._loaded: dict[UUID, LedgerAggregate | None] = {}
        self._stamp: Stamp | None = None
        self._as_of: dict[tuple[UUID, datetime], Any] = {}

    def loaded_ids(self) -> list[UUID]:
        return list(self._loaded)

    def resolved_stamp(self) -> Stamp:
        """The stamp the handler used, or (if it changed nothing) the command's own time."""
        return self._stamp if self._stamp is not None else self.stamp()

    def get(self, cls: type[A], aggregate_id: UUID) -> A | None:
        if aggregate_id not in self._loaded:
            aggregate: LedgerAggregate | None
            if self.transaction is not None:
                aggregate = self.transaction.get(aggregate_id)
            else:
                try:
                    aggregate = self.ledger.repository.get(aggregate_id)
                except AggregateNotFoundError:
                    aggregate = None
            assert aggregate is None or isinstance(aggregate, cls), (cls, aggregate)
            self._loaded[aggregate_id] = aggregate
        found = self._loaded[aggregate_id]
        assert found is None or isinstance(found, cls)
        return found

    def catalog(self) -> AssetCatalog | None:
        return self.get(AssetCatalog, AssetCatalog.create_id())

    def get_listed(self, symbol: str) -> Asset | None:
        return self.get(Asset, Asset.create_id(symbol))

    def listed_asset(self, symbol: str, field: str = "asset") -> Asset:
        asset = self.get(Asset, Asset.create_id(symbol))
        if asset is None:
            raise LedgerInputError(field, f"{symbol} is not a listed asset")
        return asset

    def asset_as_of(self, asset: Asset, at: datetime, field: str = "asset") -> Asset:
        """The asset as it stood at business time `at`: its listing and the price then in force."""
        as_of = self.as_of(asset, at)
        if as_of is None:
            raise LedgerInputError(field, f"{asset.symbol} was not yet listed at {format_time(at)}")
        return as_of

    def as_of(self, aggregate: A, at: datetime) -> A | None:
        """An aggregate read (not changed) by a decision, as it stood at business time `at`."""
        if aggregate.last_effective_at <= at:
            return aggregate
        key = (aggregate.id, at)
        if key not in self._as_of:
            self._as_of[key] = (
                self.ledger.aggregate_as_of(aggregate.id, at)
                if self.transaction is None
                else self.transaction.as_of(aggregate.id, at)
            )
        found = self._as_of[key]
        assert found is None or isinstance(found, type(aggregate)), found
        return found

    def risk_parameters(self, at: datetime) -> RiskParameters:
        parameters = self.get(RiskParameters, RiskParameters.create_id())
        assert parameters is not None, "recorded with the first listing"
        as_of = self.as_of(parameters, at)
        assert as_of is not None, f"risk parameters recorded after {at}"
        return as_of

    def user_profile(self, user: str) -> UserProfile | None:
        return self.get(UserProfile, UserProfile.create_id(user))

    def user_profile_as_of(self, user: str, at: datetime) -> UserProfile | None:
        """The user's choices as they stood at `at` (read by a decision, not changed by it)."""
        profile = self.user_profile(user)
        return None if profile is None else self.as_of(profile, at)

    def market(self, symbols: Iterable[str], at: datetime, field: str = "asset") -> Market:
        """Prices, haircut ladders and maintenance brackets in force at `at` for these assets."""
        assets = [self.asset_as_of(self.listed_asset(s), at) for s in sorted(set(symbols))]
        try:
            return market_of(assets, self.risk_parameters(at).maintenance_brackets_default)
        except Unpriced as missing:
            raise LedgerInputError(
                field,
                f"{missing.symbol} has no index price in force, and the decision needs the "
                "account's value; mark_prices must come first",
            ) from None

    def change(self, *aggregates: LedgerAggregate | None) -> None:
        for aggregate in aggregates:
            if aggregate is not None:
                self.changed[aggregate.id] = aggregate

    def stamp(self, *touched: LedgerAggregate | None) -> Stamp:
        """The command's business time, checked against every aggregate it may change.

        DOMAIN.md §8 Interpretation: an explicit effective_at earlier than the latest event of an
        aggregate it would change is invalid. When effective_at was omitted we use the clock, but
        never before those events (another process's clock may run slightly ahead of ours).
        """
        latest = max(
            (a.last_effective_at for a in touched if a is not None),
            default=None,
        )
        given = self.command.effective_at
        if given is None:
            now = datetime.now(UTC)
            at = now if latest is None else max(now, latest)
        else:
            at = given
            if latest is not None and given < latest:
                raise LedgerInputError(
                    "effective_at",
                    f"{format_time(given)} is earlier than the latest event "
                    f"({format_time(latest)}) of what this command would change",
                )
        assert self._stamp is None, "a command has one business time"
        self._stamp = Stamp(
            effective_at=at,
            actor=self.command.default_actor(),
            request_id=self.command.request_id,
        )
        return self._stamp
