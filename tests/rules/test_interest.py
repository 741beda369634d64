"""Hourly interest (DOMAIN.md §5): which clock hours are due, each hour's charge rounded up to
the asset's decimals, and when the BNB discount applies."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger import limits
from ledger.rules.interest import (
    decide_hour_charge,
    floor_hour,
    hours_due,
    is_bnb_discount_due,
)


def t(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, 2, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "floored"),
    [
        (t(9), t(9)),
        (t(9, 0, 1), t(9)),
        (t(9, 59, 59), t(9)),
        (t(23, 30), t(23)),
        (datetime(2026, 3, 2, 9, 59, 59, 999999, tzinfo=UTC), t(9)),
    ],
    ids=["on-the-hour", "one-second-past", "last-second", "late-evening", "last-microsecond"],
)
def test_floor_hour_is_the_clock_hour_a_moment_falls_in(
    moment: datetime, floored: datetime
) -> None:
    assert floor_hour(moment) == floored


@pytest.mark.parametrize(
    ("until", "hours"),
    [
        (t(8, 30), []),
        (t(9), []),
        (t(9, 59, 59), []),
        (t(10), [t(10)]),
        (t(10, 0, 1), [t(10)]),
        (t(12), [t(10), t(11), t(12)]),
        (t(12, 59), [t(10), t(11), t(12)]),
    ],
    ids=[
        "before-the-accrued-hour",
        "the-accrued-hour-itself",
        "inside-the-accrued-hour",
        "next-hour-exactly",
        "just-after-next-hour",
        "three-hour-gap",
        "three-hour-gap-mid-hour",
    ],
)
def test_hours_due_are_the_full_clock_hours_after_the_last_one_charged(
    until: datetime, hours: list[datetime]
) -> None:
    assert hours_due(accrued_through=t(9), until=until) == hours


def test_hours_due_crosses_midnight() -> None:
    hours = hours_due(accrued_through=t(23), until=t(23) + timedelta(hours=2))
    assert hours == [datetime(2026, 3, 3, 0, tzinfo=UTC), datetime(2026, 3, 3, 1, tzinfo=UTC)]


def test_a_year_of_hours_is_settled_in_one_go_and_more_is_refused() -> None:
    start = t(0)
    limit = limits.INTEREST_HOURS_PER_SETTLEMENT_MAX
    assert len(hours_due(accrued_through=start, until=start + timedelta(hours=limit))) == limit
    with pytest.raises(AssertionError):
        hours_due(accrued_through=start, until=start + timedelta(hours=limit + 1))


@pytest.mark.parametrize(
    ("principal", "rate", "discount", "decimals", "charged"),
    [
        ("1000", "0.0000041667", "0", 8, "0.0041667"),
        ("12345.678", "0.0000041667", "0", 8, "0.05144074"),  # 0.0514407365226 rounded up
        ("100", "0.0001", "0", 2, "0.01"),  # exact
        ("100", "0.00001", "0", 2, "0.01"),  # 0.001 rounded up to one cent
        ("100", "0.00000001", "0", 2, "0.01"),  # a tiny charge is still one unit
        ("150", "0.0001", "0", 2, "0.02"),  # 0.015 rounded up
        ("10", "0.01", "0", 0, "1"),  # 0.1 rounded up to a whole token
        ("10000", "0.001", "0.05", 8, "9.5"),  # 10 less 5%
        ("3", "0.001", "0.05", 2, "0.01"),  # 0.00285 rounded up
        ("1000", "0", "0", 8, "0"),  # a free loan charges nothing
    ],
    ids=[
        "default-rate",
        "default-rate-rounded-up",
        "two-decimals-exact",
        "two-decimals-rounded-up",
        "tiny-charge-one-unit",
        "half-cent-up",
        "zero-decimals",
        "bnb-discount",
        "discounted-then-rounded-up",
        "zero-rate",
    ],
)
def test_an_hours_charge_is_rounded_up_to_the_asset_decimals(
    principal: str, rate: str, discount: str, decimals: int, charged: str
) -> None:
    charge = decide_hour_charge(
        asset="XYZ",
        hour=t(10),
        principal=Decimal(principal),
        hourly_interest_rate=Decimal(rate),
        discount_ratio=Decimal(discount),
        quantity_decimals=decimals,
    )
    assert charge.quantity == Decimal(charged)
    assert charge.quantity >= Decimal(principal) * Decimal(rate) * (1 - Decimal(discount))


def test_an_hours_charge_records_its_inputs() -> None:
    charge = decide_hour_charge(
        asset="USDT",
        hour=t(10),
        principal=Decimal("2500"),
        hourly_interest_rate=Decimal("0.0002"),
        discount_ratio=Decimal("0.05"),
        quantity_decimals=8,
    )
    assert charge.context() == {
        "asset": "USDT",
        "hour": "2026-03-02T10:00:00Z",
        "principal": "2500",
        "hourly_interest_rate": "0.0002",
        "discount_ratio": "0.05",
        "interest": "0.475",
    }


@pytest.mark.parametrize(
    ("enabled", "cross", "holding", "price", "interest_value", "due"),
    [
        (True, True, "0.095", "100", "9.5", True),  # holding worth exactly the interest
        (True, True, "1", "100", "9.5", True),
        (True, True, "0.09499999", "100", "9.5", False),  # a hair short
        (True, True, "0", "100", "9.5", False),
        (False, True, "1", "100", "9.5", False),  # option off
        (True, False, "1", "100", "9.5", False),  # isolated account
        (True, True, "1", None, "9.5", False),  # BNB not priced (or not listed)
    ],
    ids=[
        "exactly-enough",
        "plenty",
        "just-short",
        "no-bnb",
        "option-off",
        "not-cross",
        "bnb-unpriced",
    ],
)
def test_the_bnb_discount_needs_the_option_a_cross_account_and_enough_bnb(
    enabled: bool, cross: bool, holding: str, price: str | None, interest_value: str, due: bool
) -> None:
    assert (
        is_bnb_discount_due(
            is_enabled=enabled,
            is_cross_account=cross,
            discount_asset_holding=Decimal(holding),
            discount_asset_price_usdt=None if price is None else Decimal(price),
            interest_value_usdt=Decimal(interest_value),
        )
        is due
    )
