"""The accounts read model: per account its kind, mode, status, balances per asset, and its
valuation at the latest marked prices (DOMAIN.md §1, §4).

Balances are taken from the `*_after` figures the events carry where they carry them, and
valuations are refreshed once per catch-up for the accounts whose balances or prices moved.
"""

import json
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from pydantic import TypeAdapter

from ledger.domain.account import AccountKind, AccountStatus, MarginAccount, Mode
from ledger.domain.asset import Asset
from ledger.domain.risk_parameters import RiskParameters
from ledger.money import format_plain
from ledger.params import QUOTE_ASSET, CollateralBracket, MaintenanceBracket
from ledger.queries import VALUATION_FIELDS, AccountView, valuation_fields
from ledger.rules.valuation import Market, Position
from projections.events import Record, Roles, derives, time_key_of
from projections.sql import Db, Table, dec
from projections.store import Kept, ReadModel

ACCOUNTS = Table(
    name="accounts",
    columns=(
        ("account_id", "text"),
        ("originator_id", "text"),
        ("user_id", "text"),
        ("account", "text"),
        ("kind", "text"),
        ("status", "text"),
        ("mode", "text?"),
        ("pair_assets", "text"),  # JSON list
        ("is_borrowing_enabled", "int"),
        ("auto_top_up_asset", "text?"),
        ("fixed_quota_usdt_overrides", "text"),  # JSON {asset: "quota"}
        ("last_margin_call_at", "text?"),
        ("version", "int"),
        ("last_effective_at", "text"),
        ("last_position", "int"),
        ("total_value_usdt", "dec?"),
        ("collateral_value_usdt", "dec?"),
        ("debt_usdt", "dec?"),
        ("margin_level", "dec?"),
        ("collateral_margin_level", "dec?"),
        ("pro_margin_level", "dec?"),
        ("is_valuation_stale", "int"),
    ),
    primary_key=("account_id",),
    indexes=(("originator_id",), ("is_valuation_stale",)),
)
BALANCES = Table(
    name="account_balances",
    columns=(
        ("account_id", "text"),
        ("asset", "text"),
        ("holding", "dec"),
        ("liability", "dec"),
        ("interest", "dec"),
    ),
    primary_key=("account_id", "asset"),
    indexes=(("asset",),),
)
MARKET = Table(
    name="account_market",
    columns=(
        ("asset", "text"),  # "*" holds the platform's default maintenance brackets
        ("originator_id", "text"),  # the Asset aggregate (or RiskParameters for "*")
        ("price_usdt", "dec?"),
        ("collateral_ladder", "text?"),  # JSON
        ("maintenance_brackets", "text?"),  # JSON; None: the platform default
    ),
    primary_key=("asset",),
    indexes=(("originator_id",),),
)

LADDER = TypeAdapter(tuple[CollateralBracket, ...])
BRACKETS = TypeAdapter(tuple[MaintenanceBracket, ...])
DEFAULTS_ROW = "*"
VALUATION_CHUNK = 1000  # accounts valued per transaction when refreshing valuations

ACCOUNT_BALANCE_FIELDS = ("holding", "liability", "interest")


class Accounts(ReadModel):
    name = "accounts"
    description = "per account: kind, status, mode, balances per asset, margin levels"
    tables: ClassVar[tuple[Table, ...]] = (ACCOUNTS, BALANCES, MARKET)

    def __init__(self, view: Any) -> None:
        super().__init__(view=view)
        self._accounts: Kept[str, dict[str, Any]] = Kept()  # by originator id
        self._market: dict[str, dict[str, Any]] | None = None  # by asset; the table is small
        self._market_changed: set[str] = set()  # rows of account_market to write
        self._moved: set[str] = set()  # assets (or DEFAULTS_ROW) whose valuations moved

    def begin(self, *, fresh: bool) -> None:
        self._accounts.reset(fresh=fresh)
        self._market = {} if fresh else None
        self._market_changed, self._moved = set(), set()

    def apply(self, db: Db, records: Sequence[Record]) -> None:
        if self._market is None:
            self._market = _read_market(db)
        rows, roles = self._accounts.rows, ROLES
        if not self._accounts.complete:
            wanted = {r.data["originator_id"] for r in records if roles[r.kind] in ACCOUNT_ROLES}
            rows.update(_load_accounts(db, self._accounts.missing(wanted)))
        for record in records:
            role = roles[record.kind]
            if role is None:
                continue
            if role is MARKET_ROLE:
                changed = _apply_market_event(self._market, record)
                self._market_changed.add(changed)
                self._moved.add(changed)
                continue
            _apply_account_event(rows, record, role)

    def flush(self, db: Db) -> None:
        assert self._market is not None or not self._market_changed
        if self._market is not None:
            _save_market(db, [self._market[asset] for asset in sorted(self._market_changed)])
        self._market_changed = set()
        rows = self._accounts.rows
        _save_accounts(db, rows.values())
        _mark_stale(db, self._moved, rows.values())
        self._moved = set()
        self._accounts.trim()

    def finish(self, db: Db) -> bool:
        """Value a chunk of the accounts whose balances or prices moved; True while more wait."""
        stale = [
            row[0]
            for row in db.query(
                "SELECT account_id FROM {accounts} WHERE is_valuation_stale = 1 "
                f"ORDER BY account_id LIMIT {VALUATION_CHUNK}"
            )
        ]
        if not stale:
            return False
        rows = _load_accounts_by_id(db, stale)
        market = load_market(db)
        updates = []
        for account_id in stale:
            row = rows[account_id]
            figures = valuation_of(row, market)
            updates.append(
                [
                    *(
                        None if figures[f] is None else db.dec(Decimal(figures[f]))
                        for f in VALUATION_FIELDS
                    ),
                    account_id,
                ]
            )
        db.executemany(
            "UPDATE {accounts} SET "
            + ", ".join(f"{f} = ?" for f in VALUATION_FIELDS)
            + ", is_valuation_stale = 0 WHERE account_id = ?",
            updates,
        )
        return len(stale) == VALUATION_CHUNK


# --- account rows ------------------------------------------------------------------------------

MARKET_EVENTS = (
    Asset.Listed,
    Asset.PriceMarked,
    Asset.MaintenanceBracketsSet,
    RiskParameters.Initialised,
    RiskParameters.DefaultMaintenanceBracketsSet,
)


def _new_row(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "account_id": f"{data['user']}:{data['account']}",
        "originator_id": data["originator_id"],
        "user_id": data["user"],
        "account": data["account"],
        "kind": AccountKind(data["kind"]).value,
        "status": AccountStatus.NOT_OPEN.value,
        "mode": None,
        "pair_assets": list(data["pair_assets"]),
        "is_borrowing_enabled": True,
        "auto_top_up_asset": None,
        "fixed_quota_usdt_overrides": {},
        "last_margin_call_at": None,
        "balances": {},
        "valuation": dict.fromkeys(VALUATION_FIELDS),
        "is_valuation_stale": 1,
        "dropped": set(),  # assets whose balance row is to be deleted
    }


Balances = dict[str, dict[str, Decimal]]


def _balance(balances: Balances, asset: str) -> dict[str, Decimal]:
    figures = balances.get(asset)
    if figures is None:
        figures = balances[asset] = dict.fromkeys(ACCOUNT_BALANCE_FIELDS, ZERO)
    return figures


ZERO = Decimal(0)


def _opened(row: dict[str, Any], data: dict[str, Any]) -> None:
    row["status"] = AccountStatus.OPEN.value
    row["mode"] = None if data["mode"] is None else Mode(data["mode"]).value


def _pending(row: dict[str, Any], data: dict[str, Any]) -> None:
    row["status"] = AccountStatus.PENDING_VERIFICATION.value


def _cancelled(row: dict[str, Any], data: dict[str, Any]) -> None:
    row["status"] = AccountStatus.NOT_OPEN.value


def _holding_moved(row: dict[str, Any], data: dict[str, Any]) -> None:
    holding = _balance(row["balances"], data["asset"])["holding"] = Decimal(data["holding_after"])
    assert holding >= 0, data


def _borrowed(row: dict[str, Any], data: dict[str, Any]) -> None:
    figures = _balance(row["balances"], data["asset"])
    figures["holding"] = Decimal(data["holding_after"])
    figures["liability"] = Decimal(data["liability_after"])
    figures["interest"] += Decimal(data["first_hour_interest"])
    assert figures["holding"] >= 0 and figures["liability"] >= 0, data
    assert figures["interest"] >= 0, data


def _interest_charged(row: dict[str, Any], data: dict[str, Any]) -> None:
    interest = _balance(row["balances"], data["asset"])["interest"] = Decimal(
        data["interest_after"]
    )
    assert interest >= 0, data


def _repaid(row: dict[str, Any], data: dict[str, Any]) -> None:
    figures = _balance(row["balances"], data["asset"])
    figures["holding"] = Decimal(data["holding_after"])
    figures["liability"] = Decimal(data["liability_after"])
    figures["interest"] = Decimal(data["interest_after"])
    assert figures["holding"] >= 0 and figures["liability"] >= 0, data
    assert figures["interest"] >= 0, data


def _trade_settled(row: dict[str, Any], data: dict[str, Any]) -> None:
    balances = row["balances"]
    sold = _balance(balances, data["sell_asset"])
    sold["holding"] -= Decimal(data["sell_quantity"])
    bought = _balance(balances, data["buy_asset"])
    bought["holding"] += Decimal(data["buy_quantity"])
    fee = _balance(balances, data["fee_asset"])
    fee["holding"] -= Decimal(data["fee_quantity"])
    assert sold["holding"] >= 0 and bought["holding"] >= 0 and fee["holding"] >= 0, data


def _liquidated(row: dict[str, Any], data: dict[str, Any]) -> None:
    balances = row["balances"]
    for figures in balances.values():
        for field in ACCOUNT_BALANCE_FIELDS:
            figures[field] = ZERO
    remainder = Decimal(data["remainder_usdt"])
    assert remainder >= 0, data
    if remainder:
        _balance(balances, QUOTE_ASSET)["holding"] = remainder


def _mode_switched(row: dict[str, Any], data: dict[str, Any]) -> None:
    row["mode"] = Mode(data["to_mode"]).value


def _borrowing_set(row: dict[str, Any], data: dict[str, Any]) -> None:
    row["is_borrowing_enabled"] = bool(data["enabled"])


def _auto_top_up_set(row: dict[str, Any], data: dict[str, Any]) -> None:
    row["auto_top_up_asset"] = data["asset"]


def _quota_overridden(row: dict[str, Any], data: dict[str, Any]) -> None:
    quota = format_plain(Decimal(data["fixed_quota_usdt"]))
    row["fixed_quota_usdt_overrides"][data["asset"]] = quota


def _margin_called(row: dict[str, Any], data: dict[str, Any]) -> None:
    row["last_margin_call_at"] = time_key_of(data["effective_at"])


def _registered(row: dict[str, Any], data: dict[str, Any]) -> None:
    """Nothing more than the new row."""


def _version_only(row: dict[str, Any], data: dict[str, Any]) -> None:
    """Refusals and verifications: the version moved, nothing else."""


AccountHandler = Callable[[dict[str, Any], dict[str, Any]], None]


def _market_event(row: dict[str, Any], data: dict[str, Any]) -> None:
    raise AssertionError("a market event is not applied to an account")


MARKET_ROLE: AccountHandler = _market_event
ROLES: Roles[AccountHandler | None] = Roles(
    [
        (MarginAccount.Registered, _registered),
        (MarginAccount.Opened, _opened),
        (MarginAccount.TransferPending, _pending),
        (MarginAccount.TransferCancelled, _cancelled),
        (
            (MarginAccount.TransferredIn, MarginAccount.TransferredOut, MarginAccount.ToppedUp),
            _holding_moved,
        ),
        (MarginAccount.Borrowed, _borrowed),
        (MarginAccount.InterestCharged, _interest_charged),
        (MarginAccount.Repaid, _repaid),
        (MarginAccount.TradeSettled, _trade_settled),
        (MarginAccount.Liquidated, _liquidated),
        (MarginAccount.ModeSwitched, _mode_switched),
        (MarginAccount.BorrowingSet, _borrowing_set),
        (MarginAccount.AutoTopUpSet, _auto_top_up_set),
        (MarginAccount.QuotaOverridden, _quota_overridden),
        (MarginAccount.MarginCalled, _margin_called),
        (MarginAccount.Event, _version_only),
        (MARKET_EVENTS, MARKET_ROLE),
    ],
    default=None,
)


def _asset(data: dict[str, Any], row: dict[str, Any]) -> tuple[str, ...]:
    return (data["asset"],)


def _traded(data: dict[str, Any], row: dict[str, Any]) -> tuple[str, ...]:
    return (data["sell_asset"], data["buy_asset"], data["fee_asset"])


def _every_asset(data: dict[str, Any], row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(row["balances"])


# The handlers that move balances, and the assets whose balances each moves.
BALANCE_HANDLERS: dict[
    AccountHandler, Callable[[dict[str, Any], dict[str, Any]], tuple[str, ...]]
] = {
    _holding_moved: _asset,
    _borrowed: _asset,
    _interest_charged: _asset,
    _repaid: _asset,
    _trade_settled: _traded,
    _liquidated: _every_asset,
}
ACCOUNT_ROLES = frozenset(role for _bases, role in ROLES.entries if role is not MARKET_ROLE)


def _apply_account_event(
    rows: dict[str, dict[str, Any]], record: Record, handler: AccountHandler
) -> None:
    data = record.data
    key = data["originator_id"]
    if handler is _registered:
        assert key not in rows, data
        rows[key] = _new_row(data)
    row = rows[key]
    version = data["originator_version"]
    assert row.get("version", 0) + 1 == version, (row.get("version"), data)
    row["version"] = version
    row["last_effective_at"] = record.effective_key
    row["last_position"] = record.position
    row["is_changed"] = True
    handler(row, data)  # each asserts that the figures it sets are not negative
    touched = BALANCE_HANDLERS.get(handler)
    if touched is not None:
        _drop_zero_balances(row, touched(data, row))


def _drop_zero_balances(row: dict[str, Any], assets: Iterable[str]) -> None:
    """A balance all zero has no row: forgotten at once, so that what is written never depends
    on where a batch ends (a zero's exponent, e.g. 0E-8, would otherwise outlive it when the
    same batch moved the balance again, and PostgreSQL keeps it: 0.00000000 against 0)."""
    balances = row["balances"]
    for asset in assets:
        figures = balances.get(asset)
        if figures is not None and not (
            figures["holding"] or figures["liability"] or figures["interest"]
        ):
            del balances[asset]
            row["dropped"].add(asset)


def _load_accounts(db: Db, originator_ids: set[str]) -> dict[str, dict[str, Any]]:
    if not originator_ids:
        return {}
    found = db.query_in(
        "SELECT account_id FROM {accounts} WHERE originator_id IN ({keys})", originator_ids
    )
    by_id = _load_accounts_by_id(db, [row[0] for row in found])
    for row in by_id.values():
        row["dropped"] = set()
    return {row["originator_id"]: row for row in by_id.values()}


def _load_accounts_by_id(db: Db, account_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    columns = ACCOUNTS.column_names
    rows: dict[str, dict[str, Any]] = {}
    for values in db.query_in(
        f"SELECT {', '.join(columns)} FROM {{accounts}} WHERE account_id IN ({{keys}})",
        account_ids,
    ):
        row = dict(zip(columns, values, strict=True))
        row["pair_assets"] = json.loads(row["pair_assets"])
        row["fixed_quota_usdt_overrides"] = json.loads(row["fixed_quota_usdt_overrides"])
        row["is_borrowing_enabled"] = bool(row["is_borrowing_enabled"])
        row["version"] = int(row["version"])
        row["valuation"] = {f: row.pop(f) for f in VALUATION_FIELDS}
        row["balances"] = {}
        rows[row["account_id"]] = row
    for account_id, asset, *figures in db.query_in(
        "SELECT account_id, asset, holding, liability, interest FROM {account_balances} "
        "WHERE account_id IN ({keys})",
        account_ids,
    ):
        rows[account_id]["balances"][asset] = {
            field: dec(value) for field, value in zip(ACCOUNT_BALANCE_FIELDS, figures, strict=True)
        }
    return rows


def _save_accounts(db: Db, rows: Any) -> None:
    """Write the changed accounts (each marked for valuation) and their balances; a balance
    that is all zero has no row."""
    changed = [row for row in rows if row.get("is_changed")]
    account_rows = []
    for row in changed:
        account_rows.append(
            [
                row["account_id"],
                row["originator_id"],
                row["user_id"],
                row["account"],
                row["kind"],
                row["status"],
                row["mode"],
                json.dumps(row["pair_assets"]),
                int(row["is_borrowing_enabled"]),
                row["auto_top_up_asset"],
                json.dumps(row["fixed_quota_usdt_overrides"], sort_keys=True),
                row["last_margin_call_at"],
                row["version"],
                row["last_effective_at"],
                row["last_position"],
                *(db.dec(_dec_or_none(row["valuation"][f])) for f in VALUATION_FIELDS),
                1,
            ]
        )
        row["is_changed"] = False
        row["is_valuation_stale"] = 1
    db.upsert(ACCOUNTS, account_rows)
    keep: list[tuple[str, str, dict[str, Decimal]]] = []
    drop: list[tuple[str, str]] = []
    for row in changed:
        balances = row["balances"]
        keep.extend((row["account_id"], asset, figures) for asset, figures in balances.items())
        drop.extend(
            (row["account_id"], asset) for asset in sorted(row["dropped"] - balances.keys())
        )
        row["dropped"] = set()
    db.upsert(
        BALANCES,
        (
            (account_id, asset, *(db.dec(figures[f]) for f in ACCOUNT_BALANCE_FIELDS))
            for account_id, asset, figures in keep
        ),
    )
    db.executemany("DELETE FROM {account_balances} WHERE account_id = ? AND asset = ?", drop)


def _mark_stale(db: Db, moved: set[str], rows: Any) -> None:
    """Mark for valuation the accounts holding an asset whose price, ladder or brackets moved
    (every account when the default brackets did)."""
    if not moved:
        return
    if DEFAULTS_ROW in moved:
        db.execute("UPDATE {accounts} SET is_valuation_stale = 1 WHERE is_valuation_stale = 0")
        for row in rows:
            row["is_valuation_stale"] = 1
        return
    for asset in sorted(moved):
        db.execute(
            "UPDATE {accounts} SET is_valuation_stale = 1 WHERE is_valuation_stale = 0 AND "
            "account_id IN (SELECT account_id FROM {account_balances} WHERE asset = ?)",
            (asset,),
        )
    for row in rows:
        if not moved.isdisjoint(row["balances"]):
            row["is_valuation_stale"] = 1


def _dec_or_none(value: Any) -> Decimal | None:
    return None if value is None else dec(value)


# --- the market the valuations use --------------------------------------------------------------


def _apply_market_event(market: dict[str, dict[str, Any]], record: Record) -> str:
    """Record a listing, price or bracket change in memory; the asset (or DEFAULTS_ROW) whose
    valuations it moves."""
    kind = record.kind
    if derives(kind, Asset.Listed):
        event = record.event
        market[event.symbol] = {
            "asset": event.symbol,
            "originator_id": record.originator_id,
            "price_usdt": Decimal(1) if event.symbol == QUOTE_ASSET else None,
            "collateral_ladder": LADDER.dump_json(event.collateral_ladder).decode(),
            "maintenance_brackets": None,
        }
        return str(event.symbol)
    if derives(kind, (Asset.PriceMarked, Asset.MaintenanceBracketsSet)):
        row = _market_row_of(market, record.originator_id)
        if derives(kind, Asset.PriceMarked):
            row["price_usdt"] = record.dec("price_usdt")
        else:
            brackets = record.event.maintenance_brackets
            row["maintenance_brackets"] = BRACKETS.dump_json(brackets).decode()
        return str(row["asset"])
    event = record.event
    brackets = (
        event.maintenance_brackets_default
        if isinstance(event, RiskParameters.Initialised)
        else event.maintenance_brackets
    )
    market[DEFAULTS_ROW] = {
        "asset": DEFAULTS_ROW,
        "originator_id": record.originator_id,
        "price_usdt": None,
        "collateral_ladder": None,
        "maintenance_brackets": BRACKETS.dump_json(brackets).decode(),
    }
    return DEFAULTS_ROW


def _market_row_of(market: dict[str, dict[str, Any]], originator_id: str) -> dict[str, Any]:
    rows = [row for row in market.values() if row["originator_id"] == originator_id]
    assert rows, f"an event of an asset never listed: {originator_id}"
    return rows[0]


def _read_market(db: Db) -> dict[str, dict[str, Any]]:
    columns = MARKET.column_names
    rows = [
        dict(zip(columns, values, strict=True))
        for values in db.query(f"SELECT {', '.join(columns)} FROM {{account_market}}")
    ]
    for row in rows:
        row["price_usdt"] = _dec_or_none(row["price_usdt"])
    return {row["asset"]: row for row in rows}


def _save_market(db: Db, rows: list[dict[str, Any]]) -> None:
    db.upsert(
        MARKET,
        (
            (
                row["asset"],
                row["originator_id"],
                db.dec(row["price_usdt"]),
                row["collateral_ladder"],
                row["maintenance_brackets"],
            )
            for row in rows
        ),
    )


class MarketRows:
    """The account_market table in memory: what valuing many accounts at once reads."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.prices: dict[str, Decimal] = {}
        self.ladders: dict[str, tuple[CollateralBracket, ...]] = {}
        self.brackets: dict[str, tuple[MaintenanceBracket, ...]] = {}
        self.default_brackets: tuple[MaintenanceBracket, ...] | None = None
        self.markets: dict[frozenset[str], Market | None] = {}
        for asset, price, ladder, brackets in rows:
            if asset == DEFAULTS_ROW:
                self.default_brackets = BRACKETS.validate_json(brackets)
                continue
            if price is not None:
                self.prices[asset] = dec(price)
            self.ladders[asset] = LADDER.validate_json(ladder)
            if brackets is not None:
                self.brackets[asset] = BRACKETS.validate_json(brackets)

    def market_for(self, assets: set[str]) -> Market | None:
        """The market these assets are valued at, None if one has no price yet (the same one
        for every account holding the same assets: built once)."""
        key = frozenset(assets)
        if key not in self.markets:
            self.markets[key] = self._market_for(assets)
        return self.markets[key]

    def _market_for(self, assets: set[str]) -> Market | None:
        if self.default_brackets is None or not assets <= self.prices.keys():
            return None
        return Market(
            prices_usdt={a: self.prices[a] for a in sorted(assets)},
            ladders={a: self.ladders[a] for a in sorted(assets)},
            maintenance_brackets={
                a: self.brackets.get(a, self.default_brackets) for a in sorted(assets)
            },
        )


def load_market(db: Db) -> MarketRows:
    return MarketRows(
        db.query(
            "SELECT asset, price_usdt, collateral_ladder, maintenance_brackets "
            "FROM {account_market}"
        )
    )


def valuation_of(row: dict[str, Any], market_rows: MarketRows) -> dict[str, Any]:
    position = position_of(row)
    market = market_rows.market_for(position.assets())
    if market is None:
        return dict.fromkeys(VALUATION_FIELDS)
    mode = None if row["mode"] is None else Mode(row["mode"])
    return valuation_fields(
        kind=AccountKind(row["kind"]), mode=mode, position=position, market=market
    )


def position_of(row: dict[str, Any]) -> Position:
    balances = row["balances"]
    return Position(
        holdings={a: f["holding"] for a, f in balances.items() if f["holding"]},
        liabilities={a: f["liability"] for a, f in balances.items() if f["liability"]},
        interest={a: f["interest"] for a, f in balances.items() if f["interest"]},
    )


def account_view_of_row(row: dict[str, Any]) -> AccountView:
    """The read model's row as the same AccountView the write side answers with."""
    from ledger.times import format_time
    from projections.sql import parse_time_key

    def plain(field: str) -> dict[str, str]:
        return {
            asset: format_plain(figures[field])
            for asset, figures in sorted(row["balances"].items())
            if figures[field]
        }

    return AccountView(
        account=row["account_id"],
        user=row["user_id"],
        kind=row["kind"],
        status=row["status"],
        mode=row["mode"],
        pair_assets=row["pair_assets"],
        holdings=plain("holding"),
        liabilities=plain("liability"),
        interest=plain("interest"),
        fixed_quota_usdt_overrides=dict(sorted(row["fixed_quota_usdt_overrides"].items())),
        version=row["version"],
        last_effective_at=format_time(parse_time_key(row["last_effective_at"])),
        **{
            f: None if row["valuation"][f] is None else format_plain(dec(row["valuation"][f]))
            for f in VALUATION_FIELDS
        },
    )


def load_account(db: Db, account_id: str) -> dict[str, Any] | None:
    return load_accounts(db, [account_id]).get(account_id)


def load_accounts(db: Db, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The accounts as a query answers them: a row whose valuation waits for the runner's
    finishing step (a price or a balance moved in a batch that is committed, its revaluation
    not yet) is valued here at the market rows the same transaction reads, so no reader sees a
    valuation older than the balances and prices beside it."""
    rows = _load_accounts_by_id(db, ids)
    stale = [row for row in rows.values() if row["is_valuation_stale"]]
    if stale:
        market = load_market(db)
        for row in stale:
            row["valuation"] = valuation_of(row, market)
    return rows


def account_ids(db: Db, *, user: str | None = None) -> list[str]:
    if user is None:
        return [r[0] for r in db.query("SELECT account_id FROM {accounts} ORDER BY account_id")]
    return [
        r[0]
        for r in db.query(
            "SELECT account_id FROM {accounts} WHERE user_id = ? ORDER BY account_id", (user,)
        )
    ]


def debtor_ids(db: Db) -> list[UUID]:
    """The aggregate ids of the accounts owing principal or interest in some asset, in account
    id order (the order a sweep meets them in, and so which deficit the fund covers first)."""
    zero = db.dec(Decimal(0))
    rows = db.query(
        "SELECT DISTINCT a.account_id, a.originator_id FROM {accounts} a "
        "JOIN {account_balances} b ON a.account_id = b.account_id "
        "WHERE b.liability <> ? OR b.interest <> ? ORDER BY a.account_id",
        (zero, zero),
    )
    return [UUID(row[1]) for row in rows]
