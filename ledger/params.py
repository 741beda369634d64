"""Parameter models and their DOMAIN.md defaults.

A default here only fills a command's omitted field; the value is then recorded in the event, so a
replay uses the parameters of its time even if a default changes later.
"""

from decimal import Decimal

from pydantic import BaseModel, ConfigDict

# DOMAIN.md §3: collateral ranks whose assets fall under the platform-wide max collateral rule.
CAPPED_RANKS_DEFAULT: tuple[int, ...] = (7, 8, 9, 10)
FIXED_QUOTA_USDT_DEFAULT = Decimal("50000")
BAND_B_RATIO_MIN_DEFAULT = Decimal("0.8")  # r at which band B starts (80%)
BAND_C_RATIO_MIN_DEFAULT = Decimal("0.9")  # r at which band C starts (90%)
QUANTITY_DECIMALS_DEFAULT = 8

# The quote currency: every price is in USDT, and USDT itself is always worth 1.
QUOTE_ASSET = "USDT"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CollateralBracket(Frozen):
    """One bracket of a haircut ladder: notional up to `up_to_usdt` counts at `ratio`."""

    up_to_usdt: Decimal | None  # None: no upper bound (the last bracket)
    ratio: Decimal


FULL_VALUE_LADDER: tuple[CollateralBracket, ...] = (
    CollateralBracket(up_to_usdt=None, ratio=Decimal(1)),
)


class CapParams(Frozen):
    """The max collateral rule's numbers for one capped asset (DOMAIN.md §3)."""

    upper_limit: Decimal  # U, token quantity
    fixed_quota_usdt: Decimal  # F in USDT, converted to tokens at the index price
    band_b_ratio_min: Decimal
    band_c_ratio_min: Decimal
