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


class MarginThresholds(Frozen):
    """One mode's margin-level thresholds (DOMAIN.md §4). Levels are ratios like 1.5, never %.

    Classic and portfolio accounts are measured by the collateral margin level (CML), Pro by the
    Pro margin level, isolated accounts by the margin level (ML, no haircuts).
    """

    transfer_out_level_min: Decimal  # the level after a transfer-out must stay above this
    borrow_level_min: Decimal  # the initial risk ratio: the level after a borrow must be above
    margin_call_level: Decimal  # a margin call at or below this (and above liquidation)
    liquidation_level: Decimal  # liquidation at or below this


# DOMAIN.md §4 defaults. Interpretation: portfolio accounts use Classic 3x's thresholds (§1:
# "treat like cross Classic"); isolated accounts use ML with a transfer-out floor of 2 and an
# initial risk ratio of 1.5 (3x, the lowest isolated leverage), margin call 1.3, liquidation 1.1.
MARGIN_THRESHOLDS_DEFAULT: dict[str, MarginThresholds] = {
    "classic_3x": MarginThresholds(
        transfer_out_level_min=Decimal(2),
        borrow_level_min=Decimal("1.5"),
        margin_call_level=Decimal("1.3"),
        liquidation_level=Decimal("1.1"),
    ),
    "classic_5x": MarginThresholds(
        transfer_out_level_min=Decimal(2),
        borrow_level_min=Decimal("1.25"),
        margin_call_level=Decimal("1.16"),
        liquidation_level=Decimal("1.1"),
    ),
    "pro": MarginThresholds(
        transfer_out_level_min=Decimal(2),
        borrow_level_min=Decimal(2),
        margin_call_level=Decimal("1.25"),
        liquidation_level=Decimal(1),
    ),
    "isolated": MarginThresholds(
        transfer_out_level_min=Decimal(2),
        borrow_level_min=Decimal("1.5"),
        margin_call_level=Decimal("1.3"),
        liquidation_level=Decimal("1.1"),
    ),
}


class MaintenanceBracket(Frozen):
    """Pro maintenance margin: liability value up to `up_to_usdt` is charged at `rate`."""

    up_to_usdt: Decimal | None
    rate: Decimal


# Interpretation: one bracket at 2.5% unless set per asset: with Pro's 20x (5% initial margin)
# that puts "Pro margin level > 2" exactly at the 20x leverage limit.
MAINTENANCE_BRACKETS_DEFAULT: tuple[MaintenanceBracket, ...] = (
    MaintenanceBracket(up_to_usdt=None, rate=Decimal("0.025")),
)


class PlatformRules(Frozen):
    """Platform-wide numbers of DOMAIN.md §5-6 that are not per mode or per asset."""

    pro_wallet_value_min_usdt: Decimal  # Classic -> Pro needs total asset value above this
    pro_switch_level_min: Decimal  # ... and the resulting Pro margin level above this
    mode_switches_per_day_max: int  # per UTC day, both directions counted
    bnb_interest_discount_ratio: Decimal  # 0.05: 5% off cross-margin interest
    # DOMAIN.md §7. Interpretation: the fee is a share of the liquidation's sale proceeds, paid
    # to the insurance fund out of what is left after the debt (never deepening a deficit).
    liquidation_fee_ratio: Decimal = Decimal("0.02")
    margin_call_interval_hours: int = 24  # at most one margin call per account in this window


PLATFORM_RULES_DEFAULT = PlatformRules(
    pro_wallet_value_min_usdt=Decimal(5000),
    pro_switch_level_min=Decimal(2),
    mode_switches_per_day_max=5,
    bnb_interest_discount_ratio=Decimal("0.05"),
)

MIN_BORROW_USDT_DEFAULT = Decimal(10)


class BorrowTerms(Frozen):
    """An asset's lending terms (DOMAIN.md §5), in force from their effective_at."""

    hourly_interest_rate: Decimal  # e.g. 0.0000041667 of the principal per hour
    min_borrow_usdt: Decimal  # a borrow below this USDT value is refused
    borrowable: bool


DISCOUNT_ASSET = "BNB"  # holding it (with the option on) discounts cross-margin interest
