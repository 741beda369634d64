"""Platform-wide max collateral rule (DOMAIN.md §3): the band, and how much may come in."""

from decimal import Decimal, localcontext
from enum import StrEnum

from ledger import limits
from ledger.money import format_plain, quantize_down
from ledger.params import CapParams, Frozen


class Band(StrEnum):
    A = "A"  # r < 80%: up to 80% of U
    B = "B"  # 80% <= r < 90%: the fixed quota, never past U
    C = "C"  # 90% <= r < 100%: the fixed quota, never past U
    D = "D"  # r >= 100%: blocked


class CapDecision(Frozen):
    asset: str
    band: Band
    platform_total: Decimal  # T, just before this transfer
    upper_limit: Decimal  # U
    utilisation_ratio: Decimal  # r = T / U
    fixed_quota_usdt: Decimal
    fixed_quota_source: str  # "asset" or "account" (a per-account override)
    fixed_quota: Decimal  # F as a token quantity at price_usdt
    price_usdt: Decimal
    band_b_ratio_min: Decimal
    band_c_ratio_min: Decimal
    quantity_requested: Decimal
    quantity_max: Decimal  # q_max
    is_accepted: bool

    def context(self) -> dict[str, str]:
        """The decision's figures under the contract's JSON keys (COMMANDS.md "Outcome")."""
        return {
            "asset": self.asset,
            "band": self.band.value,
            "total": format_plain(self.platform_total),
            "upper_limit": format_plain(self.upper_limit),
            "ratio": format_plain(self.utilisation_ratio),
            "q_max": format_plain(self.quantity_max),
            "fixed_quota": format_plain(self.fixed_quota),
            "fixed_quota_usdt": format_plain(self.fixed_quota_usdt),
            "fixed_quota_source": self.fixed_quota_source,
            "price_usdt": format_plain(self.price_usdt),
            "requested": format_plain(self.quantity_requested),
            "band_b_ratio_min": format_plain(self.band_b_ratio_min),
            "band_c_ratio_min": format_plain(self.band_c_ratio_min),
        }


def band_of(*, platform_total: Decimal, params: CapParams) -> Band:
    """The band of T against U (edges belong to the higher band).

    Compared as T < ratio·U, exactly, never through the rounded quotient T / U: a total one
    smallest unit below an edge must stay in the lower band.
    """
    assert platform_total >= 0, platform_total
    if platform_total < params.band_b_ratio_min * params.upper_limit:
        return Band.A
    if platform_total < params.band_c_ratio_min * params.upper_limit:
        return Band.B
    if platform_total < params.upper_limit:
        return Band.C
    return Band.D


def decide_cap_band(
    *,
    asset: str,
    quantity_requested: Decimal,
    platform_total: Decimal,
    price_usdt: Decimal,
    params: CapParams,
    quantity_decimals: int,
    fixed_quota_usdt_override: Decimal | None = None,
) -> CapDecision:
    """How much of `asset` may come in now, and whether `quantity_requested` may.

    Interpretation (DOMAIN.md §3): a request above q_max is rejected whole, never partly filled;
    in band B as in band C the quota stops at U, so a transfer-in never takes T past U.
    q_max and F are rounded down to the asset's quantity decimals, so q_max itself is always a
    quantity that can be transferred and is never more than the rule allows.
    """
    assert quantity_requested > 0, quantity_requested
    assert platform_total >= 0, platform_total
    assert price_usdt > 0, price_usdt
    assert params.upper_limit > 0, params.upper_limit
    assert 0 < params.band_b_ratio_min < params.band_c_ratio_min < 1, params
    assert quantity_decimals >= 0, quantity_decimals

    fixed_quota_usdt = (
        params.fixed_quota_usdt if fixed_quota_usdt_override is None else fixed_quota_usdt_override
    )
    assert fixed_quota_usdt > 0, fixed_quota_usdt
    utilisation_ratio = ratio_for_record(platform_total, params.upper_limit)  # r, never decides
    fixed_quota = quantize_down(fixed_quota_usdt / price_usdt, quantity_decimals)  # F in tokens
    band = band_of(platform_total=platform_total, params=params)
    if band is Band.A:
        quantity_max = params.band_b_ratio_min * params.upper_limit - platform_total
    elif band in (Band.B, Band.C):
        quantity_max = min(fixed_quota, params.upper_limit - platform_total)
    else:
        quantity_max = Decimal(0)
    quantity_max = quantize_down(quantity_max, quantity_decimals)

    assert quantity_max >= 0, quantity_max
    if band is not Band.D:
        assert platform_total + quantity_max <= params.upper_limit, (platform_total, quantity_max)
    if band is Band.D:
        assert quantity_max == 0, quantity_max
    return CapDecision(
        asset=asset,
        band=band,
        platform_total=platform_total,
        upper_limit=params.upper_limit,
        utilisation_ratio=utilisation_ratio,
        fixed_quota_usdt=fixed_quota_usdt,
        fixed_quota_source="asset" if fixed_quota_usdt_override is None else "account",
        fixed_quota=fixed_quota,
        price_usdt=price_usdt,
        band_b_ratio_min=params.band_b_ratio_min,
        band_c_ratio_min=params.band_c_ratio_min,
        quantity_requested=quantity_requested,
        quantity_max=quantity_max,
        is_accepted=quantity_requested <= quantity_max,  # no partial fill
    )


def ratio_for_record(platform_total: Decimal, upper_limit: Decimal) -> Decimal:
    """r = T / U to RATIO_DIGITS significant digits: what the outcome shows, not what decides."""
    with localcontext() as context:
        context.prec = limits.RATIO_DIGITS
        return platform_total / upper_limit


def cap_rejection_message(*, asset: str, quantity_max: Decimal) -> str:
    """The exact user-facing text of DOMAIN.md §3."""
    return (
        f"{asset} has reached platform max pledged collateral amount. "
        f"The max transfer-in quantity is {format_plain(quantity_max)}. "
        "Please reduce the quantity or try with other tokens"
    )
