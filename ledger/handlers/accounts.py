"""Finding the account a command names, registering it the first time the ledger hears of it."""

from datetime import datetime

from ledger.commands import AccountCommand
from ledger.domain.account import AccountKind, MarginAccount, Mode, account_kind
from ledger.domain.base import Stamp
from ledger.errors import LedgerInputError
from ledger.params import MarginThresholds
from ledger.rules.valuation import LevelKind
from ledger.unit_of_work import UnitOfWork


def pair_assets(unit: UnitOfWork, account: str) -> tuple[str, ...]:
    """An isolated account's two assets, from its pair name and the listed assets."""
    if account_kind(account) is not AccountKind.ISOLATED:
        return ()
    pair = account.split(":", 1)[1]
    catalog = unit.catalog()
    split = catalog.split_pair(pair) if catalog is not None else None
    if split is None:
        raise LedgerInputError(
            "account", f"pair {pair} is not made of exactly one pair of listed assets"
        )
    return split


def load_or_register_account(
    unit: UnitOfWork,
    command: AccountCommand,
    account: MarginAccount | None,
    stamp: Stamp,
) -> MarginAccount:
    if account is not None:
        return account
    return MarginAccount.register(
        user=command.user,
        account=command.account,
        pair_assets=pair_assets(unit, command.account),
        stamp=stamp,
    )


def check_asset_in_account(
    unit: UnitOfWork, command: AccountCommand, asset: str, field: str = "asset"
) -> None:
    assets = pair_assets(unit, command.account)
    if assets and asset not in assets:
        raise LedgerInputError(
            field, f"{asset} is not one of {command.account}'s assets ({', '.join(assets)})"
        )


def level_rules(
    unit: UnitOfWork, account: MarginAccount, at: datetime
) -> tuple[LevelKind, MarginThresholds]:
    """Which level governs the account and its mode's thresholds in force (DOMAIN.md §4)."""
    thresholds = unit.risk_parameters(at).thresholds
    if account.kind is AccountKind.ISOLATED:
        return LevelKind.MARGIN_LEVEL, thresholds["isolated"]
    if account.kind is AccountKind.PORTFOLIO:  # DOMAIN.md §1: treated like cross Classic (3x)
        return LevelKind.COLLATERAL_MARGIN_LEVEL, thresholds[Mode.CLASSIC_3X]
    assert account.mode is not None, account.account_id
    if account.mode is Mode.PRO:
        return LevelKind.PRO_MARGIN_LEVEL, thresholds[Mode.PRO]
    return LevelKind.COLLATERAL_MARGIN_LEVEL, thresholds[account.mode]
