"""Per-asset platform totals: held in capped accounts (cross + portfolio, T for capped assets),
held in isolated accounts, borrowed and owed as interest; the cap, price, ratio and band; and
their history, so that the totals as of any past moment are one indexed lookup per asset.

The write side keeps T exactly for cap-eligible assets (AssetPool) to decide against; this read
model is computed from the accounts' events alone, which is what lets reconciliation compare.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from ledger.domain.account import AccountKind, MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.params import QUOTE_ASSET, CapParams
from ledger.rules.cap_band import band_of, ratio_for_record
from projections.sql import Db, Table, dec, dec_or_none, time_key
from projections.store import Positioned, ReadModel

TOTAL_FIELDS = ("capped_total", "isolated_total", "borrowed_total", "interest_total")
CAP_FIELDS = ("upper_limit", "fixed_quota_usdt", "band_b_ratio_min", "band_c_ratio_min")

ASSET_TOTALS = Table(
    name="asset_totals",
    columns=(
        ("asset", "text"),
        ("collateral_rank", "int"),
        ("is_cap_eligible", "int"),
        ("listed_at", "text"),
        *((name, "dec") for name in TOTAL_FIELDS),
        *((name, "dec?") for name in CAP_FIELDS),
        ("price_usdt", "dec?"),
        ("ratio", "dec?"),
        ("band", "text?"),
        ("last_position", "int"),
    ),
    primary_key=("asset",),
)
ACCOUNT_KINDS = Table(
    name="asset_totals_account_kinds",
    columns=(("originator_id", "text"), ("kind", "text")),
    primary_key=("originator_id",),
)
TOTALS_HISTORY = Table(
    name="asset_totals_history",
    columns=(
        ("asset", "text"),
        ("effective_at", "text"),
        ("position", "int"),
        *((name, "dec") for name in TOTAL_FIELDS),  # running totals in business-time order
    ),
    primary_key=("asset", "effective_at", "position"),
)
CAP_HISTORY = Table(
    name="asset_cap_history",
    columns=(
        ("asset", "text"),
        ("effective_at", "text"),
        ("position", "int"),
        *((name, "dec") for name in CAP_FIELDS),
    ),
    primary_key=("asset", "effective_at", "position"),
)
PRICE_HISTORY = Table(
    name="asset_price_history",
    columns=(
        ("asset", "text"),
        ("effective_at", "text"),
        ("position", "int"),
        ("price_usdt", "dec"),
    ),
    primary_key=("asset", "effective_at", "position"),
)

Deltas = dict[str, Decimal]


@dataclass
class Change:
    """What one event did to one asset's totals."""

    asset: str
    effective_at: str
    position: int
    deltas: Deltas = field(default_factory=lambda: dict.fromkeys(TOTAL_FIELDS, Decimal(0)))


class AssetTotals(ReadModel):
    name = "asset_totals"
    description = "per asset: capped, isolated, borrowed and interest totals, cap, ratio, band"
    tables: ClassVar[tuple[Table, ...]] = (
        ASSET_TOTALS,
        ACCOUNT_KINDS,
        TOTALS_HISTORY,
        CAP_HISTORY,
        PRICE_HISTORY,
    )

    def apply(self, db: Db, events: Sequence[Positioned]) -> None:
        assets = load_assets(db)
        by_id = {str(Asset.create_id(s)): s for s in assets} | {
            str(AssetPool.create_id(s)): s for s in assets
        }
        kinds = _load_kinds(db, events)
        changes: list[Change] = []
        caps, prices = [], []
        for position, event in events:
            effective_at = time_key(event.effective_at)
            match event:
                case Asset.Listed():
                    assets[event.symbol] = _new_asset(event, position)
                    by_id[str(event.originator_id)] = event.symbol
                    by_id[str(AssetPool.create_id(event.symbol))] = event.symbol
                case Asset.PriceMarked():
                    row = assets[by_id[str(event.originator_id)]]
                    row["price_usdt"] = event.price_usdt
                    row["last_position"] = position
                    prices.append((row["asset"], effective_at, position, event.price_usdt))
                case AssetPool.CapSet():
                    row = assets[by_id[str(event.originator_id)]]
                    for name in CAP_FIELDS:
                        row[name] = getattr(event.cap_params, name)
                    row["last_position"] = position
                    caps.append((row["asset"], effective_at, position, event.cap_params))
                case MarginAccount.Registered():
                    kinds[str(event.originator_id)] = event.kind.value
                    db.execute(
                        "INSERT INTO {asset_totals_account_kinds} VALUES (?, ?)",
                        (str(event.originator_id), event.kind.value),
                    )
                case MarginAccount.Event():
                    kind = kinds[str(event.originator_id)]
                    for change in account_changes(event, kind, effective_at, position):
                        row = assets[change.asset]
                        for name, delta in change.deltas.items():
                            row[name] += delta
                            assert row[name] >= 0, (change, row)
                        row["last_position"] = position
                        changes.append(change)
        _save_assets(db, assets.values())
        db.upsert(
            CAP_HISTORY,
            (
                (a, t, p, *(db.dec(getattr(params, name)) for name in CAP_FIELDS))
                for a, t, p, params in caps
            ),
        )
        db.upsert(PRICE_HISTORY, ((a, t, p, db.dec(price)) for a, t, p, price in prices))
        _record_history(db, changes)


def account_changes(event: Any, kind: str, effective_at: str, position: int) -> list[Change]:
    """The totals one account event moves, per asset (none for refusals and settings)."""
    holdings = "isolated_total" if kind == AccountKind.ISOLATED else "capped_total"
    changes: dict[str, Change] = {}

    def change(asset: str, name: str, delta: Decimal) -> None:
        if delta:
            entry = changes.setdefault(asset, Change(asset, effective_at, position))
            entry.deltas[name] += delta

    match event:
        case MarginAccount.TransferredIn() | MarginAccount.ToppedUp():
            change(event.asset, holdings, event.quantity)
        case MarginAccount.TransferredOut():
            change(event.asset, holdings, -event.quantity)
        case MarginAccount.Borrowed():
            change(event.asset, holdings, event.quantity)
            change(event.asset, "borrowed_total", event.quantity)
            change(event.asset, "interest_total", event.first_hour_interest)
        case MarginAccount.InterestCharged():
            change(event.asset, "interest_total", event.quantity)
        case MarginAccount.Repaid():
            change(event.asset, holdings, -event.quantity)
            change(event.asset, "borrowed_total", -event.principal_paid)
            change(event.asset, "interest_total", -event.interest_paid)
        case MarginAccount.TradeSettled():
            change(event.sell_asset, holdings, -event.sell_quantity)
            change(event.buy_asset, holdings, event.buy_quantity)
            change(event.fee_asset, holdings, -event.fee_quantity)
        case MarginAccount.Liquidated():
            for asset, quantity in event.sold.items():
                change(asset, holdings, -quantity)
            change(QUOTE_ASSET, holdings, event.remainder_usdt)
            for asset, quantity in event.repaid_principal.items():
                change(asset, "borrowed_total", -quantity)
            for asset, quantity in event.repaid_interest.items():
                change(asset, "interest_total", -quantity)
    return list(changes.values())


def _new_asset(event: Asset.Listed, position: int) -> dict[str, Any]:
    return {
        "asset": event.symbol,
        "collateral_rank": event.collateral_rank,
        "is_cap_eligible": event.collateral_rank in event.capped_ranks,
        "listed_at": time_key(event.effective_at),
        **dict.fromkeys(TOTAL_FIELDS, Decimal(0)),
        **dict.fromkeys(CAP_FIELDS),
        "price_usdt": Decimal(1) if event.symbol == QUOTE_ASSET else None,
        "last_position": position,
    }


def cap_params_of(row: dict[str, Any]) -> CapParams | None:
    """The asset's cap as it stands: None when no upper limit is set or it is not eligible."""
    if not row["is_cap_eligible"] or row["upper_limit"] is None:
        return None
    return CapParams(**{name: row[name] for name in CAP_FIELDS})


def ratio_and_band(row: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    params = cap_params_of(row)
    if params is None:
        return None, None
    total = row["capped_total"]
    return (
        ratio_for_record(total, params.upper_limit),
        band_of(platform_total=total, params=params).value,
    )


def load_assets(db: Db) -> dict[str, dict[str, Any]]:
    columns = [c for c in ASSET_TOTALS.column_names if c not in ("ratio", "band")]
    assets = {}
    for values in db.query(f"SELECT {', '.join(columns)} FROM {{asset_totals}}"):
        row = dict(zip(columns, values, strict=True))
        for name in (*TOTAL_FIELDS, *CAP_FIELDS, "price_usdt"):
            row[name] = dec_or_none(row[name])
        row["is_cap_eligible"] = bool(row["is_cap_eligible"])
        assets[row["asset"]] = row
    return assets


def _save_assets(db: Db, rows: Any) -> None:
    def values(row: dict[str, Any]) -> list[Any]:
        ratio, band = ratio_and_band(row)
        return [
            row["asset"],
            row["collateral_rank"],
            int(row["is_cap_eligible"]),
            row["listed_at"],
            *(db.dec(row[name]) for name in (*TOTAL_FIELDS, *CAP_FIELDS, "price_usdt")),
            db.dec(ratio),
            band,
            row["last_position"],
        ]

    db.upsert(ASSET_TOTALS, (values(row) for row in rows))


def _load_kinds(db: Db, events: Sequence[Positioned]) -> dict[str, str]:
    keys = {str(e.originator_id) for _p, e in events if isinstance(e, MarginAccount.Event)}
    return dict(
        db.query_in(
            "SELECT originator_id, kind FROM {asset_totals_account_kinds} "
            "WHERE originator_id IN ({keys})",
            keys,
        )
    )


def _record_history(db: Db, changes: list[Change]) -> None:
    """Append running totals per asset in business-time order.

    Business time only never goes backwards within one aggregate: two accounts may record an
    earlier time after a later one. Then the later rows' running totals are corrected too.
    """
    by_asset: dict[str, list[Change]] = defaultdict(list)
    for change in changes:
        by_asset[change.asset].append(change)
    for asset, asset_changes in by_asset.items():
        latest = _history_before(db, asset, None)
        appended = []
        for change in asset_changes:
            key = (change.effective_at, change.position)
            if latest is None or key > latest[0]:
                base = latest[1] if latest else dict.fromkeys(TOTAL_FIELDS, Decimal(0))
                totals = {name: base[name] + change.deltas[name] for name in TOTAL_FIELDS}
                appended.append((asset, *key, *(db.dec(totals[n]) for n in TOTAL_FIELDS)))
                latest = (key, totals)
                continue
            db.upsert(TOTALS_HISTORY, appended)
            appended = []
            _insert_earlier(db, change)
            latest = _history_before(db, asset, None)
        db.upsert(TOTALS_HISTORY, appended)


def _history_before(
    db: Db, asset: str, key: tuple[str, int] | None
) -> tuple[tuple[str, int], Deltas] | None:
    """The asset's last history row (before `key` if given): its key and running totals."""
    columns = ", ".join(TOTAL_FIELDS)
    if key is None:
        rows = db.query(
            f"SELECT effective_at, position, {columns} FROM {{asset_totals_history}} "
            "WHERE asset = ? ORDER BY effective_at DESC, position DESC LIMIT 1",
            (asset,),
        )
    else:
        rows = db.query(
            f"SELECT effective_at, position, {columns} FROM {{asset_totals_history}} "
            "WHERE asset = ? AND (effective_at < ? OR (effective_at = ? AND position < ?)) "
            "ORDER BY effective_at DESC, position DESC LIMIT 1",
            (asset, key[0], key[0], key[1]),
        )
    if not rows:
        return None
    effective_at, position, *totals = rows[0]
    return (str(effective_at), int(position)), {
        name: dec(value) for name, value in zip(TOTAL_FIELDS, totals, strict=True)
    }


def _insert_earlier(db: Db, change: Change) -> None:
    key = (change.effective_at, change.position)
    before = _history_before(db, change.asset, key)
    base = before[1] if before else dict.fromkeys(TOTAL_FIELDS, Decimal(0))
    totals = {name: base[name] + change.deltas[name] for name in TOTAL_FIELDS}
    db.upsert(TOTALS_HISTORY, [(change.asset, *key, *(db.dec(totals[n]) for n in TOTAL_FIELDS))])
    columns = ", ".join(TOTAL_FIELDS)
    later = db.query(
        f"SELECT effective_at, position, {columns} FROM {{asset_totals_history}} "
        "WHERE asset = ? AND (effective_at > ? OR (effective_at = ? AND position > ?))",
        (change.asset, key[0], key[0], key[1]),
    )
    db.upsert(
        TOTALS_HISTORY,
        (
            (
                change.asset,
                effective_at,
                position,
                *(
                    db.dec(dec(value) + change.deltas[name])
                    for name, value in zip(TOTAL_FIELDS, totals_later, strict=True)
                ),
            )
            for effective_at, position, *totals_later in later
        ),
    )
