"""Parameter commands (administrators): each one event, in force from its effective_at."""

from decimal import Decimal
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ledger import limits
from ledger.commands.fields import (
    AccountCommand,
    Asset,
    CommandBase,
    Quantity,
    Ratio,
)
from ledger.params import (
    BAND_B_RATIO_MIN_DEFAULT,
    BAND_C_RATIO_MIN_DEFAULT,
    FIXED_QUOTA_USDT_DEFAULT,
    MIN_BORROW_USDT_DEFAULT,
    QUANTITY_DECIMALS_DEFAULT,
    QUOTE_ASSET,
    CollateralBracket,
    MaintenanceBracket,
)


def check_ascending_brackets(bounds: list[Decimal | None]) -> None:
    """A bracket list's `up_to_usdt` bounds: positive, ascending, only the last one null."""
    if bounds[-1] is not None:
        raise PydanticCustomError("ladder", 'the last bracket must have "up_to_usdt": null')
    finite = [b for b in bounds[:-1] if b is not None]
    if len(finite) != len(bounds) - 1:
        raise PydanticCustomError("ladder", "only the last bracket may be unbounded")
    if any(b <= a for a, b in zip([Decimal(0), *finite], finite, strict=False)):
        raise PydanticCustomError("ladder", '"up_to_usdt" must be positive and ascending')


class CollateralBracketIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to_usdt: Quantity | None
    ratio: Ratio


class ListAsset(CommandBase):
    type: Literal["list_asset"]
    asset: Asset
    collateral_rank: StrictInt = Field(ge=1, le=10)
    collateral_ladder: list[CollateralBracketIn] | None = Field(
        default=None, min_length=1, max_length=limits.LADDER_BRACKETS_MAX
    )
    quantity_decimals: StrictInt = Field(
        default=QUANTITY_DECIMALS_DEFAULT, ge=0, le=limits.QUANTITY_DECIMALS_MAX
    )

    @field_validator("collateral_ladder")
    @classmethod
    def _ladder_ascending(
        cls, ladder: list[CollateralBracketIn] | None
    ) -> list[CollateralBracketIn] | None:
        if ladder is not None:
            check_ascending_brackets([b.up_to_usdt for b in ladder])
        return ladder

    def ladder(self) -> tuple[CollateralBracket, ...] | None:
        if self.collateral_ladder is None:
            return None
        return tuple(
            CollateralBracket(up_to_usdt=b.up_to_usdt, ratio=b.ratio)
            for b in self.collateral_ladder
        )


class SetCollateralCap(CommandBase):
    type: Literal["set_collateral_cap"]
    asset: Asset
    upper_limit: Quantity  # U, token quantity
    fixed_quota_usdt: Quantity = FIXED_QUOTA_USDT_DEFAULT
    band_b_ratio_min: Ratio = BAND_B_RATIO_MIN_DEFAULT
    band_c_ratio_min: Ratio = BAND_C_RATIO_MIN_DEFAULT

    @model_validator(mode="after")
    def _bands_ordered(self) -> "SetCollateralCap":
        if not 0 < self.band_b_ratio_min < self.band_c_ratio_min < 1:
            raise PydanticCustomError(
                "bands", "band_c_ratio_min must be above band_b_ratio_min, both between 0 and 1"
            )
        return self


class SetAccountQuota(AccountCommand):
    type: Literal["set_account_quota"]
    asset: Asset
    fixed_quota_usdt: Quantity


class MarkPrices(CommandBase):
    type: Literal["mark_prices"]
    prices: dict[Asset, Quantity] = Field(min_length=1, max_length=limits.PRICES_PER_MARK_MAX)

    @field_validator("prices")
    @classmethod
    def _not_quote(cls, prices: dict[str, Decimal]) -> dict[str, Decimal]:
        if QUOTE_ASSET in prices:
            raise PydanticCustomError("quote", f"{QUOTE_ASSET} is always 1 and is not marked")
        return prices


class SetBorrowTerms(CommandBase):
    type: Literal["set_borrow_terms"]
    asset: Asset
    hourly_interest_rate: Ratio
    min_borrow_usdt: Quantity = MIN_BORROW_USDT_DEFAULT
    borrowable: StrictBool = True


class SetMarginThresholds(CommandBase):
    """One mode's thresholds; omitted fields keep the values in force."""

    type: Literal["set_margin_thresholds"]
    mode: Literal["classic_3x", "classic_5x", "pro", "isolated"]
    transfer_out_level_min: Quantity | None = None
    borrow_level_min: Quantity | None = None
    margin_call_level: Quantity | None = None
    liquidation_level: Quantity | None = None


class SetPlatformRules(CommandBase):
    """Platform-wide rule numbers; omitted fields keep the values in force."""

    type: Literal["set_platform_rules"]
    pro_wallet_value_min_usdt: Quantity | None = None
    pro_switch_level_min: Quantity | None = None
    mode_switches_per_day_max: StrictInt | None = Field(default=None, ge=0, le=1000)
    bnb_interest_discount_ratio: Ratio | None = None
    liquidation_fee_ratio: Ratio | None = None
    margin_call_interval_hours: StrictInt | None = Field(default=None, ge=0, le=24 * 366)


class MaintenanceBracketIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to_usdt: Quantity | None
    rate: Ratio


class SetMaintenanceBrackets(CommandBase):
    """Pro maintenance margin brackets of one liability asset, or the default (no asset)."""

    type: Literal["set_maintenance_brackets"]
    asset: Asset | None = None
    brackets: list[MaintenanceBracketIn] = Field(
        min_length=1, max_length=limits.LADDER_BRACKETS_MAX
    )

    @field_validator("brackets")
    @classmethod
    def _ascending(cls, brackets: list[MaintenanceBracketIn]) -> list[MaintenanceBracketIn]:
        check_ascending_brackets([b.up_to_usdt for b in brackets])
        return brackets

    def maintenance_brackets(self) -> tuple[MaintenanceBracket, ...]:
        return tuple(
            MaintenanceBracket(up_to_usdt=b.up_to_usdt, rate=b.rate) for b in self.brackets
        )
