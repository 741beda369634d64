"""Transfer-out (DOMAIN.md §4): up to the holding, and with debt only above the CML minimum."""

from decimal import Decimal

import pytest

from ledger.rules.transfer_out import TransferOutVerdict, decide_transfer_out

CML_MIN = "2"  # DOMAIN.md §4: Classic transfer-out needs CML > 2 after the transfer


def optional(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@pytest.mark.parametrize(
    ("quantity_requested", "holding", "verdict"),
    [
        ("10.00000001", "10", TransferOutVerdict.INSUFFICIENT_BALANCE),
        ("11", "10", TransferOutVerdict.INSUFFICIENT_BALANCE),
        ("0.00000001", "0", TransferOutVerdict.INSUFFICIENT_BALANCE),
        ("10", "10", TransferOutVerdict.ACCEPTED),
        ("9.99999999", "10", TransferOutVerdict.ACCEPTED),
    ],
    ids=[
        "one-unit-more-than-held",
        "more-than-held",
        "nothing-held",
        "exactly-the-holding",
        "less-than-held",
    ],
)
def test_without_debt_only_the_holding_limits_a_transfer_out(
    quantity_requested: str, holding: str, verdict: TransferOutVerdict
) -> None:
    decision = decide_transfer_out(
        asset="ABC",
        quantity_requested=Decimal(quantity_requested),
        holding=Decimal(holding),
        debt_usdt=Decimal("0"),
        collateral_value_after_usdt=None,
        collateral_margin_level_min=None,
    )
    assert decision.verdict is verdict
    assert decision.is_accepted is (verdict is TransferOutVerdict.ACCEPTED)
    assert decision.collateral_margin_level_after is None


@pytest.mark.parametrize(
    ("collateral_value_after_usdt", "collateral_margin_level_after", "verdict"),
    [
        ("150", "1.5", TransferOutVerdict.MARGIN_LEVEL),
        ("0", "0", TransferOutVerdict.MARGIN_LEVEL),
        ("199.99999999", "1.9999999999", TransferOutVerdict.MARGIN_LEVEL),
        ("200", "2", TransferOutVerdict.MARGIN_LEVEL),
        ("200.00000001", "2.0000000001", TransferOutVerdict.ACCEPTED),
        ("1000", "10", TransferOutVerdict.ACCEPTED),
    ],
    ids=[
        "well-below-minimum",
        "nothing-left",
        "just-below-minimum",
        "exactly-at-minimum-is-refused",
        "just-above-minimum",
        "well-above-minimum",
    ],
)
def test_with_debt_cml_after_must_be_strictly_above_the_minimum(
    collateral_value_after_usdt: str,
    collateral_margin_level_after: str,
    verdict: TransferOutVerdict,
) -> None:
    decision = decide_transfer_out(
        asset="ABC",
        quantity_requested=Decimal("1"),
        holding=Decimal("10"),
        debt_usdt=Decimal("100"),
        collateral_value_after_usdt=Decimal(collateral_value_after_usdt),
        collateral_margin_level_min=Decimal(CML_MIN),
    )
    assert decision.collateral_margin_level_after == Decimal(collateral_margin_level_after)
    assert decision.verdict is verdict
    assert decision.is_accepted is (verdict is TransferOutVerdict.ACCEPTED)


def test_more_than_the_holding_is_insufficient_balance_even_when_cml_is_too_low() -> None:
    decision = decide_transfer_out(
        asset="ABC",
        quantity_requested=Decimal("11"),
        holding=Decimal("10"),
        debt_usdt=Decimal("100"),
        collateral_value_after_usdt=Decimal("50"),
        collateral_margin_level_min=Decimal(CML_MIN),
    )
    assert decision.verdict is TransferOutVerdict.INSUFFICIENT_BALANCE


@pytest.mark.parametrize(
    ("collateral_value_after_usdt", "collateral_margin_level_min"),
    [(None, None), ("0", CML_MIN), ("50", CML_MIN)],
    ids=["no-valuation", "nothing-left-valued", "low-value"],
)
def test_without_debt_cml_is_infinite_and_never_refuses(
    collateral_value_after_usdt: str | None, collateral_margin_level_min: str | None
) -> None:
    decision = decide_transfer_out(
        asset="ABC",
        quantity_requested=Decimal("10"),
        holding=Decimal("10"),
        debt_usdt=Decimal("0"),
        collateral_value_after_usdt=optional(collateral_value_after_usdt),
        collateral_margin_level_min=optional(collateral_margin_level_min),
    )
    assert decision.collateral_margin_level_after is None
    assert decision.verdict is TransferOutVerdict.ACCEPTED


@pytest.mark.parametrize(
    ("debt_usdt", "collateral_value_after_usdt", "collateral_margin_level_min", "expected"),
    [
        (
            "100.00",
            "200.0000000100",
            "2.0",
            {
                "asset": "ABC",
                "requested": "1.5",
                "holding": "10",
                "debt_usdt": "100",
                "collateral_value_after_usdt": "200.00000001",
                "collateral_margin_level_after": "2.0000000001",
                "collateral_margin_level_min": "2",
            },
        ),
        (
            "0",
            None,
            None,
            {
                "asset": "ABC",
                "requested": "1.5",
                "holding": "10",
                "debt_usdt": "0",
                "collateral_value_after_usdt": None,
                "collateral_margin_level_after": None,
                "collateral_margin_level_min": None,
            },
        ),
    ],
    ids=["with-debt", "without-debt"],
)
def test_context_writes_plain_numbers_and_null_for_infinite_cml(
    debt_usdt: str,
    collateral_value_after_usdt: str | None,
    collateral_margin_level_min: str | None,
    expected: dict[str, str | None],
) -> None:
    decision = decide_transfer_out(
        asset="ABC",
        quantity_requested=Decimal("1.50"),
        holding=Decimal("1E+1"),
        debt_usdt=Decimal(debt_usdt),
        collateral_value_after_usdt=optional(collateral_value_after_usdt),
        collateral_margin_level_min=optional(collateral_margin_level_min),
    )
    assert decision.context() == expected


@pytest.mark.parametrize(
    ("quantity_requested", "holding", "debt_usdt", "collateral_value_after_usdt", "level_min"),
    [
        ("0", "10", "0", None, None),
        ("1", "-1", "0", None, None),
        ("1", "10", "-1", None, None),
        ("1", "10", "100", None, CML_MIN),
        ("1", "10", "100", "300", None),
    ],
    ids=[
        "zero-request",
        "negative-holding",
        "negative-debt",
        "debt-without-valuation",
        "debt-without-threshold",
    ],
)
def test_broken_preconditions_stop_the_rule(
    quantity_requested: str,
    holding: str,
    debt_usdt: str,
    collateral_value_after_usdt: str | None,
    level_min: str | None,
) -> None:
    with pytest.raises(AssertionError):
        decide_transfer_out(
            asset="ABC",
            quantity_requested=Decimal(quantity_requested),
            holding=Decimal(holding),
            debt_usdt=Decimal(debt_usdt),
            collateral_value_after_usdt=optional(collateral_value_after_usdt),
            collateral_margin_level_min=optional(level_min),
        )
