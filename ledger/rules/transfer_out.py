"""Transfer-out (issue #3, DOMAIN.md §4): up to the holding, keeping the CML above its threshold."""

from decimal import Decimal
from enum import StrEnum

from ledger.money import format_plain
from ledger.params import Frozen
from ledger.rules.valuation import is_margin_level_above, margin_level


class TransferOutVerdict(StrEnum):
    ACCEPTED = "accepted"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    MARGIN_LEVEL = "margin_level"


class TransferOutDecision(Frozen):
    asset: str
    quantity_requested: Decimal
    holding: Decimal
    collateral_value_after_usdt: Decimal | None
    debt_usdt: Decimal
    collateral_margin_level_after: Decimal | None  # None: no debt, infinite
    collateral_margin_level_min: Decimal | None
    verdict: TransferOutVerdict

    @property
    def is_accepted(self) -> bool:
        return self.verdict is TransferOutVerdict.ACCEPTED

    def context(self) -> dict[str, str | None]:
        def plain(value: Decimal | None) -> str | None:
            return None if value is None else format_plain(value)

        return {
            "asset": self.asset,
            "requested": plain(self.quantity_requested),
            "holding": plain(self.holding),
            "debt_usdt": plain(self.debt_usdt),
            "collateral_value_after_usdt": plain(self.collateral_value_after_usdt),
            "collateral_margin_level_after": plain(self.collateral_margin_level_after),
            "collateral_margin_level_min": plain(self.collateral_margin_level_min),
        }


def decide_transfer_out(
    *,
    asset: str,
    quantity_requested: Decimal,
    holding: Decimal,
    debt_usdt: Decimal,
    collateral_value_after_usdt: Decimal | None,
    collateral_margin_level_min: Decimal | None,
) -> TransferOutDecision:
    """Refuse more than is held; with debt, refuse unless CML after the transfer > the minimum.

    Without debt the CML is infinite, so only the holding limits the transfer and no prices are
    needed; with debt the caller must supply the haircut value after the transfer and the minimum.
    """
    assert quantity_requested > 0, quantity_requested
    assert holding >= 0, holding
    assert debt_usdt >= 0, debt_usdt
    if debt_usdt > 0:
        assert collateral_value_after_usdt is not None, "debt needs a valuation"
        assert collateral_margin_level_min is not None, "debt needs a threshold"
    level_after = (
        None
        if collateral_value_after_usdt is None
        else margin_level(asset_value_usdt=collateral_value_after_usdt, debt_usdt=debt_usdt)
    )
    if quantity_requested > holding:
        verdict = TransferOutVerdict.INSUFFICIENT_BALANCE
    elif (
        collateral_value_after_usdt is not None
        and collateral_margin_level_min is not None
        and not is_margin_level_above(
            asset_value_usdt=collateral_value_after_usdt,
            debt_usdt=debt_usdt,
            level_min=collateral_margin_level_min,
        )
    ):
        verdict = TransferOutVerdict.MARGIN_LEVEL
    else:
        verdict = TransferOutVerdict.ACCEPTED
    if verdict is TransferOutVerdict.ACCEPTED:
        assert holding - quantity_requested >= 0, (holding, quantity_requested)
    return TransferOutDecision(
        asset=asset,
        quantity_requested=quantity_requested,
        holding=holding,
        collateral_value_after_usdt=collateral_value_after_usdt,
        debt_usdt=debt_usdt,
        collateral_margin_level_after=level_after,
        collateral_margin_level_min=collateral_margin_level_min,
        verdict=verdict,
    )
