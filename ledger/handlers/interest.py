"""Settling hourly interest on an account's loans up to a moment (DOMAIN.md §5).

Every command on an account first settles the clock hours that have passed, so each hour is
charged on the principal outstanding during it, and an account's events stay in business-time
order. The accrual job settles the accounts nobody touched.
"""

from datetime import datetime
from decimal import Decimal

from ledger.domain.account import AccountKind, MarginAccount
from ledger.domain.base import Stamp
from ledger.params import DISCOUNT_ASSET
from ledger.rules.interest import (
    HourCharge,
    decide_hour_charge,
    floor_hour,
    hours_due,
    is_bnb_discount_due,
)
from ledger.unit_of_work import UnitOfWork


def settle_interest(unit: UnitOfWork, account: MarginAccount, until: datetime) -> list[HourCharge]:
    """Charge every full clock hour up to `until` on every open loan; returns the charges."""
    charges = []
    loans = account.open_loans()
    # Hour by hour across the loans, so the account's events stay in business-time order.
    due = sorted(
        (hour, asset)
        for asset in loans
        for hour in hours_due(accrued_through=account.interest_accrued_through[asset], until=until)
    )
    for hour, asset in due:
        principal = loans[asset]
        charge = hour_charge(unit, account, asset, principal, hour)
        account.charge_interest(
            asset=asset,
            hour=hour,
            principal=principal,
            hourly_interest_rate=charge.hourly_interest_rate,
            discount_ratio=charge.discount_ratio,
            quantity=charge.quantity,
            stamp=Stamp(
                effective_at=hour,
                actor=unit.command.default_actor(),
                request_id=unit.command.request_id,
            ),
        )
        charges.append(charge)
    if charges:
        unit.change(account)
    return charges


def hour_charge(
    unit: UnitOfWork, account: MarginAccount, asset: str, principal: Decimal, at: datetime
) -> HourCharge:
    """One hour of interest on `principal` at the rate in force at `at`, BNB discount included."""
    loan_asset = unit.asset_as_of(unit.listed_asset(asset), at)
    assert loan_asset.borrow_terms is not None, f"{asset} lent without terms at {at}"
    rate = loan_asset.borrow_terms.hourly_interest_rate
    hour = floor_hour(at)
    full = decide_hour_charge(
        asset=asset,
        hour=hour,
        principal=principal,
        hourly_interest_rate=rate,
        discount_ratio=Decimal(0),
        quantity_decimals=loan_asset.quantity_decimals,
    )
    profile = unit.user_profile_as_of(account.user, at)  # the option as it stood that hour
    if profile is None or not profile.bnb_discount_enabled or full.quantity == 0:
        return full
    discount_ratio = unit.risk_parameters(at).platform_rules.bnb_interest_discount_ratio
    discounted = decide_hour_charge(
        asset=asset,
        hour=hour,
        principal=principal,
        hourly_interest_rate=rate,
        discount_ratio=discount_ratio,
        quantity_decimals=loan_asset.quantity_decimals,
    )
    loan_price = loan_asset.index_price_usdt
    discount_asset = unit.get_listed(DISCOUNT_ASSET)
    discount_as_of = None if discount_asset is None else unit.as_of(discount_asset, at)
    discount_price = None if discount_as_of is None else discount_as_of.price_usdt
    if loan_price is None or not is_bnb_discount_due(
        is_enabled=True,
        is_cross_account=account.kind is AccountKind.CROSS,
        discount_asset_holding=account.holding(DISCOUNT_ASSET),
        discount_asset_price_usdt=discount_price,
        interest_value_usdt=discounted.quantity * loan_price,
    ):
        return full
    return discounted
