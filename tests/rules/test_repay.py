"""Repay (DOMAIN.md §5): interest before principal, never more than owed, never more than held."""

from decimal import Decimal

import pytest

from ledger.rules.repay import RepayDecision, RepayVerdict, decide_repay


def repay(
    quantity: str, *, holding: str = "500", liability: str = "100", interest: str = "2"
) -> RepayDecision:
    return decide_repay(
        asset="USDT",
        quantity_requested=Decimal(quantity),
        holding=Decimal(holding),
        liability=Decimal(liability),
        interest=Decimal(interest),
    )


@pytest.mark.parametrize(
    ("quantity", "interest_paid", "principal_paid"),
    [
        ("0.00000001", "0.00000001", "0"),
        ("1", "1", "0"),
        ("2", "2", "0"),  # exactly the interest: no principal yet
        ("2.00000001", "2", "0.00000001"),
        ("50", "2", "48"),
        ("102", "2", "100"),  # the whole debt
    ],
    ids=[
        "smallest-unit",
        "part-of-the-interest",
        "all-the-interest",
        "first-unit-of-principal",
        "interest-and-part-principal",
        "everything-owed",
    ],
)
def test_interest_is_paid_before_principal(
    quantity: str, interest_paid: str, principal_paid: str
) -> None:
    decision = repay(quantity)
    assert decision.verdict is RepayVerdict.ACCEPTED
    assert (decision.interest_paid, decision.principal_paid) == (
        Decimal(interest_paid),
        Decimal(principal_paid),
    )


@pytest.mark.parametrize(
    ("quantity", "holding", "liability", "interest", "verdict"),
    [
        ("102.00000001", "500", "100", "2", RepayVerdict.REPAY_EXCEEDS_DEBT),
        ("1", "500", "0", "0", RepayVerdict.REPAY_EXCEEDS_DEBT),  # nothing owed
        ("60", "50", "100", "2", RepayVerdict.INSUFFICIENT_BALANCE),
        ("50.00000001", "50", "100", "2", RepayVerdict.INSUFFICIENT_BALANCE),
        ("50", "50", "100", "2", RepayVerdict.ACCEPTED),  # all that is held
        ("200", "50", "100", "2", RepayVerdict.REPAY_EXCEEDS_DEBT),  # both: the debt first
    ],
    ids=[
        "one-unit-over-the-debt",
        "no-debt",
        "more-than-held",
        "one-unit-more-than-held",
        "exactly-the-holding",
        "over-debt-and-holding",
    ],
)
def test_nobody_repays_more_than_owed_or_held(
    quantity: str, holding: str, liability: str, interest: str, verdict: RepayVerdict
) -> None:
    decision = repay(quantity, holding=holding, liability=liability, interest=interest)
    assert decision.verdict is verdict
    if verdict is not RepayVerdict.ACCEPTED:
        assert (decision.interest_paid, decision.principal_paid) == (0, 0)


def test_the_decision_context_carries_what_was_owed_and_paid() -> None:
    assert repay("30").context() == {
        "asset": "USDT",
        "requested": "30",
        "holding": "500",
        "liability": "100",
        "interest": "2",
        "interest_paid": "2",
        "principal_paid": "28",
    }
