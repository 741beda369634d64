"""Valuation (DOMAIN.md §4): tiered collateral value like tax brackets, and margin levels."""

from decimal import Decimal

import pytest

from ledger.params import FULL_VALUE_LADDER, CollateralBracket
from ledger.rules.valuation import collateral_value_usdt, margin_level


def bracket(up_to_usdt: str | None, ratio: str) -> CollateralBracket:
    return CollateralBracket(
        up_to_usdt=None if up_to_usdt is None else Decimal(up_to_usdt), ratio=Decimal(ratio)
    )


# DOMAIN.md §4's rank-8 example ladder.
RANK_8_LADDER = (
    bracket("100000", "1"),
    bracket("250000", "0.8"),
    bracket("500000", "0.6"),
    bracket("700000", "0.3"),
    bracket("1000000", "0.1"),
    bracket(None, "0"),
)


@pytest.mark.parametrize(
    ("quantity", "price_usdt", "value_usdt"),
    [
        ("0", "1", "0"),
        ("50000", "1", "50000"),
        ("100000", "1", "100000"),
        ("100000.01", "1", "100000.008"),
        ("250000", "1", "220000"),  # 100000 + 150000 * 0.8
        ("400000", "1", "310000"),  # 100000 + 120000 + 150000 * 0.6
        ("500000", "1", "370000"),  # 100000 + 120000 + 150000
        ("600000", "1", "400000"),  # 100000 + 120000 + 150000 + 100000 * 0.3
        ("150000", "4", "400000"),  # the same 600000 notional at price 4
        ("700000", "1", "430000"),  # ... + 60000
        ("1000000", "1", "460000"),  # ... + 300000 * 0.1
        ("1500000", "1", "460000"),  # above 1M counts at 0%
        ("10", "1000000", "460000"),  # 10M notional from a high price
    ],
    ids=[
        "nothing",
        "inside-first-bracket",
        "exactly-on-first-edge",
        "one-cent-into-second-bracket",
        "exactly-on-second-edge",
        "spans-three-brackets",
        "exactly-on-third-edge",
        "spans-four-brackets",
        "spans-four-brackets-at-price-4",
        "exactly-on-fourth-edge",
        "exactly-on-last-finite-edge",
        "above-1M",
        "far-above-1M-high-price",
    ],
)
def test_collateral_value_sums_the_notional_bracket_by_bracket(
    quantity: str, price_usdt: str, value_usdt: str
) -> None:
    value = collateral_value_usdt(
        quantity=Decimal(quantity), price_usdt=Decimal(price_usdt), ladder=RANK_8_LADDER
    )
    assert value == Decimal(value_usdt)


@pytest.mark.parametrize(
    ("quantity", "price_usdt"),
    [("0", "1"), ("0.00000001", "1"), ("123.45678901", "27000.5"), ("1000000000", "3")],
    ids=["nothing", "smallest-unit", "fractional", "large"],
)
def test_a_single_full_value_bracket_values_the_whole_notional(
    quantity: str, price_usdt: str
) -> None:
    value = collateral_value_usdt(
        quantity=Decimal(quantity), price_usdt=Decimal(price_usdt), ladder=FULL_VALUE_LADDER
    )
    assert value == Decimal(quantity) * Decimal(price_usdt)


def test_a_single_bracket_applies_its_ratio_to_the_whole_notional() -> None:
    value = collateral_value_usdt(
        quantity=Decimal("2000000"), price_usdt=Decimal("2"), ladder=(bracket(None, "0.9"),)
    )
    assert value == Decimal("3600000")


@pytest.mark.parametrize(
    ("quantity", "price_usdt", "ladder"),
    [
        ("-1", "1", RANK_8_LADDER),
        ("1", "0", RANK_8_LADDER),
        ("1", "1", ()),
        ("1", "1", (bracket("100000", "1"),)),
    ],
    ids=["negative-quantity", "zero-price", "empty-ladder", "ladder-without-open-last-bracket"],
)
def test_collateral_value_refuses_broken_inputs(
    quantity: str, price_usdt: str, ladder: tuple[CollateralBracket, ...]
) -> None:
    with pytest.raises(AssertionError):
        collateral_value_usdt(
            quantity=Decimal(quantity), price_usdt=Decimal(price_usdt), ladder=ladder
        )


@pytest.mark.parametrize(
    ("asset_value_usdt", "debt_usdt", "expected"),
    [
        ("0", "0", None),
        ("1000", "0", None),
        ("300", "100", "3"),
        ("200", "100", "2"),
        ("0", "100", "0"),
        ("110", "100", "1.1"),
        ("1", "3", "0.3333333333333333333333333333"),
    ],
    ids=[
        "no-debt-nothing-held-is-infinite",
        "no-debt-is-infinite",
        "three",
        "two",
        "nothing-held",
        "liquidation-edge",
        "repeating-fraction",
    ],
)
def test_margin_level_is_value_over_debt_and_none_without_debt(
    asset_value_usdt: str, debt_usdt: str, expected: str | None
) -> None:
    level = margin_level(asset_value_usdt=Decimal(asset_value_usdt), debt_usdt=Decimal(debt_usdt))
    if expected is None:
        assert level is None
    else:
        assert level == Decimal(expected)
