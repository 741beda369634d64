"""Liquidation (DOMAIN.md §7): everything sold at the sweep's prices, every debt repaid, the fee
out of the surplus only, the remainder rounded down to USDT's decimals, a deficit left to the fund.

Every figure is computed by hand in the comments; the rule must reproduce it exactly.
"""

from decimal import Decimal

import pytest

from ledger.rules.liquidation import LiquidationDecision, decide_liquidation
from ledger.rules.valuation import Position

FEE_RATIO = Decimal("0.02")  # PlatformRules.liquidation_fee_ratio's default


def quantities(**values: str) -> dict[str, Decimal]:
    return {asset: Decimal(value) for asset, value in values.items()}


def liquidate(
    *,
    holdings: dict[str, Decimal],
    liabilities: dict[str, Decimal],
    interest: dict[str, Decimal] | None = None,
    prices: dict[str, Decimal],
    quote_decimals: int = 8,
    fee_ratio: Decimal = FEE_RATIO,
) -> LiquidationDecision:
    return decide_liquidation(
        position=Position(holdings=holdings, liabilities=liabilities, interest=interest or {}),
        prices_usdt=prices,
        fee_ratio=fee_ratio,
        quote_decimals=quote_decimals,
    )


def test_surplus_pays_the_fee_and_leaves_the_remainder_rounded_down_to_cents() -> None:
    """2,500 ABC at 0.6543 bring 1,635.75; the debt is 1,500 + 0.15 interest = 1,500.15; the
    surplus 135.60. Fee 2% of the proceeds = 32.715; the remainder 102.885 rounds down to
    102.88 (USDT with 2 decimals) and the 0.005 of dust joins the fee: 32.72."""
    decision = liquidate(
        holdings=quantities(ABC="2500", USDT="0"),
        liabilities=quantities(USDT="1500"),
        interest=quantities(USDT="0.15"),
        prices=quantities(ABC="0.6543", USDT="1"),
        quote_decimals=2,
    )

    assert decision.sold == {"ABC": Decimal(2500)}
    assert decision.proceeds_usdt == Decimal("1635.75")
    assert decision.debt_usdt == Decimal("1500.15")
    assert decision.repaid_liabilities == {"USDT": Decimal(1500)}
    assert decision.repaid_interest == {"USDT": Decimal("0.15")}
    assert decision.fee_usdt == Decimal("32.72")
    assert decision.remainder_usdt == Decimal("102.88")
    assert decision.deficit_usdt == 0
    assert decision.context() == {
        "prices_usdt": {"ABC": "0.6543", "USDT": "1"},
        "sold": {"ABC": "2500"},
        "proceeds_usdt": "1635.75",
        "repaid_liabilities": {"USDT": "1500"},
        "repaid_interest": {"USDT": "0.15"},
        "debt_usdt": "1500.15",
        "fee_ratio": "0.02",
        "fee_usdt": "32.72",
        "remainder_usdt": "102.88",
        "deficit_usdt": "0",
    }


def test_fee_is_capped_by_a_surplus_smaller_than_it() -> None:
    """1,000 ABC at 1.01 bring 1,010 against a debt of 1,000: the surplus is 10, less than 2% of
    the proceeds (20.20), so the fee is the whole 10 and nothing is left to the user."""
    decision = liquidate(
        holdings=quantities(ABC="1000"),
        liabilities=quantities(USDT="1000"),
        prices=quantities(ABC="1.01", USDT="1"),
    )

    assert decision.proceeds_usdt == Decimal(1010)
    assert decision.fee_usdt == Decimal(10)
    assert decision.remainder_usdt == 0
    assert decision.deficit_usdt == 0


def test_eight_decimal_remainder_sends_only_the_sub_unit_dust_to_the_fee() -> None:
    """1 ABC at 100.123456789 against 50 USDT: surplus 50.123456789, fee 2% = 2.00246913578,
    remainder 48.12098765322 rounds down to 48.12098765; the fee becomes 2.002469139."""
    decision = liquidate(
        holdings=quantities(ABC="1"),
        liabilities=quantities(USDT="50"),
        prices=quantities(ABC="100.123456789", USDT="1"),
    )

    assert decision.remainder_usdt == Decimal("48.12098765")
    assert decision.fee_usdt == Decimal("2.002469139")
    assert decision.proceeds_usdt - decision.fee_usdt - decision.remainder_usdt == Decimal(50)


def test_deficit_when_the_proceeds_do_not_cover_the_debt_pays_no_fee() -> None:
    """2,500 ABC at 0.5 and 10 USDT held bring 1,260 against 1,500.15: a deficit of 240.15, no fee
    (a liquidation never deepens a deficit to pay itself), nothing left."""
    decision = liquidate(
        holdings=quantities(ABC="2500", USDT="10"),
        liabilities=quantities(USDT="1500"),
        interest=quantities(USDT="0.15"),
        prices=quantities(ABC="0.5", USDT="1"),
        quote_decimals=2,
    )

    assert decision.sold == {"ABC": Decimal(2500), "USDT": Decimal(10)}
    assert decision.proceeds_usdt == Decimal(1260)
    assert decision.debt_usdt == Decimal("1500.15")
    assert decision.deficit_usdt == Decimal("240.15")
    assert decision.fee_usdt == 0
    assert decision.remainder_usdt == 0


def test_debts_in_several_assets_are_valued_at_the_sweeps_prices() -> None:
    """A short: holds 3,000 USDT and 0.01 BTC, owes 2 BTC + 0.001 BTC interest and 100 USDT.
    At BTC 1,000: proceeds 3,000 + 10 = 3,010; debt 2,001 + 100 = 2,101; surplus 909.
    Fee 2% of 3,010 = 60.20; remainder 848.80."""
    decision = liquidate(
        holdings=quantities(USDT="3000", BTC="0.01"),
        liabilities=quantities(BTC="2", USDT="100"),
        interest=quantities(BTC="0.001"),
        prices=quantities(BTC="1000", USDT="1"),
    )

    assert decision.sold == {"USDT": Decimal(3000), "BTC": Decimal("0.01")}
    assert decision.debt_usdt == Decimal(2101)
    assert decision.repaid_liabilities == {"BTC": Decimal(2), "USDT": Decimal(100)}
    assert decision.repaid_interest == {"BTC": Decimal("0.001")}
    assert decision.fee_usdt == Decimal("60.20")
    assert decision.remainder_usdt == Decimal("848.80")
    assert decision.deficit_usdt == 0


@pytest.mark.parametrize(
    ("price", "fee", "remainder", "deficit"),
    [
        ("0.61", "0", "0", "0"),  # proceeds 1,525 - debt 1,525: nothing either way
        ("0.614", "10", "0", "0"),  # proceeds 1,535: surplus 10 < 2% (30.70), all fee
        ("0.6096", "0", "0", "1"),  # proceeds 1,524: one USDT short
        ("0.7", "35", "190", "0"),  # proceeds 1,750, surplus 225, fee 35
    ],
    ids=["exactly-even", "surplus-below-fee", "one-usdt-short", "fee-below-surplus"],
)
def test_proceeds_split_exactly_into_debt_fee_remainder_and_deficit(
    price: str, fee: str, remainder: str, deficit: str
) -> None:
    decision = liquidate(
        holdings=quantities(ABC="2500"),
        liabilities=quantities(USDT="1525"),
        prices=quantities(ABC=price, USDT="1"),
        quote_decimals=2,
    )

    assert (decision.fee_usdt, decision.remainder_usdt, decision.deficit_usdt) == (
        Decimal(fee),
        Decimal(remainder),
        Decimal(deficit),
    )
    assert (
        decision.proceeds_usdt - decision.fee_usdt - decision.remainder_usdt
        == decision.debt_usdt - decision.deficit_usdt
    )
