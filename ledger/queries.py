"""Accounts as the write side holds them (aggregates), as the same pydantic model the read
models answer with: what time travel replays to, and what read models are checked against."""

import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.commands import ACCOUNT_PATTERN, USER_PATTERN
from ledger.domain.account import AccountKind, MarginAccount, Mode, account_kind
from ledger.domain.asset import Asset, Unpriced, market_of
from ledger.domain.risk_parameters import RiskParameters
from ledger.money import format_plain
from ledger.rules.valuation import LevelKind, Market, Position, value_position
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


def parse_account_id(account_id: str) -> tuple[str, str]:
    user, _, account = account_id.partition(":")
    if not re.match(USER_PATTERN, user) or not ACCOUNT_PATTERN.match(account):
        raise AccountIdInvalid(
            f"{account_id!r} is not an account id like u1:cross, u1:portfolio or "
            "u1:isolated:BTCUSDT"
        )
    return user, account


def account_view(ledger: Ledger, account_id: str) -> AccountView:
    """The account as the write side holds it now, valued at the latest marked prices."""
    user, account_name = parse_account_id(account_id)
    account = ledger.get_aggregate(MarginAccount, MarginAccount.create_id(user, account_name))
    if account is None:
        return unknown_account_view(account_id)
    return account_view_of(account, _valuation(ledger, account))


def unknown_account_view(account_id: str) -> AccountView:
    """An account the ledger has never heard of: not open, nothing held."""
    user, account_name = parse_account_id(account_id)
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


def account_view_of(account: MarginAccount, valuation: dict[str, Any]) -> AccountView:
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
        **valuation,
    )


def valuation_at(
    account: MarginAccount,
    assets: list[Asset],
    parameters: RiskParameters | None,
) -> dict[str, Any]:
    """The account's valuation figures with these Asset aggregates and risk parameters (as
    they stand now, or as they stood at some past moment); None where a price is missing."""
    if parameters is None:
        return dict.fromkeys(VALUATION_FIELDS)
    try:
        market = market_of(assets, parameters.maintenance_brackets_default)
    except Unpriced:
        return dict.fromkeys(VALUATION_FIELDS)
    return valuation_fields(
        kind=account.kind, mode=account.mode, position=account.position(), market=market
    )


def _plain(quantities: dict[str, Decimal]) -> dict[str, str]:
    return {asset: format_plain(q) for asset, q in sorted(quantities.items()) if q != 0}


def _valuation(ledger: Ledger, account: MarginAccount) -> dict[str, Any]:
    """Values and margin levels at the latest marked prices (DOMAIN.md §4), by the same rules
    the write side decides with."""
    parameters = ledger.get_aggregate(RiskParameters, RiskParameters.create_id())
    symbols = sorted(account.position().assets())
    assets = [ledger.get_aggregate(Asset, Asset.create_id(s)) for s in symbols]
    return valuation_at(account, assets, parameters)


def valuation_fields(
    *, kind: AccountKind, mode: Mode | None, position: Position, market: Market
) -> dict[str, Any]:
    """The AccountView's valuation figures of one position at one market."""
    valuation = value_position(position=position, market=market)

    def level(level_kind: LevelKind) -> str | None:
        value = valuation.level(level_kind)
        return None if value is None else format_plain(value)

    # The CML governs cross Classic and portfolio accounts (DOMAIN.md §1, §4); not isolated ones.
    has_cml = kind is not AccountKind.ISOLATED
    return {
        "total_value_usdt": format_plain(valuation.total_value_usdt),
        "collateral_value_usdt": format_plain(valuation.collateral_value_usdt),
        "debt_usdt": format_plain(valuation.debt_usdt),
        "margin_level": level(LevelKind.MARGIN_LEVEL),
        "collateral_margin_level": level(LevelKind.COLLATERAL_MARGIN_LEVEL) if has_cml else None,
        "pro_margin_level": level(LevelKind.PRO_MARGIN_LEVEL) if mode is Mode.PRO else None,
    }


VALUATION_FIELDS = (
    "total_value_usdt",
    "collateral_value_usdt",
    "debt_usdt",
    "margin_level",
    "collateral_margin_level",
    "pro_margin_level",
)
