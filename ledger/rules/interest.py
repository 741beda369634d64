"""Hourly interest (DOMAIN.md §5): one hour at the borrow, then every full clock hour.

Interpretation: "every full hour" is every clock hour (HH:00) after the borrow; the hour of the
borrow is charged when borrowing, on the amount borrowed. Charges are rounded up to the asset's
quantity decimals, so a debt can always be repaid exactly and never rounds to less than is due.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from ledger import limits
from ledger.money import format_plain, quantize_up
from ledger.params import Frozen
from ledger.times import format_time

HOUR = timedelta(hours=1)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hours_due(*, accrued_through: datetime, until: datetime) -> list[datetime]:
    """The clock hours after `accrued_through` up to and including `until`, in order."""
    assert accrued_through == floor_hour(accrued_through), accrued_through
    hours = []
    hour = accrued_through + HOUR
    while hour <= until:
        hours.append(hour)
        assert len(hours) <= limits.INTEREST_HOURS_PER_SETTLEMENT_MAX, (accrued_through, until)
        hour += HOUR
    return hours


class HourCharge(Frozen):
    asset: str
    hour: datetime  # the clock hour charged (for a borrow: the hour it fell in)
    principal: Decimal
    hourly_interest_rate: Decimal
    discount_ratio: Decimal  # 0, or the BNB discount when it applied
    quantity: Decimal  # interest added, in the asset

    def context(self) -> dict[str, str]:
        return {
            "asset": self.asset,
            "hour": format_time(self.hour),
            "principal": format_plain(self.principal),
            "hourly_interest_rate": format_plain(self.hourly_interest_rate),
            "discount_ratio": format_plain(self.discount_ratio),
            "interest": format_plain(self.quantity),
        }


def decide_hour_charge(
    *,
    asset: str,
    hour: datetime,
    principal: Decimal,
    hourly_interest_rate: Decimal,
    discount_ratio: Decimal,
    quantity_decimals: int,
) -> HourCharge:
    assert principal > 0, principal
    assert hourly_interest_rate >= 0, hourly_interest_rate
    assert 0 <= discount_ratio < 1, discount_ratio
    quantity = quantize_up(
        principal * hourly_interest_rate * (1 - discount_ratio), quantity_decimals
    )
    assert quantity >= 0, quantity
    return HourCharge(
        asset=asset,
        hour=hour,
        principal=principal,
        hourly_interest_rate=hourly_interest_rate,
        discount_ratio=discount_ratio,
        quantity=quantity,
    )


def is_bnb_discount_due(
    *,
    is_enabled: bool,
    is_cross_account: bool,
    discount_asset_holding: Decimal,
    discount_asset_price_usdt: Decimal | None,
    interest_value_usdt: Decimal,
) -> bool:
    """Interpretation: "holding enough BNB" means holding at least the discounted hour's interest
    in BNB value; the discount is for cross margin only (DOMAIN.md §5)."""
    if not (is_enabled and is_cross_account) or discount_asset_price_usdt is None:
        return False
    return discount_asset_holding * discount_asset_price_usdt >= interest_value_usdt
