"""The accounts read model: per account its kind, mode, status, balances per asset, and its
valuation at the latest marked prices (DOMAIN.md §1, §4).

Balances are taken from the `*_after` figures the events carry where they carry them, and
valuations are refreshed once per catch-up for the accounts whose balances or prices moved.
"""

import json
from collections.abc import Sequence
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
from projections.sql import Db, Table, dec, time_key
from projections.store import Positioned, ReadModel

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

    def apply(self, db: Db, events: Sequence[Positioned]) -> None:
        account_events = [(p, e) for p, e in events if _is_account_event(e)]
        rows = _load_accounts(db, {str(e.originator_id) for _p, e in account_events})
        market_changes: set[str] = set()
        for position, event in events:
            if _is_account_event(event):
                _apply_account_event(rows, position, event)
            else:
                market_changes |= _apply_market_event(db, event)
        _save_accounts(db, rows.values())
        if DEFAULTS_ROW in market_changes:
            db.execute("UPDATE {accounts} SET is_valuation_stale = 1")
        else:
            for asset in sorted(market_changes):
                db.execute(
                    "UPDATE {accounts} SET is_valuation_stale = 1 WHERE account_id IN "
                    "(SELECT account_id FROM {account_balances} WHERE asset = ?)",
                    (asset,),
                )

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


def _is_account_event(event: Any) -> bool:
    return isinstance(event, MarginAccount.Event)


# --- account rows ------------------------------------------------------------------------------


def _new_row(event: MarginAccount.Registered) -> dict[str, Any]:
    return {
        "account_id": f"{event.user}:{event.account}",
        "originator_id": str(event.originator_id),
        "user_id": event.user,
        "account": event.account,
        "kind": event.kind.value,
        "status": AccountStatus.NOT_OPEN.value,
        "mode": None,
        "pair_assets": list(event.pair_assets),
        "is_borrowing_enabled": True,
        "auto_top_up_asset": None,
        "fixed_quota_usdt_overrides": {},
        "last_margin_call_at": None,
        "balances": {},
        "valuation": dict.fromkeys(VALUATION_FIELDS),
    }


def _apply_account_event(rows: dict[str, dict[str, Any]], position: int, event: Any) -> None:
    key = str(event.originator_id)
    if isinstance(event, MarginAccount.Registered):
        assert key not in rows, event
        rows[key] = _new_row(event)
    row = rows[key]
    assert row.get("version", 0) + 1 == event.originator_version, (row.get("version"), event)
    row["version"] = event.originator_version
    row["last_effective_at"] = time_key(event.effective_at)
    row["last_position"] = position
    row["is_changed"] = True
    balances: dict[str, dict[str, Decimal]] = row["balances"]

    def balance(asset: str) -> dict[str, Decimal]:
        return balances.setdefault(asset, dict.fromkeys(ACCOUNT_BALANCE_FIELDS, Decimal(0)))

    match event:
        case MarginAccount.Opened():
            row["status"] = AccountStatus.OPEN.value
            row["mode"] = None if event.mode is None else event.mode.value
        case MarginAccount.TransferPending():
            row["status"] = AccountStatus.PENDING_VERIFICATION.value
        case MarginAccount.TransferCancelled():
            row["status"] = AccountStatus.NOT_OPEN.value
        case (
            MarginAccount.TransferredIn()
            | MarginAccount.TransferredOut()
            | MarginAccount.ToppedUp()
        ):
            balance(event.asset)["holding"] = event.holding_after
        case MarginAccount.Borrowed():
            figures = balance(event.asset)
            figures["holding"] = event.holding_after
            figures["liability"] = event.liability_after
            figures["interest"] += event.first_hour_interest
        case MarginAccount.InterestCharged():
            balance(event.asset)["interest"] = event.interest_after
        case MarginAccount.Repaid():
            figures = balance(event.asset)
            figures["holding"] = event.holding_after
            figures["liability"] = event.liability_after
            figures["interest"] = event.interest_after
        case MarginAccount.TradeSettled():
            balance(event.sell_asset)["holding"] -= event.sell_quantity
            balance(event.buy_asset)["holding"] += event.buy_quantity
            balance(event.fee_asset)["holding"] -= event.fee_quantity
        case MarginAccount.Liquidated():
            for figures in balances.values():
                for field in ACCOUNT_BALANCE_FIELDS:
                    figures[field] = Decimal(0)
            if event.remainder_usdt:
                balance(QUOTE_ASSET)["holding"] = event.remainder_usdt
        case MarginAccount.ModeSwitched():
            row["mode"] = event.to_mode.value
        case MarginAccount.BorrowingSet():
            row["is_borrowing_enabled"] = event.enabled
        case MarginAccount.AutoTopUpSet():
            row["auto_top_up_asset"] = event.asset
        case MarginAccount.QuotaOverridden():
            row["fixed_quota_usdt_overrides"][event.asset] = format_plain(event.fixed_quota_usdt)
        case MarginAccount.MarginCalled():
            row["last_margin_call_at"] = time_key(event.effective_at)
        case _:
            pass  # refusals and verifications: the version moved, nothing else
    for figures in balances.values():
        assert all(figures[field] >= 0 for field in ACCOUNT_BALANCE_FIELDS), (event, figures)


def _load_accounts(db: Db, originator_ids: set[str]) -> dict[str, dict[str, Any]]:
    found = db.query_in(
        "SELECT account_id FROM {accounts} WHERE originator_id IN ({keys})", originator_ids
    )
    by_id = _load_accounts_by_id(db, [row[0] for row in found])
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
    db.upsert(ACCOUNTS, account_rows)
    keep: list[tuple[str, str, dict[str, Decimal]]] = []
    drop: list[tuple[str, str, dict[str, Decimal]]] = []
    for row in changed:
        for asset, figures in row["balances"].items():
            target = keep if any(figures.values()) else drop
            target.append((row["account_id"], asset, figures))
    db.upsert(
        BALANCES,
        (
            (account_id, asset, *(db.dec(figures[f]) for f in ACCOUNT_BALANCE_FIELDS))
            for account_id, asset, figures in keep
        ),
    )
    db.executemany(
        "DELETE FROM {account_balances} WHERE account_id = ? AND asset = ?",
        ((account_id, asset) for account_id, asset, _figures in drop),
    )


def _dec_or_none(value: Any) -> Decimal | None:
    return None if value is None else dec(value)


# --- the market the valuations use --------------------------------------------------------------


def _apply_market_event(db: Db, event: Any) -> set[str]:
    """Record a price, ladder or bracket change; the assets whose valuations it moves."""
    match event:
        case Asset.Listed():
            ladder = LADDER.dump_json(event.collateral_ladder).decode()
            db.execute(
                "INSERT INTO {account_market} (asset, originator_id, price_usdt, "
                "collateral_ladder, maintenance_brackets) VALUES (?, ?, ?, ?, NULL)",
                (
                    event.symbol,
                    str(event.originator_id),
                    db.dec(Decimal(1)) if event.symbol == QUOTE_ASSET else None,
                    ladder,
                ),
            )
            return {event.symbol}
        case Asset.PriceMarked():
            symbol = _symbol_of(db, event)
            db.execute(
                "UPDATE {account_market} SET price_usdt = ? WHERE asset = ?",
                (db.dec(event.price_usdt), symbol),
            )
            return {symbol}
        case Asset.MaintenanceBracketsSet():
            symbol = _symbol_of(db, event)
            db.execute(
                "UPDATE {account_market} SET maintenance_brackets = ? WHERE asset = ?",
                (BRACKETS.dump_json(event.maintenance_brackets).decode(), symbol),
            )
            return {symbol}
        case RiskParameters.Initialised() | RiskParameters.DefaultMaintenanceBracketsSet():
            brackets = (
                event.maintenance_brackets_default
                if isinstance(event, RiskParameters.Initialised)
                else event.maintenance_brackets
            )
            db.upsert(
                MARKET,
                [
                    (
                        DEFAULTS_ROW,
                        str(event.originator_id),
                        None,
                        None,
                        BRACKETS.dump_json(brackets).decode(),
                    )
                ],
            )
            return {DEFAULTS_ROW}
    return set()


def _symbol_of(db: Db, event: Any) -> str:
    rows = db.query(
        "SELECT asset FROM {account_market} WHERE originator_id = ?", (str(event.originator_id),)
    )
    assert rows, f"an event of an asset never listed: {event}"
    return str(rows[0][0])


MARKET_TOPIC_CLASSES = (
    Asset.Listed,
    Asset.PriceMarked,
    Asset.MaintenanceBracketsSet,
    RiskParameters.Initialised,
    RiskParameters.DefaultMaintenanceBracketsSet,
)


class MarketRows:
    """The account_market table in memory: what valuing many accounts at once reads."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.prices: dict[str, Decimal] = {}
        self.ladders: dict[str, tuple[CollateralBracket, ...]] = {}
        self.brackets: dict[str, tuple[MaintenanceBracket, ...]] = {}
        self.default_brackets: tuple[MaintenanceBracket, ...] | None = None
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
        """The market these assets are valued at, None if one has no price yet."""
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
    return _load_accounts_by_id(db, [account_id]).get(account_id)


def load_accounts(db: Db, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    return _load_accounts_by_id(db, ids)


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
