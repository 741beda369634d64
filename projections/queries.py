"""The Python API of the read side: accounts, assets, bands and the trial balance, now or at
any past moment (business time or log position), as pydantic models.

Every query catches the read models up first unless told not to, so an answer includes every
event committed before it was asked.
"""

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.base import LedgerAggregate
from ledger.domain.risk_parameters import RiskParameters
from ledger.domain.snapshots import Snapshot
from ledger.money import format_plain
from ledger.params import QUOTE_ASSET
from ledger.queries import (
    AccountView,
    account_view_of,
    parse_account_id,
    unknown_account_view,
    valuation_at,
)
from projections.accounts import account_ids, account_view_of_row, load_account, load_accounts
from projections.asset_totals import (
    CAP_FIELDS,
    TOTAL_FIELDS,
    load_assets,
    ratio_and_band,
)
from projections.band_timeline import BandChange, band_changes
from projections.event_index import version_at
from projections.journal import TrialBalanceLine, trial_balance
from projections.runner import ReadModels
from projections.sql import Db, dec, time_key


class AssetView(BaseModel):
    model_config = ConfigDict(frozen=True)

    asset: str
    collateral_rank: int
    capped: bool  # under the max collateral rule: capped rank and an upper limit set
    total: str  # held in cross and portfolio accounts (T for capped assets)
    isolated_total: str
    borrowed_total: str  # principal owed, all accounts
    interest_total: str  # interest owed, all accounts
    upper_limit: str | None
    fixed_quota_usdt: str | None
    ratio: str | None
    band: str | None
    price_usdt: str | None


class PointInTime(BaseModel):
    """Where in history a query looks: a business time, a log position, or now."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime | None = None
    position: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_axis(self) -> "PointInTime":
        if self.at is not None and self.position is not None:
            raise ValueError("give a business time (at) or a log position, not both")
        return self

    @property
    def is_now(self) -> bool:
        return self.at is None and self.position is None


NOW = PointInTime()


class ReadSide:
    """Queries over one ledger's read models."""

    def __init__(self, read_models: ReadModels, *, catch_up: bool = True) -> None:
        self.read_models = read_models
        self.ledger = read_models.ledger
        if catch_up:
            read_models.catch_up()

    def _db(self) -> Any:
        return self.read_models.store.transaction(commit=False)

    # --- accounts ---------------------------------------------------------------------------------

    def account(self, account_id: str, when: PointInTime = NOW) -> AccountView:
        """The account now (from the accounts read model) or at a past point (by replaying its
        events up to there, from the nearest snapshot)."""
        parse_account_id(account_id)
        if when.is_now:
            with self._db() as db:
                row = load_account(db, account_id)
            return unknown_account_view(account_id) if row is None else account_view_of_row(row)
        return self._account_then(account_id, when)

    def accounts(self, *, user: str | None = None) -> list[AccountView]:
        with self._db() as db:
            rows = load_accounts(db, account_ids(db, user=user))
        return [account_view_of_row(row) for _id, row in sorted(rows.items())]

    def _account_then(self, account_id: str, when: PointInTime) -> AccountView:
        user, name = parse_account_id(account_id)
        with self._db() as db:
            account = self._aggregate_then(db, MarginAccount.create_id(user, name), when)
            if account is None:
                return unknown_account_view(account_id)
            assert isinstance(account, MarginAccount)
            assets = [
                self._aggregate_then(db, Asset.create_id(symbol), when)
                for symbol in sorted(account.position().assets())
            ]
            parameters = self._aggregate_then(db, RiskParameters.create_id(), when)
        return account_view_of(account, valuation_at(account, assets, parameters))

    def _aggregate_then(self, db: Db, aggregate_id: UUID, when: PointInTime) -> Any:
        version = version_at(db, aggregate_id, at=when.at, position=when.position)
        if version is None:
            return None
        return self.ledger.repository.get(
            aggregate_id, version=version, projector_func=replay_events
        )

    # --- assets -----------------------------------------------------------------------------------

    def assets(self, when: PointInTime = NOW) -> list[AssetView]:
        """Every listed asset's totals, cap, ratio and band; at a past business time or right
        after a log position, from the history the asset totals model keeps (no replay)."""
        with self._db() as db:
            rows = load_assets(db)
            if when.at is not None:
                rows = _assets_then(db, rows, time_key(when.at))
            elif when.position is not None:
                rows = _assets_at_position(db, rows, when.position)
        return [_asset_view(row) for _symbol, row in sorted(rows.items())]

    # --- bands and the journal -------------------------------------------------------------------

    def bands(
        self,
        *,
        asset: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[BandChange]:
        with self._db() as db:
            return band_changes(
                db,
                asset=asset,
                since=None if since is None else time_key(since),
                until=None if until is None else time_key(until),
            )

    def trial_balance(self) -> list[TrialBalanceLine]:
        with self._db() as db:
            return trial_balance(db)


def replay_events(aggregate: Any, events: Iterable[DomainEventProtocol[UUID]]) -> Any:
    """The library's `project_aggregate` without its `isinstance` of a runtime-checkable
    Protocol per event, which costs more than decoding the event (profiled: ~60 µs of an
    as-of query's ~100 µs per replayed event); each is checked against our own classes."""
    for event in events:
        assert isinstance(event, LedgerAggregate.Event | Snapshot), type(event)
        aggregate = event.mutate(aggregate)
    return aggregate


def _asset_view(row: dict[str, Any]) -> AssetView:
    ratio, band = ratio_and_band(row)

    def plain(value: Decimal | None) -> str | None:
        return None if value is None else format_plain(value)

    capped = band is not None
    return AssetView(
        asset=row["asset"],
        collateral_rank=row["collateral_rank"],
        capped=capped,
        total=format_plain(row["capped_total"]),
        isolated_total=format_plain(row["isolated_total"]),
        borrowed_total=format_plain(row["borrowed_total"]),
        interest_total=format_plain(row["interest_total"]),
        upper_limit=plain(row["upper_limit"]) if capped else None,
        fixed_quota_usdt=plain(row["fixed_quota_usdt"]) if capped else None,
        ratio=plain(ratio),
        band=band,
        price_usdt=plain(row["price_usdt"]),
    )


def _assets_then(db: Db, rows: dict[str, dict[str, Any]], at: str) -> dict[str, dict[str, Any]]:
    """The asset rows as they stood at business time `at` (a fixed-width time key)."""
    then = {}
    for symbol, row in rows.items():
        if row["listed_at"] > at:
            continue
        past = dict(row)
        totals = _latest(db, "asset_totals_history", TOTAL_FIELDS, symbol, at)
        for name in TOTAL_FIELDS:
            past[name] = Decimal(0) if totals is None else dec(totals[name])
        _set_cap_and_price(past, symbol, lambda t, c, a: _latest(db, t, c, a, at))
        then[symbol] = past
    return then


def _assets_at_position(
    db: Db, rows: dict[str, dict[str, Any]], position: int
) -> dict[str, dict[str, Any]]:
    """The asset rows right after log position `position` (the events up to it, in log order).

    The totals history holds running totals in business-time order; the totals after a set of
    events are the sum of those events' changes whatever their order, so each row's change is
    taken against the row before it and the changes of the rows at or before `position` are
    added up. Caps and prices are the latest written at or before it: each comes from one
    aggregate, whose events are in log order and business-time order at once.
    """
    then = {}
    for symbol, row in rows.items():
        if version_at(db, Asset.create_id(symbol), position=position) is None:
            continue  # listed later
        past = dict(row)
        totals = [Decimal(0)] * len(TOTAL_FIELDS)
        previous = [Decimal(0)] * len(TOTAL_FIELDS)
        for written, *values in db.query(
            f"SELECT position, {', '.join(TOTAL_FIELDS)} FROM {{asset_totals_history}} "
            "WHERE asset = ? ORDER BY effective_at, position",
            (symbol,),
        ):
            current = [dec(value) for value in values]
            if int(written) <= position:
                totals = [t + c - p for t, c, p in zip(totals, current, previous, strict=True)]
            previous = current
        past.update(zip(TOTAL_FIELDS, totals, strict=True))
        _set_cap_and_price(past, symbol, lambda t, c, a: _written_last(db, t, c, a, position))
        then[symbol] = past
    return then


def _set_cap_and_price(
    past: dict[str, Any],
    symbol: str,
    lookup: Callable[[str, tuple[str, ...], str], dict[str, Any] | None],
) -> None:
    """The cap and the price in force: the history rows `lookup(table, columns, asset)` finds."""
    cap = lookup("asset_cap_history", CAP_FIELDS, symbol)
    for name in CAP_FIELDS:
        past[name] = None if cap is None else dec(cap[name])
    if symbol != QUOTE_ASSET:
        price = lookup("asset_price_history", ("price_usdt",), symbol)
        past["price_usdt"] = None if price is None else dec(price["price_usdt"])


def _written_last(
    db: Db, table: str, columns: tuple[str, ...], asset: str, position: int
) -> dict[str, Any] | None:
    rows = db.query(
        f"SELECT {', '.join(columns)} FROM {{{table}}} WHERE asset = ? AND position <= ? "
        "ORDER BY position DESC LIMIT 1",
        (asset, position),
    )
    return None if not rows else dict(zip(columns, rows[0], strict=True))


def _latest(
    db: Db, table: str, columns: tuple[str, ...], asset: str, at: str
) -> dict[str, Any] | None:
    rows = db.query(
        f"SELECT {', '.join(columns)} FROM {{{table}}} WHERE asset = ? AND effective_at <= ? "
        "ORDER BY effective_at DESC, position DESC LIMIT 1",
        (asset, at),
    )
    return None if not rows else dict(zip(columns, rows[0], strict=True))


def assets_view(ledger: Any) -> list[AssetView]:
    """Every asset as it stands now (opens the read models, catches up, reads)."""
    with ReadModels(ledger) as read_models:
        return ReadSide(read_models).assets()
