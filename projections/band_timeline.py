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
from projections.events import Record, derives, type_name
from projections.sql import Db, Table, dec, dec_or_none, parse_time_key
from projections.store import Kept, ReadModel

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

    def __init__(self, view: Any) -> None:
        super().__init__(view=view)
        self._pools: Kept[str, dict[str, Any]] = Kept()  # by pool (AssetPool) id

    def begin(self, *, fresh: bool) -> None:
        self._pools.reset(fresh=fresh)

    def apply(self, db: Db, records: Sequence[Record]) -> None:
        pool_records = [r for r in records if derives(r.kind, POOL_EVENT)]
        if not pool_records:
            return
        pools = self._pools.rows
        pools.update(
            _load_pools(db, self._pools.missing(r.data["originator_id"] for r in pool_records))
        )
        changes = []
        for record in pool_records:
            kind, data = record.kind, record.data
            key = data["originator_id"]
            if derives(kind, AssetPool.Opened):
                pools[key] = _pool(key, data["asset"], ZERO, dict.fromkeys(CAP_FIELDS))
                continue
            pool = pools[key]
            if derives(kind, AssetPool.CapSet):
                pool |= record.event.cap_params.model_dump(include=set(CAP_FIELDS))
                pool["params"] = _params_of(pool)
            elif derives(kind, (AssetPool.TotalIncreased, AssetPool.TotalDecreased)):
                pool["platform_total"] = Decimal(data["platform_total_after"])
            else:
                continue
            before, after = pool["figures"], _figures(pool)
            pool["figures"] = after
            pool["is_changed"] = True
            if before[0] != after[0]:
                changes.append(
                    (
                        pool["asset"],
                        record.position,
                        record.event_id,
                        type_name(record.topic),
                        record.effective_key,
                        before[0],
                        after[0],
                        db.dec(before[1]),
                        db.dec(after[1]),
                        db.dec(before[2]),
                        db.dec(after[2]),
                        db.dec(pool["upper_limit"]),
                    )
                )
        db.append(BAND_CHANGES, changes, replace=True)

    def flush(self, db: Db) -> None:
        changed = [pool for pool in self._pools.rows.values() if pool["is_changed"]]
        db.upsert(
            BAND_STATE,
            (
                (
                    pool["pool_id"],
                    pool["asset"],
                    db.dec(pool["platform_total"]),
                    *(db.dec(pool[name]) for name in CAP_FIELDS),
                    pool["figures"][0],
                )
                for pool in changed
            ),
        )
        for pool in changed:
            pool["is_changed"] = False
        self._pools.trim()


POOL_EVENT = AssetPool.Event
ZERO = Decimal(0)
Figures = tuple[str | None, Decimal | None, Decimal]


def _pool(
    pool_id: str, asset: str, total: Decimal, cap: dict[str, Decimal | None]
) -> dict[str, Any]:
    pool: dict[str, Any] = {"pool_id": pool_id, "asset": asset, "platform_total": total, **cap}
    pool["params"] = _params_of(pool)
    pool["figures"] = _figures(pool)
    pool["is_changed"] = True
    return pool


def _params_of(pool: dict[str, Any]) -> CapParams | None:
    if pool["upper_limit"] is None:
        return None
    return CapParams(**{name: pool[name] for name in CAP_FIELDS})


def _figures(pool: dict[str, Any]) -> Figures:
    """(band, ratio, T) of a pool as it stands; no band or ratio without a cap."""
    total, params = pool["platform_total"], pool["params"]
    if params is None:
        return None, None, total
    band = band_of(platform_total=total, params=params).value
    return band, ratio_for_record(total, params.upper_limit), total


def _load_pools(db: Db, keys: set[str]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    columns = ("pool_id", "asset", "platform_total", *CAP_FIELDS)
    pools = {}
    for values in db.query_in(
        f"SELECT {', '.join(columns)} FROM {{band_state}} WHERE pool_id IN ({{keys}})", keys
    ):
        row = dict(zip(columns, values, strict=True))
        cap = {name: dec_or_none(row[name]) for name in CAP_FIELDS}
        pool = _pool(row["pool_id"], row["asset"], dec(row["platform_total"]), cap)
        pool["is_changed"] = False
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
