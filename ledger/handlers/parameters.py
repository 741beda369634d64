"""Parameter commands (COMMANDS.md "Parameters"): each one event, in force from its effective_at."""

from decimal import Decimal

from ledger.commands import (
    ListAsset,
    MarkPrices,
    SetAccountQuota,
    SetBorrowTerms,
    SetCollateralCap,
    SetMaintenanceBrackets,
    SetMarginThresholds,
    SetPlatformRules,
)
from ledger.domain.account import AccountKind, MarginAccount, account_kind
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.risk_parameters import RiskParameters
from ledger.errors import LedgerInputError
from ledger.handlers.accounts import load_or_register_account
from ledger.handlers.interest import settle_interest
from ledger.money import format_plain
from ledger.outcomes import Status
from ledger.params import (
    CAPPED_RANKS_DEFAULT,
    FULL_VALUE_LADDER,
    QUOTE_ASSET,
    BorrowTerms,
    CapParams,
    MarginThresholds,
    PlatformRules,
)
from ledger.unit_of_work import Decided, UnitOfWork


def list_asset(unit: UnitOfWork, command: ListAsset) -> Decided:
    if unit.get(Asset, Asset.create_id(command.asset)) is not None:
        raise LedgerInputError("asset", f"{command.asset} is already listed")
    catalog = unit.catalog()
    stamp = unit.stamp(catalog)
    if catalog is None:
        catalog = AssetCatalog.start(stamp=stamp)
    if unit.get(RiskParameters, RiskParameters.create_id()) is None:
        # The platform's rule numbers enter the log with its first listing (DOMAIN.md defaults).
        unit.change(RiskParameters.initialise(stamp=stamp))
    ladder = command.ladder() or FULL_VALUE_LADDER
    asset = Asset.list(
        symbol=command.asset,
        collateral_rank=command.collateral_rank,
        collateral_ladder=ladder,
        quantity_decimals=command.quantity_decimals,
        capped_ranks=CAPPED_RANKS_DEFAULT,
        stamp=stamp,
    )
    catalog.add(symbol=command.asset, stamp=stamp)
    # A cap-eligible asset gets its pool at listing, so T is exact from its first transfer on,
    # whenever an upper limit is set later.
    pool = AssetPool.open(asset=command.asset, stamp=stamp) if asset.is_cap_eligible else None
    unit.change(catalog, asset, pool)
    return Decided(
        status=Status.ACCEPTED,
        context={
            "asset": asset.symbol,
            "collateral_rank": str(asset.collateral_rank),
            "capped_rank": asset.is_cap_eligible,
            "quantity_decimals": str(asset.quantity_decimals),
            "collateral_ladder": [
                {
                    "up_to_usdt": None if b.up_to_usdt is None else format_plain(b.up_to_usdt),
                    "ratio": format_plain(b.ratio),
                }
                for b in ladder
            ],
        },
    )


def set_collateral_cap(unit: UnitOfWork, command: SetCollateralCap) -> Decided:
    asset = unit.listed_asset(command.asset)
    if not asset.is_cap_eligible:
        ranks = ", ".join(str(r) for r in asset.capped_ranks)
        raise LedgerInputError(
            "asset",
            f"{asset.symbol} has collateral rank {asset.collateral_rank}; the max collateral "
            f"rule applies to ranks {ranks} only",
        )
    pool = unit.get(AssetPool, AssetPool.create_id(command.asset))
    assert pool is not None, command.asset  # opened at listing
    stamp = unit.stamp(pool)
    params = CapParams(
        upper_limit=command.upper_limit,
        fixed_quota_usdt=command.fixed_quota_usdt,
        band_b_ratio_min=command.band_b_ratio_min,
        band_c_ratio_min=command.band_c_ratio_min,
    )
    pool.set_cap(cap_params=params, stamp=stamp)
    unit.change(pool)
    return Decided(
        status=Status.ACCEPTED,
        context={"asset": asset.symbol, "total": format_plain(pool.platform_total)}
        | {k: format_plain(v) for k, v in params.model_dump().items()},
    )


def set_account_quota(unit: UnitOfWork, command: SetAccountQuota) -> Decided:
    asset = unit.listed_asset(command.asset)
    if account_kind(command.account) is AccountKind.ISOLATED:
        raise LedgerInputError(
            "account", "isolated accounts are outside the max collateral rule: no quota applies"
        )
    if not asset.is_cap_eligible:
        raise LedgerInputError(
            "asset",
            f"{asset.symbol} is not under the max collateral rule (rank {asset.collateral_rank})",
        )
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    stamp = unit.stamp(account)
    account = load_or_register_account(unit, command, account, stamp)
    settle_interest(unit, account, stamp.effective_at)
    account.override_quota(
        asset=asset.symbol, fixed_quota_usdt=command.fixed_quota_usdt, stamp=stamp
    )
    unit.change(account)
    return Decided(
        status=Status.ACCEPTED,
        account=account.account_id,
        context={"asset": asset.symbol, "fixed_quota_usdt": format_plain(command.fixed_quota_usdt)},
    )


def mark_prices(unit: UnitOfWork, command: MarkPrices) -> Decided:
    assets = [unit.listed_asset(symbol, f"prices.{symbol}") for symbol in sorted(command.prices)]
    pools = [
        unit.get(AssetPool, AssetPool.create_id(asset.symbol))
        for asset in assets
        if asset.is_cap_eligible
    ]
    stamp = unit.stamp(*assets, *pools)
    for asset in assets:
        asset.mark_price(price_usdt=command.prices[asset.symbol], stamp=stamp)
    for pool in pools:
        assert pool is not None  # opened at listing
        pool.note_price(price_usdt=command.prices[pool.asset], stamp=stamp)
    unit.change(*assets, *pools)
    assert QUOTE_ASSET not in command.prices
    return Decided(
        status=Status.ACCEPTED,
        context={"prices": {a.symbol: format_plain(command.prices[a.symbol]) for a in assets}},
    )


def set_borrow_terms(unit: UnitOfWork, command: SetBorrowTerms) -> Decided:
    asset = unit.listed_asset(command.asset)
    stamp = unit.stamp(asset)
    terms = BorrowTerms(
        hourly_interest_rate=command.hourly_interest_rate,
        min_borrow_usdt=command.min_borrow_usdt,
        borrowable=command.borrowable,
    )
    asset.set_borrow_terms(borrow_terms=terms, stamp=stamp)
    unit.change(asset)
    return Decided(
        status=Status.ACCEPTED,
        context={"asset": asset.symbol, **_plain_fields(terms.model_dump())},
    )


def set_margin_thresholds(unit: UnitOfWork, command: SetMarginThresholds) -> Decided:
    parameters = _risk_parameters(unit)
    stamp = unit.stamp(parameters)
    given = command.model_dump(include=set(MarginThresholds.model_fields), exclude_none=True)
    thresholds = parameters.thresholds[command.mode].model_copy(update=given)
    if not thresholds.liquidation_level < thresholds.margin_call_level:
        raise LedgerInputError(
            "liquidation_level", "must be below margin_call_level (the values in force included)"
        )
    parameters.set_thresholds(mode=command.mode, thresholds=thresholds, stamp=stamp)
    unit.change(parameters)
    return Decided(
        status=Status.ACCEPTED,
        context={"mode": command.mode, **_plain_fields(thresholds.model_dump())},
    )


def set_platform_rules(unit: UnitOfWork, command: SetPlatformRules) -> Decided:
    parameters = _risk_parameters(unit)
    stamp = unit.stamp(parameters)
    given = command.model_dump(include=set(PlatformRules.model_fields), exclude_none=True)
    rules = parameters.platform_rules.model_copy(update=given)
    for field in ("bnb_interest_discount_ratio", "liquidation_fee_ratio"):
        if getattr(rules, field) >= 1:
            raise LedgerInputError(field, "must be below 1")
    parameters.set_platform_rules(platform_rules=rules, stamp=stamp)
    unit.change(parameters)
    return Decided(status=Status.ACCEPTED, context=_plain_fields(rules.model_dump()))


def set_maintenance_brackets(unit: UnitOfWork, command: SetMaintenanceBrackets) -> Decided:
    brackets = command.maintenance_brackets()
    shown = [
        {
            "up_to_usdt": None if b.up_to_usdt is None else format_plain(b.up_to_usdt),
            "rate": format_plain(b.rate),
        }
        for b in brackets
    ]
    if command.asset is None:
        parameters = _risk_parameters(unit)
        stamp = unit.stamp(parameters)
        parameters.set_default_maintenance_brackets(maintenance_brackets=brackets, stamp=stamp)
        unit.change(parameters)
        return Decided(status=Status.ACCEPTED, context={"asset": None, "brackets": shown})
    asset = unit.listed_asset(command.asset)
    stamp = unit.stamp(asset)
    asset.set_maintenance_brackets(maintenance_brackets=brackets, stamp=stamp)
    unit.change(asset)
    return Decided(status=Status.ACCEPTED, context={"asset": asset.symbol, "brackets": shown})


def _risk_parameters(unit: UnitOfWork) -> RiskParameters:
    parameters = unit.get(RiskParameters, RiskParameters.create_id())
    if parameters is None:
        raise LedgerInputError("type", "list an asset first: the rule numbers start with it")
    return parameters


def _plain_fields(fields: dict[str, object]) -> dict[str, object]:
    return {k: format_plain(v) if isinstance(v, Decimal) else v for k, v in fields.items()}
