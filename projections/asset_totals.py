"""Per-asset platform totals: held in capped accounts (cross + portfolio, T for capped assets),
held in isolated accounts, borrowed and owed as interest; the cap, price, ratio and band; and
their history, so that the totals as of any past moment are one indexed lookup per asset.

The write side keeps T exactly for cap-eligible assets (AssetPool) to decide against; this read
model is computed from the accounts' events alone, which is what lets reconciliation compare.
"""

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from ledger.domain.account import AccountKind, MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.params import QUOTE_ASSET, CapParams
from ledger.rules.cap_band import band_of, ratio_for_record
from projections.events import Record, Roles
from projections.sql import Db, Table, dec, dec_or_none, time_key
from projections.store import Kept, ReadModel

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

Deltas = list[Decimal]  # per TOTAL_FIELDS
Latest = tuple[tuple[str, int], list[Decimal], list[Any]]  # key, running totals, as written


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

    def __init__(self, view: Any) -> None:
        super().__init__(view=view)
        self._assets: dict[str, dict[str, Any]] | None = None  # by symbol; the table is small
        self._by_id: dict[str, str] = {}  # Asset and AssetPool ids -> symbol
        self._kinds: Kept[str, str] = Kept()  # account originator id -> kind
        self._history = _History()

    def begin(self, *, fresh: bool) -> None:
        self._assets = {} if fresh else None
        self._by_id = {}
        self._kinds.reset(fresh=fresh)
        self._history = _History(fresh=fresh)

    def apply(self, db: Db, records: Sequence[Record]) -> None:
        if self._assets is None:
            self._assets = load_assets(db)
            for symbol in self._assets:
                self._note_ids(symbol)
        assets, by_id, kinds = self._assets, self._by_id, self._kinds.rows
        roles = ROLES
        if not self._kinds.complete:
            wanted = {r.data["originator_id"] for r in records if callable(roles[r.kind])}
            kinds.update(_load_kinds(db, self._kinds.missing(wanted)))
        registered, caps, prices = [], [], []
        history = self._history
        for record in records:
            role = roles[record.kind]
            if role is None:
                continue
            data, position = record.data, record.position
            if isinstance(role, str):
                if role == REGISTERED:
                    kind = kinds[data["originator_id"]] = AccountKind(data["kind"]).value
                    registered.append((data["originator_id"], kind))
                elif role == LISTED:
                    assets[record.event.symbol] = _new_asset(record.event, position)
                    self._note_ids(record.event.symbol)
                elif role == PRICE_MARKED:
                    row = assets[by_id[data["originator_id"]]]
                    row["price_usdt"] = price = Decimal(data["price_usdt"])
                    row["last_position"] = position
                    prices.append((row["asset"], record.effective_key, position, price))
                elif role == CAP_SET:
                    row = assets[by_id[data["originator_id"]]]
                    params = record.event.cap_params
                    for name in CAP_FIELDS:
                        row[name] = getattr(params, name)
                    row["last_position"] = position
                    caps.append((row["asset"], record.effective_key, position, params))
                continue
            holdings = ISOLATED if kinds[data["originator_id"]] == ISOLATED_KIND else CAPPED
            changes: dict[str, Deltas] = {}
            role(changes, data, holdings)
            for asset, deltas in changes.items():
                row = assets[asset]
                for index, delta in enumerate(deltas):
                    if delta:
                        name = TOTAL_FIELDS[index]
                        row[name] += delta
                        assert row[name] >= 0, (data, row)
                row["last_position"] = position
                history.add(db, asset, (record.effective_key, position), deltas)
        db.executemany("INSERT INTO {asset_totals_account_kinds} VALUES (?, ?)", registered)
        db.upsert(
            CAP_HISTORY,
            (
                (a, t, p, *(db.dec(getattr(params, name)) for name in CAP_FIELDS))
                for a, t, p, params in caps
            ),
        )
        db.upsert(PRICE_HISTORY, ((a, t, p, db.dec(price)) for a, t, p, price in prices))
        history.flush(db)  # appended rows are final: written now, not kept to the commit

    def flush(self, db: Db) -> None:
        if self._assets is not None:
            _save_assets(db, self._assets.values())
        self._history.flush(db)
        self._kinds.trim()

    def _note_ids(self, symbol: str) -> None:
        self._by_id[str(Asset.create_id(symbol))] = symbol
        self._by_id[str(AssetPool.create_id(symbol))] = symbol


CAPPED, ISOLATED, BORROWED, INTEREST = range(len(TOTAL_FIELDS))
ISOLATED_KIND = AccountKind.ISOLATED.value
ZERO = Decimal(0)
Changes = dict[str, Deltas]  # what one account event moves, per asset: never all zero


def _change(changes: Changes, asset: str, index: int, delta: Decimal) -> None:
    if delta:
        deltas = changes.get(asset)
        if deltas is None:
            deltas = changes[asset] = [ZERO, ZERO, ZERO, ZERO]
        deltas[index] += delta


def _transferred_in(changes: Changes, data: dict[str, Any], holdings: int) -> None:
    _change(changes, data["asset"], holdings, Decimal(data["quantity"]))


def _transferred_out(changes: Changes, data: dict[str, Any], holdings: int) -> None:
    _change(changes, data["asset"], holdings, -Decimal(data["quantity"]))


def _borrowed(changes: Changes, data: dict[str, Any], holdings: int) -> None:
    asset, quantity = data["asset"], Decimal(data["quantity"])
    _change(changes, asset, holdings, quantity)
    _change(changes, asset, BORROWED, quantity)
    _change(changes, asset, INTEREST, Decimal(data["first_hour_interest"]))


def _interest_charged(changes: Changes, data: dict[str, Any], holdings: int) -> None:
    _change(changes, data["asset"], INTEREST, Decimal(data["quantity"]))


def _repaid(changes: Changes, data: dict[str, Any], holdings: int) -> None:
    asset = data["asset"]
    _change(changes, asset, holdings, -Decimal(data["quantity"]))
    _change(changes, asset, BORROWED, -Decimal(data["principal_paid"]))
    _change(changes, asset, INTEREST, -Decimal(data["interest_paid"]))


def _trade_settled(changes: Changes, data: dict[str, Any], holdings: int) -> None:
    _change(changes, data["sell_asset"], holdings, -Decimal(data["sell_quantity"]))
    _change(changes, data["buy_asset"], holdings, Decimal(data["buy_quantity"]))
    _change(changes, data["fee_asset"], holdings, -Decimal(data["fee_quantity"]))


def _liquidated(changes: Changes, data: dict[str, Any], holdings: int) -> None:
    for asset, quantity in data["sold"].items():
        _change(changes, asset, holdings, -Decimal(quantity))
    _change(changes, QUOTE_ASSET, holdings, Decimal(data["remainder_usdt"]))
    for asset, quantity in data["repaid_principal"].items():
        _change(changes, asset, BORROWED, -Decimal(quantity))
    for asset, quantity in data["repaid_interest"].items():
        _change(changes, asset, INTEREST, -Decimal(quantity))


def _settings(changes: Changes, data: dict[str, Any], holdings: int) -> None:
    """Refusals and settings move no total."""


REGISTERED, LISTED, PRICE_MARKED, CAP_SET = "registered", "listed", "price_marked", "cap_set"
# An account event's role is the function of the totals it moves.
Role = str | Callable[[Changes, dict[str, Any], int], None] | None
ROLES: Roles[Role] = Roles(
    [
        (MarginAccount.Registered, REGISTERED),
        ((MarginAccount.TransferredIn, MarginAccount.ToppedUp), _transferred_in),
        (MarginAccount.TransferredOut, _transferred_out),
        (MarginAccount.Borrowed, _borrowed),
        (MarginAccount.InterestCharged, _interest_charged),
        (MarginAccount.Repaid, _repaid),
        (MarginAccount.TradeSettled, _trade_settled),
        (MarginAccount.Liquidated, _liquidated),
        (MarginAccount.Event, _settings),
        (Asset.Listed, LISTED),
        (Asset.PriceMarked, PRICE_MARKED),
        (AssetPool.CapSet, CAP_SET),
    ],
    default=None,
)


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


def _load_kinds(db: Db, keys: set[str]) -> dict[str, str]:
    if not keys:
        return {}
    return dict(
        db.query_in(
            "SELECT originator_id, kind FROM {asset_totals_account_kinds} "
            "WHERE originator_id IN ({keys})",
            keys,
        )
    )


class _History:
    """Running totals per asset in business-time order (asset_totals_history).

    Business time only never goes backwards within one aggregate: two accounts may record an
    earlier time after a later one. Then the later rows' running totals are corrected too.
    Each asset's last row is kept in memory, so appending (the usual case) reads nothing.
    """

    def __init__(self, *, fresh: bool = False) -> None:
        self.latest: dict[str, Latest | None] = {}  # an asset not here: read its last row
        self.fresh = fresh  # the table was created empty: an asset not here has no rows
        self.appended: list[tuple[Any, ...]] = []

    def add(self, db: Db, asset: str, key: tuple[str, int], deltas: Deltas) -> None:
        latest = self.latest[asset] if asset in self.latest else self._read_latest(db, asset)
        if latest is not None and key <= latest[0]:
            self.flush(db)
            _insert_earlier(db, asset, key, deltas)
            self.latest[asset] = _history_before(db, asset, None)
            return
        if latest is None:
            totals, written = [ZERO, ZERO, ZERO, ZERO], [db.dec(ZERO)] * len(TOTAL_FIELDS)
        else:
            totals, written = latest[1][:], latest[2][:]
        for index, delta in enumerate(deltas):
            if delta:  # the others are as written last time
                totals[index] += delta
                written[index] = db.dec(totals[index])
        self.appended.append((asset, *key, *written))
        self.latest[asset] = (key, totals, written)

    def _read_latest(self, db: Db, asset: str) -> Latest | None:
        latest = None if self.fresh else _history_before(db, asset, None)
        self.latest[asset] = latest
        return latest

    def flush(self, db: Db) -> None:
        db.append(TOTALS_HISTORY, self.appended, replace=True)
        self.appended = []


def _history_before(db: Db, asset: str, key: tuple[str, int] | None) -> Latest | None:
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
    return (str(effective_at), int(position)), [dec(value) for value in totals], list(totals)


def _insert_earlier(db: Db, asset: str, key: tuple[str, int], deltas: Deltas) -> None:
    before = _history_before(db, asset, key)
    base = before[1] if before else [ZERO, ZERO, ZERO, ZERO]
    totals = [base[i] + deltas[i] for i in range(len(TOTAL_FIELDS))]
    db.upsert(TOTALS_HISTORY, [(asset, *key, *(db.dec(total) for total in totals))])
    columns = ", ".join(TOTAL_FIELDS)
    later = db.query(
        f"SELECT effective_at, position, {columns} FROM {{asset_totals_history}} "
        "WHERE asset = ? AND (effective_at > ? OR (effective_at = ? AND position > ?))",
        (asset, key[0], key[0], key[1]),
    )
    db.upsert(
        TOTALS_HISTORY,
        (
            (
                asset,
                effective_at,
                position,
                *(db.dec(dec(value) + deltas[i]) for i, value in enumerate(totals_later)),
            )
            for effective_at, position, *totals_later in later
        ),
    )
