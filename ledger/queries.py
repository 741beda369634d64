"""Read-side answers for `ledger account` and `ledger assets`, as pydantic models."""

import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.commands import ACCOUNT_PATTERN, USER_PATTERN
from ledger.domain.account import AccountKind, MarginAccount, Mode, account_kind
from ledger.domain.asset import Asset, AssetCatalog, Unpriced, market_of
from ledger.domain.asset_pool import AssetPool
from ledger.domain.risk_parameters import RiskParameters
from ledger.money import format_plain
from ledger.rules.cap_band import band_of, ratio_for_record
from ledger.rules.valuation import LevelKind, value_position
from ledger.times import format_time


class AccountIdInvalid(ValueError):
    """An account id that is not `<user>:cross|portfolio|isolated:<PAIR>`."""


class AccountView(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    user: str
    kind: str
    status: str
    mode: str | None
    pair_assets: list[str]
    holdings: dict[str, str]
    liabilities: dict[str, str]
    interest: dict[str, str]
    fixed_quota_usdt_overrides: dict[str, str]
    total_value_usdt: str | None  # None: some holding has no price yet
    collateral_value_usdt: str | None
    debt_usdt: str | None  # liabilities + interest at the latest prices
    margin_level: str | None  # None: no debt (infinite) or unpriced
    collateral_margin_level: str | None  # cross and portfolio accounts
    pro_margin_level: str | None  # cross accounts in Pro mode
    version: int
    last_effective_at: str | None


class AssetView(BaseModel):
    model_config = ConfigDict(frozen=True)

    asset: str
    collateral_rank: int
    capped: bool  # under the max collateral rule now: capped rank and an upper limit set
    total: str  # held in cross and portfolio accounts (T for capped assets)
    isolated_total: str
    upper_limit: str | None
    fixed_quota_usdt: str | None
    ratio: str | None
    band: str | None
    price_usdt: str | None


def parse_account_id(account_id: str) -> tuple[str, str]:
    user, _, account = account_id.partition(":")
    if not re.match(USER_PATTERN, user) or not ACCOUNT_PATTERN.match(account):
        raise AccountIdInvalid(
            f"{account_id!r} is not an account id like u1:cross, u1:portfolio or "
            "u1:isolated:BTCUSDT"
        )
    return user, account


def account_view(ledger: Ledger, account_id: str) -> AccountView:
    user, account_name = parse_account_id(account_id)
    account = ledger.get_aggregate(MarginAccount, MarginAccount.create_id(user, account_name))
    if account is None:
        return AccountView(
            account=account_id,
            user=user,
            kind=account_kind(account_name).value,
            status="not_open",
            mode=None,
            pair_assets=[],
            holdings={},
            liabilities={},
            interest={},
            fixed_quota_usdt_overrides={},
            total_value_usdt="0",
            collateral_value_usdt="0",
            debt_usdt="0",
            margin_level=None,
            collateral_margin_level=None,
            pro_margin_level=None,
            version=0,
            last_effective_at=None,
        )
    values = _valuation(ledger, account)
    return AccountView(
        account=account.account_id,
        user=account.user,
        kind=account.kind.value,
        status=account.status.value,
        mode=None if account.mode is None else account.mode.value,
        pair_assets=list(account.pair_assets),
        holdings=_plain(account.holdings),
        liabilities=_plain(account.liabilities),
        interest=_plain(account.interest),
        fixed_quota_usdt_overrides=_plain(account.fixed_quota_usdt_overrides),
        version=account.version,
        last_effective_at=format_time(account.last_effective_at),
        **values,
    )


def assets_view(ledger: Ledger) -> list[AssetView]:
    from projections.runner import catch_up, open_asset_totals

    with open_asset_totals(ledger) as projection:
        catch_up(ledger, projection)
        totals = projection.view.totals()
    catalog = ledger.get_aggregate(AssetCatalog, AssetCatalog.create_id())
    views = []
    for symbol in sorted(catalog.symbols if catalog else []):
        asset: Asset = ledger.get_aggregate(Asset, Asset.create_id(symbol))
        pool: AssetPool | None = (
            ledger.get_aggregate(AssetPool, AssetPool.create_id(symbol))
            if asset.is_cap_eligible
            else None
        )
        row = totals.get(symbol, {"capped_total": Decimal(0), "isolated_total": Decimal(0)})
        total = pool.platform_total if pool is not None else row["capped_total"]
        params = pool.cap_params if pool is not None else None
        ratio = None if params is None else ratio_for_record(total, params.upper_limit)
        price = asset.index_price_usdt
        views.append(
            AssetView(
                asset=symbol,
                collateral_rank=asset.collateral_rank,
                capped=params is not None,
                total=format_plain(total),
                isolated_total=format_plain(row["isolated_total"]),
                upper_limit=None if params is None else format_plain(params.upper_limit),
                fixed_quota_usdt=None if params is None else format_plain(params.fixed_quota_usdt),
                ratio=None if ratio is None else format_plain(ratio),
                band=None
                if ratio is None or params is None
                else band_of(platform_total=total, params=params).value,
                price_usdt=None if price is None else format_plain(price),
            )
        )
    return views


def _plain(quantities: dict[str, Decimal]) -> dict[str, str]:
    return {asset: format_plain(q) for asset, q in sorted(quantities.items()) if q != 0}


def _valuation(ledger: Ledger, account: MarginAccount) -> dict[str, Any]:
    """Values and margin levels at the latest marked prices (DOMAIN.md §4), by the same rules
    the write side decides with; None where a held asset has no price yet."""
    position = account.position()
    parameters = ledger.get_aggregate(RiskParameters, RiskParameters.create_id())
    if parameters is None:
        return dict.fromkeys(VALUATION_FIELDS)
    assets = [ledger.get_aggregate(Asset, Asset.create_id(s)) for s in sorted(position.assets())]
    try:
        market = market_of(assets, parameters.maintenance_brackets_default)
    except Unpriced:
        return dict.fromkeys(VALUATION_FIELDS)
    valuation = value_position(position=position, market=market)

    def level(kind: LevelKind) -> str | None:
        value = valuation.level(kind)
        return None if value is None else format_plain(value)

    # The CML governs cross Classic and portfolio accounts (DOMAIN.md §1, §4); not isolated ones.
    has_cml = account.kind is not AccountKind.ISOLATED
    return {
        "total_value_usdt": format_plain(valuation.total_value_usdt),
        "collateral_value_usdt": format_plain(valuation.collateral_value_usdt),
        "debt_usdt": format_plain(valuation.debt_usdt),
        "margin_level": level(LevelKind.MARGIN_LEVEL),
        "collateral_margin_level": level(LevelKind.COLLATERAL_MARGIN_LEVEL) if has_cml else None,
        "pro_margin_level": level(LevelKind.PRO_MARGIN_LEVEL) if account.mode is Mode.PRO else None,
    }


VALUATION_FIELDS = (
    "total_value_usdt",
    "collateral_value_usdt",
    "debt_usdt",
    "margin_level",
    "collateral_margin_level",
    "pro_margin_level",
)
