"""Liquidation (DOMAIN.md §7): sell everything at the sweep's prices, repay every debt, leave the
remainder to the user; a deficit goes to the insurance fund."""

from decimal import Decimal
from typing import Any

from ledger.money import format_plain, quantize_down
from ledger.params import Frozen
from ledger.rules.valuation import Position


class LiquidationDecision(Frozen):
    prices_usdt: dict[str, Decimal]
    sold: dict[str, Decimal]  # every holding, sold at prices_usdt
    proceeds_usdt: Decimal
    repaid_liabilities: dict[str, Decimal]
    repaid_interest: dict[str, Decimal]
    debt_usdt: Decimal
    fee_ratio: Decimal
    fee_usdt: Decimal  # to the insurance fund, only out of a surplus
    remainder_usdt: Decimal  # left to the user, in USDT
    deficit_usdt: Decimal  # debt the proceeds could not repay: the insurance fund's to cover

    def context(self) -> dict[str, Any]:
        def plain(quantities: dict[str, Decimal]) -> dict[str, str]:
            return {a: format_plain(q) for a, q in sorted(quantities.items()) if q}

        return {
            "prices_usdt": plain(self.prices_usdt),
            "sold": plain(self.sold),
            "proceeds_usdt": format_plain(self.proceeds_usdt),
            "repaid_liabilities": plain(self.repaid_liabilities),
            "repaid_interest": plain(self.repaid_interest),
            "debt_usdt": format_plain(self.debt_usdt),
            "fee_ratio": format_plain(self.fee_ratio),
            "fee_usdt": format_plain(self.fee_usdt),
            "remainder_usdt": format_plain(self.remainder_usdt),
            "deficit_usdt": format_plain(self.deficit_usdt),
        }


def decide_liquidation(
    *,
    position: Position,
    prices_usdt: dict[str, Decimal],
    fee_ratio: Decimal,
    quote_decimals: int,
) -> LiquidationDecision:
    """Interpretation: the fee is fee_ratio of the proceeds, capped by the surplus after the debt
    (a liquidation never deepens a deficit to pay its own fee); the remainder is rounded down to
    the quote asset's decimals and the rounding dust joins the fee."""
    assert 0 <= fee_ratio < 1, fee_ratio
    sold = {a: q for a, q in position.holdings.items() if q > 0}
    proceeds = sum((q * prices_usdt[a] for a, q in sold.items()), Decimal(0))
    debt = sum((position.debt(a) * prices_usdt[a] for a in position.assets()), Decimal(0))
    surplus = proceeds - debt
    if surplus > 0:
        remainder = quantize_down(surplus - min(fee_ratio * proceeds, surplus), quote_decimals)
        fee = surplus - remainder
        deficit = Decimal(0)
    else:
        remainder = fee = Decimal(0)
        deficit = -surplus
    assert proceeds - fee - remainder + deficit == debt, (proceeds, fee, remainder, deficit, debt)
    assert min(fee, remainder, deficit) >= 0, (fee, remainder, deficit)
    return LiquidationDecision(
        prices_usdt={a: prices_usdt[a] for a in sorted(position.assets())},
        sold=sold,
        proceeds_usdt=proceeds,
        repaid_liabilities={a: q for a, q in position.liabilities.items() if q},
        repaid_interest={a: q for a, q in position.interest.items() if q},
        debt_usdt=debt,
        fee_ratio=fee_ratio,
        fee_usdt=fee,
        remainder_usdt=remainder,
        deficit_usdt=deficit,
    )
