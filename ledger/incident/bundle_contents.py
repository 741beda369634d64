"""What a bundle holds besides the events: the log segment of a window, the chain links around
it, the parameters in force and the as-of state at both ends, the band timeline and the
explanations of the refused requests."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger import limits
from ledger.application import Ledger
from ledger.audit.chain import GENESIS, Digest
from ledger.audit.plain import plain_json
from ledger.audit.recorders import CHAIN_TABLE
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.request import Request
from ledger.domain.risk_parameters import RiskParameters
from ledger.log import log_events
from ledger.persistence import raw_position_column, raw_rows, raw_table


class Segment:
    """The contiguous log positions [first, last] holding every event dated in [since, until]
    (it may hold a few events dated outside, recorded among them: kept, so the chain is
    unbroken), with the accounts and refused requests it holds."""

    def __init__(self, ledger: Ledger, since: datetime, until: datetime) -> None:
        self.first: int | None = None
        self.last: int | None = None
        self.outside = 0  # events in the segment dated outside the window
        self.account_ids: set[UUID] = set()
        self.refused: list[str] = []  # request ids
        pending_outside = 0
        for position, event in log_events(ledger):
            inside = since <= event.effective_at <= until
            if not inside:
                pending_outside += self.first is not None
                continue
            if self.first is None:
                self.first = position
            self.outside += pending_outside
            pending_outside = 0
            self.last = position
            if isinstance(event, MarginAccount.Event):
                self.account_ids.add(event.originator_id)
            if isinstance(event, Request.Recorded) and event.outcome.get("status") == "rejected":
                self.refused.append(event.request_id)

    @property
    def is_empty(self) -> bool:
        return self.first is None


def link_before(ledger: Ledger, position: int) -> Digest:
    """The chain's link just before `position` (GENESIS at 0 before the first event)."""
    recorder: Any = ledger.recorder
    rows = raw_rows(
        recorder,
        f"SELECT position, hash FROM {raw_table(recorder, CHAIN_TABLE)} WHERE position < ? "
        "ORDER BY position DESC LIMIT 1",
        (position,),
    )
    if not rows:
        return Digest(position=0, hash=GENESIS)
    return Digest(position=int(rows[0][0]), hash=str(rows[0][1]))


def stored_records(ledger: Ledger, first: int, last: int) -> Iterator[dict[str, Any]]:
    """Each event of [first, last] as stored (the bytes its chain link hashes, base64), with
    its stored link, a batch at a time."""
    import base64

    recorder: Any = ledger.recorder
    column = raw_position_column(recorder)
    after = first - 1
    for _batch in range(limits.PROJECTION_BATCHES_MAX):
        rows = raw_rows(
            recorder,
            f"SELECT e.{column}, e.originator_id, e.originator_version, e.topic, e.state, c.hash "
            f"FROM {raw_table(recorder)} e LEFT JOIN {raw_table(recorder, CHAIN_TABLE)} c "
            f"ON c.position = e.{column} WHERE e.{column} > ? AND e.{column} <= ? "
            f"ORDER BY e.{column} LIMIT ?",
            (after, last, limits.PROJECTION_BATCH_SIZE),
        )
        for position, originator_id, version, topic, state, link in rows:
            data = state.encode() if isinstance(state, str) else bytes(state)
            yield {
                "position": int(position),
                "originator_id": str(
                    originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
                ),
                "originator_version": int(version),
                "topic": topic,
                "state_base64": base64.b64encode(data).decode(),
                "link": link,
            }
        if len(rows) < limits.PROJECTION_BATCH_SIZE:
            return
        after = int(rows[-1][0])
    raise RuntimeError("the segment has more batches than the batch bound allows")


def parameters_at(ledger: Ledger, at: datetime) -> dict[str, Any]:
    """Every parameter in force at business time `at`: per asset its listing, price, borrow
    terms, maintenance brackets and cap; the platform's thresholds and rules."""
    catalog = ledger.aggregate_as_of(AssetCatalog.create_id(), at)
    assets: dict[str, Any] = {}
    for symbol in sorted(getattr(catalog, "symbols", []) if catalog is not None else []):
        asset: Any = ledger.aggregate_as_of(Asset.create_id(symbol), at)
        if asset is None:
            continue
        pool: Any = ledger.aggregate_as_of(AssetPool.create_id(symbol), at)
        assets[symbol] = plain_json(
            {
                "collateral_rank": asset.collateral_rank,
                "capped_rank": asset.is_cap_eligible,
                "collateral_ladder": list(asset.collateral_ladder),
                "quantity_decimals": asset.quantity_decimals,
                "price_usdt": asset.price_usdt,
                "borrow_terms": asset.borrow_terms,
                "maintenance_brackets": asset.maintenance_brackets,
                "cap": None if pool is None else pool.cap_params,
            }
        )
    risk: Any = ledger.aggregate_as_of(RiskParameters.create_id(), at)
    platform = (
        None
        if risk is None
        else plain_json(
            {
                "thresholds": risk.thresholds,
                "platform_rules": risk.platform_rules,
                "maintenance_brackets_default": list(risk.maintenance_brackets_default),
            }
        )
    )
    return {"assets": assets, "platform": platform}


def state_at(reader: Any, ledger: Ledger, account_ids: set[UUID], at: datetime) -> dict[str, Any]:
    """The as-of state at `at`: every asset's totals and band, and the window's accounts."""
    from projections.queries import PointInTime

    when = PointInTime(at=at)
    names = []
    for account_id in account_ids:
        account = ledger.get_aggregate(MarginAccount, account_id)
        if account is not None:
            names.append(str(account.account_id))
    return {
        "assets": [a.model_dump(mode="json") for a in reader.assets(when)],
        "accounts": [reader.account(name, when).model_dump(mode="json") for name in sorted(names)],
    }
