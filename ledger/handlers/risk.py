"""The risk sweep (DOMAIN.md §7): margin calls, auto top-ups and liquidations; the insurance
fund and the auto top-up switch."""

from decimal import Decimal
from typing import Any

from ledger.commands import CheckMargins, FundInsurance, SetAutoTopUp
from ledger.domain.account import MarginAccount
from ledger.domain.base import Stamp
from ledger.domain.insurance_fund import InsuranceFund
from ledger.errors import LedgerInputError
from ledger.handlers.accounts import check_asset_in_account, level_rules, load_or_register_account
from ledger.handlers.interest import settle_interest
from ledger.handlers.pools import move_platform_total
from ledger.handlers.transfers import check_decimals, pool_for
from ledger.money import format_plain, quantize_down
from ledger.outcomes import Status
from ledger.params import QUOTE_ASSET, MarginThresholds
from ledger.rules.cap_band import decide_cap_band
from ledger.rules.liquidation import decide_liquidation
from ledger.rules.margin_call import (
    MarginState,
    classify_level,
    is_margin_call_due,
    top_up_quantity_needed,
)
from ledger.rules.valuation import LevelKind, Market, value_position
from ledger.times import format_time
from ledger.unit_of_work import Decided, UnitOfWork


def fund_insurance(unit: UnitOfWork, command: FundInsurance) -> Decided:
    check_decimals(
        unit.listed_asset(QUOTE_ASSET, "amount_usdt"), command.amount_usdt, "amount_usdt"
    )
    fund = unit.get(InsuranceFund, InsuranceFund.create_id())
    stamp = unit.stamp(fund)
    fund = fund or InsuranceFund.establish(stamp=stamp)
    fund.fund(source="admin", account_id=None, amount_usdt=command.amount_usdt, stamp=stamp)
    unit.change(fund)
    return Decided(
        status=Status.ACCEPTED,
        context={
            "amount_usdt": format_plain(command.amount_usdt),
            "balance_usdt": format_plain(fund.balance_usdt),
        },
    )


def set_auto_top_up(unit: UnitOfWork, command: SetAutoTopUp) -> Decided:
    if command.asset is not None:
        unit.listed_asset(command.asset)
        check_asset_in_account(unit, command, command.asset)
    account = unit.get(MarginAccount, MarginAccount.create_id(command.user, command.account))
    stamp = unit.stamp(account)
    account = load_or_register_account(unit, command, account, stamp)
    settle_interest(unit, account, stamp.effective_at)
    asset = command.asset if command.enabled else None
    account.set_auto_top_up(asset=asset, stamp=stamp)
    unit.change(account)
    return Decided(
        status=Status.ACCEPTED,
        account=account.account_id,
        context={"enabled": command.enabled, "asset": asset},
    )


def sweep_account(
    unit: UnitOfWork, account: MarginAccount, command: CheckMargins
) -> dict[str, Any] | None:
    """Check one account at the prices in force at the sweep's time and act on what it finds.

    Returns what was done (for the sweep's summary), or None when the account is healthy. The
    caller saves `unit.changed` atomically: one account's margin call, top-up or liquidation.
    """
    # Every pool the sweep may change: those of the holdings (a liquidation) and of the auto
    # top-up asset; the sweep's time must not precede any of them (DOMAIN.md §8).
    symbols = {a for a in (*account.holdings, account.auto_top_up_asset) if a is not None}
    pools = [pool_for(unit, unit.listed_asset(a), account.account) for a in sorted(symbols)]
    stamp = unit.stamp(account, *pools)
    at = stamp.effective_at
    settle_interest(unit, account, at)
    position = account.position()
    if not any(position.debt(a) for a in position.assets()):
        return None
    level_kind, thresholds = level_rules(unit, account, at)
    market = unit.market(position.assets(), at)
    valuation = value_position(position=position, market=market)
    state = classify_level(valuation=valuation, level_kind=level_kind, thresholds=thresholds)
    context: dict[str, Any] = {
        "state": state.value,
        "level_kind": level_kind.value,
        "margin_call_level": format_plain(thresholds.margin_call_level),
        "liquidation_level": format_plain(thresholds.liquidation_level),
        **valuation.context(level_kind, "_before"),
    }
    if state is MarginState.LIQUIDATION:
        fund = unit.get(InsuranceFund, InsuranceFund.create_id())
        if fund is not None and fund.last_effective_at > at:
            # Only a liquidation changes the fund: only then may it not predate the fund.
            raise LedgerInputError(
                "effective_at",
                f"{format_time(at)} is earlier than the insurance fund's latest event "
                f"({format_time(fund.last_effective_at)}), which a liquidation would change",
            )
        return _liquidate(unit, account, fund, market, context, stamp)
    rules = unit.risk_parameters(at).platform_rules
    if state is MarginState.MARGIN_CALL and is_margin_call_due(
        last_margin_call_at=account.last_margin_call_at,
        at=at,
        interval_hours=rules.margin_call_interval_hours,
    ):
        unit.change(account)
        account.margin_call(decision=context, stamp=stamp)
        done = {"action": "margin_call", **context}
        if account.auto_top_up_asset is not None:
            spot = command.spot_available.get(account.account_id, {})
            done["top_up"] = _top_up(unit, account, market, level_kind, thresholds, spot, stamp)
        return done
    return None


def _liquidate(
    unit: UnitOfWork,
    account: MarginAccount,
    fund: InsuranceFund | None,
    market: Market,
    context: dict[str, Any],
    stamp: Stamp,
) -> dict[str, Any]:
    rules = unit.risk_parameters(stamp.effective_at).platform_rules
    quote = unit.listed_asset(QUOTE_ASSET)
    decision = decide_liquidation(
        position=account.position(),
        prices_usdt=market.prices_usdt,
        fee_ratio=rules.liquidation_fee_ratio,
        quote_decimals=quote.quantity_decimals,
    )
    fund = fund or InsuranceFund.establish(stamp=stamp)
    unit.change(account, fund)
    if decision.fee_usdt:
        fund.fund(
            source="liquidation_fee",
            account_id=account.account_id,
            amount_usdt=decision.fee_usdt,
            stamp=stamp,
        )
    uncovered = Decimal(0)
    if decision.deficit_usdt:
        uncovered = max(Decimal(0), decision.deficit_usdt - fund.balance_usdt)
        fund.cover_deficit(
            account_id=account.account_id, deficit_usdt=decision.deficit_usdt, stamp=stamp
        )
    # Liquidation sales change the platform totals of capped assets (DOMAIN.md §7).
    for asset, quantity in decision.sold.items():
        move_platform_total(
            unit,
            pool_for(unit, unit.listed_asset(asset), account.account),
            account_id=account.account_id,
            movement="liquidation",
            change=-quantity,
            stamp=stamp,
        )
    details = (
        context
        | decision.context()
        | {
            "fund_balance_after_usdt": format_plain(fund.balance_usdt),
            "uncovered_usdt": format_plain(uncovered),
        }
    )
    account.liquidate(
        sold=decision.sold,
        remainder_usdt=decision.remainder_usdt,
        deficit_usdt=decision.deficit_usdt,
        decision=details,
        stamp=stamp,
    )
    move_platform_total(
        unit,
        pool_for(unit, quote, account.account),
        account_id=account.account_id,
        movement="liquidation",
        change=decision.remainder_usdt,
        stamp=stamp,
    )
    return {"action": "liquidation", **details}


def _top_up(
    unit: UnitOfWork,
    account: MarginAccount,
    market: Market,
    level_kind: LevelKind,
    thresholds: MarginThresholds,
    spot: dict[str, Decimal],
    stamp: Stamp,
) -> dict[str, Any]:
    """Interpretation: a top-up aims to lift the level above the mode's initial risk ratio
    (borrow_level_min), the level a new borrow would need; it is limited by what the spot wallet
    holds and by the cap's q_max, and blocked in band D."""
    symbol = account.auto_top_up_asset
    assert symbol is not None
    asset = unit.asset_as_of(unit.listed_asset(symbol), stamp.effective_at)
    # The spot wallet's balance, to the asset's decimals: finer dust cannot be moved.
    available = quantize_down(spot.get(symbol, Decimal(0)), asset.quantity_decimals)
    if symbol != QUOTE_ASSET and asset.price_usdt is None:
        # No price, no sizing: the margin call stands, the top-up is blocked and says why.
        unpriced = {"asset": symbol, "spot_available": format_plain(available)}
        account.block_top_up(asset=symbol, reason="no_price", decision=unpriced, stamp=stamp)
        return unpriced | {"result": "blocked", "reason": "no_price"}
    top_up_market = unit.market(set(market.prices_usdt) | {symbol}, stamp.effective_at)
    needed = top_up_quantity_needed(
        position=account.position(),
        market=top_up_market,
        level_kind=level_kind,
        target_level=thresholds.borrow_level_min,
        asset=symbol,
        available=available,
        quantity_decimals=asset.quantity_decimals,
    )
    context: dict[str, Any] = {
        "asset": symbol,
        "spot_available": format_plain(available),
        "needed": format_plain(needed),
        "target_level": format_plain(thresholds.borrow_level_min),
    }
    if needed == 0:
        account.block_top_up(asset=symbol, reason="spot_empty", decision=context, stamp=stamp)
        return context | {"result": "blocked", "reason": "spot_empty"}
    quantity = needed
    pool = pool_for(unit, asset, account.account)
    if pool is not None and pool.cap_params is not None and pool.price_usdt is not None:
        cap = decide_cap_band(
            asset=symbol,
            quantity_requested=needed,
            platform_total=pool.platform_total,
            price_usdt=pool.price_usdt,
            params=pool.cap_params,
            quantity_decimals=asset.quantity_decimals,
            fixed_quota_usdt_override=account.fixed_quota_usdt_overrides.get(symbol),
        )
        context |= cap.context()
        quantity = min(needed, cap.quantity_max)
        if quantity == 0:
            account.block_top_up(
                asset=symbol, reason="collateral_cap", decision=context, stamp=stamp
            )
            pool.refuse_transfer_in(
                account_id=account.account_id,
                quantity_requested=needed,
                decision=context,
                stamp=stamp,
            )
            unit.change(pool)
            return context | {"result": "blocked", "reason": "collateral_cap"}
    position = account.position()
    holdings_after = position.holdings | {symbol: account.holding(symbol) + quantity}
    after = value_position(
        position=position.model_copy(update={"holdings": holdings_after}), market=top_up_market
    )
    # Limited: the spot wallet or the cap left the level at or below the target.
    is_limited = not after.is_above(level_kind, thresholds.borrow_level_min)
    account.top_up(
        asset=symbol, quantity=quantity, is_limited=is_limited, decision=context, stamp=stamp
    )
    move_platform_total(
        unit,
        pool,
        account_id=account.account_id,
        movement="auto_top_up",
        change=quantity,
        stamp=stamp,
    )
    return context | {
        "result": "limited" if is_limited else "topped_up",
        "quantity": format_plain(quantity),
    }
