"""The band timeline: every change of a capped asset's band (DOMAIN.md §3), with its time, the
ratio before and after, and the event that caused it.

It follows the AssetPool, the aggregate the cap is decided against, so its totals are the T
every decision saw.
"""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ledger.domain.asset_pool import AssetPool
from ledger.money import format_plain
from ledger.params import CapParams
from ledger.rules.cap_band import band_of, ratio_for_record
from ledger.times import format_time
from projections.sql import Db, Table, dec, dec_or_none, parse_time_key, time_key
from projections.store import Positioned, ReadModel

CAP_FIELDS = ("upper_limit", "fixed_quota_usdt", "band_b_ratio_min", "band_c_ratio_min")

BAND_STATE = Table(
    name="band_state",
    columns=(
        ("pool_id", "text"),
        ("asset", "text"),
        ("platform_total", "dec"),
        *((name, "dec?") for name in CAP_FIELDS),
        ("band", "text?"),
    ),
    primary_key=("pool_id",),
)
BAND_CHANGES = Table(
    name="band_changes",
    columns=(
        ("asset", "text"),
        ("position", "int"),
        ("event_id", "text"),
        ("event_type", "text"),
        ("effective_at", "text"),
        ("band_before", "text?"),
        ("band_after", "text?"),
        ("ratio_before", "dec?"),
        ("ratio_after", "dec?"),
        ("platform_total_before", "dec"),
        ("platform_total_after", "dec"),
        ("upper_limit", "dec?"),
    ),
    primary_key=("asset", "position"),
    indexes=(("effective_at",), ("position",)),
)


class BandChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    asset: str
    position: int
    event_id: str
    event_type: str
    effective_at: str
    band_before: str | None  # None: the asset had no cap yet
    band_after: str | None
    ratio_before: str | None
    ratio_after: str | None
    platform_total_before: str
    platform_total_after: str
    upper_limit: str | None


class BandTimeline(ReadModel):
    name = "band_timeline"
    description = "every change of a capped asset's band, with ratios and the causing event"
    tables: ClassVar[tuple[Table, ...]] = (BAND_STATE, BAND_CHANGES)

    def apply(self, db: Db, events: Sequence[Positioned]) -> None:
        pool_events = [(p, e) for p, e in events if isinstance(e, AssetPool.Event)]
        if not pool_events:
            return
        pools = _load_pools(db, {str(e.originator_id) for _p, e in pool_events})
        changes = []
        for position, event in pool_events:
            key = str(event.originator_id)
            if isinstance(event, AssetPool.Opened):
                pools[key] = {"pool_id": key, "asset": event.asset, "platform_total": Decimal(0)}
                pools[key] |= dict.fromkeys(CAP_FIELDS) | {"is_changed": True}
                continue
            pool = pools[key]
            before = _figures(pool)
            match event:
                case AssetPool.CapSet():
                    pool |= event.cap_params.model_dump(include=set(CAP_FIELDS))
                case AssetPool.TotalIncreased() | AssetPool.TotalDecreased():
                    pool["platform_total"] = event.platform_total_after
                case _:
                    continue
            after = _figures(pool)
            pool["is_changed"] = True
            if before[0] != after[0]:
                changes.append(
                    (
                        pool["asset"],
                        position,
                        event.event_id,
                        type(event).__name__,
                        time_key(event.effective_at),
                        before[0],
                        after[0],
                        db.dec(before[1]),
                        db.dec(after[1]),
                        db.dec(before[2]),
                        db.dec(after[2]),
                        db.dec(pool["upper_limit"]),
                    )
                )
        db.upsert(
            BAND_STATE,
            (
                (
                    pool["pool_id"],
                    pool["asset"],
                    db.dec(pool["platform_total"]),
                    *(db.dec(pool[name]) for name in CAP_FIELDS),
                    _figures(pool)[0],
                )
                for pool in pools.values()
                if pool.get("is_changed")
            ),
        )
        db.upsert(BAND_CHANGES, changes)


def _figures(pool: dict[str, Any]) -> tuple[str | None, Decimal | None, Decimal]:
    """(band, ratio, T) of a pool as it stands; no band or ratio without a cap."""
    total = pool["platform_total"]
    if pool["upper_limit"] is None:
        return None, None, total
    params = CapParams(**{name: pool[name] for name in CAP_FIELDS})
    band = band_of(platform_total=total, params=params).value
    return band, ratio_for_record(total, params.upper_limit), total


def _load_pools(db: Db, keys: set[str]) -> dict[str, dict[str, Any]]:
    columns = ("pool_id", "asset", "platform_total", *CAP_FIELDS)
    pools = {}
    for values in db.query_in(
        f"SELECT {', '.join(columns)} FROM {{band_state}} WHERE pool_id IN ({{keys}})", keys
    ):
        pool = dict(zip(columns, values, strict=True))
        pool["platform_total"] = dec(pool["platform_total"])
        for name in CAP_FIELDS:
            pool[name] = dec_or_none(pool[name])
        pools[pool["pool_id"]] = pool
    return pools


def band_changes(
    db: Db,
    *,
    asset: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[BandChange]:
    """Band changes in log order, optionally of one asset and between two business times."""
    where, params = ["1 = 1"], []
    if asset is not None:
        where.append("asset = ?")
        params.append(asset)
    if since is not None:
        where.append("effective_at >= ?")
        params.append(since)
    if until is not None:
        where.append("effective_at <= ?")
        params.append(until)
    columns = BAND_CHANGES.column_names
    rows = db.query(
        f"SELECT {', '.join(columns)} FROM {{band_changes}} WHERE {' AND '.join(where)} "
        "ORDER BY position, asset",
        params,
    )
    changes = []
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        for name in (
            "ratio_before",
            "ratio_after",
            "platform_total_before",
            "platform_total_after",
            "upper_limit",
        ):
            value = dec_or_none(row[name])
            row[name] = None if value is None else format_plain(value)
        row["effective_at"] = format_time(parse_time_key(row["effective_at"]))
        row["position"] = int(row["position"])
        changes.append(BandChange(**row))
    return changes
