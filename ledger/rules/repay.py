"""Repay (DOMAIN.md §5): interest before principal, never more than is owed or held."""

from decimal import Decimal
from enum import StrEnum

from ledger.money import format_plain
from ledger.params import Frozen


class RepayVerdict(StrEnum):
    ACCEPTED = "accepted"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    REPAY_EXCEEDS_DEBT = "repay_exceeds_debt"


class RepayDecision(Frozen):
    asset: str
    quantity_requested: Decimal
    holding: Decimal
    liability: Decimal
    interest: Decimal
    interest_paid: Decimal
    principal_paid: Decimal
    verdict: RepayVerdict

    @property
    def is_accepted(self) -> bool:
        return self.verdict is RepayVerdict.ACCEPTED

    def context(self) -> dict[str, str]:
        return {
            "asset": self.asset,
            "requested": format_plain(self.quantity_requested),
            "holding": format_plain(self.holding),
            "liability": format_plain(self.liability),
            "interest": format_plain(self.interest),
            "interest_paid": format_plain(self.interest_paid),
            "principal_paid": format_plain(self.principal_paid),
        }


def decide_repay(
    *,
    asset: str,
    quantity_requested: Decimal,
    holding: Decimal,
    liability: Decimal,
    interest: Decimal,
) -> RepayDecision:
    assert quantity_requested > 0, quantity_requested
    assert holding >= 0 and liability >= 0 and interest >= 0, (holding, liability, interest)
    if quantity_requested > liability + interest:
        verdict = RepayVerdict.REPAY_EXCEEDS_DEBT
    elif quantity_requested > holding:
        verdict = RepayVerdict.INSUFFICIENT_BALANCE
    else:
        verdict = RepayVerdict.ACCEPTED
    accepted = verdict is RepayVerdict.ACCEPTED
    interest_paid = min(quantity_requested, interest) if accepted else Decimal(0)
    principal_paid = quantity_requested - interest_paid if accepted else Decimal(0)
    if accepted:
        assert interest_paid + principal_paid == quantity_requested
        assert principal_paid <= liability, (principal_paid, liability)
        assert principal_paid == 0 or interest_paid == interest, "interest is paid first"
    return RepayDecision(
        asset=asset,
        quantity_requested=quantity_requested,
        holding=holding,
        liability=liability,
        interest=interest,
        interest_paid=interest_paid,
        principal_paid=principal_paid,
        verdict=verdict,
    )
