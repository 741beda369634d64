"""Lifecycle commands: borrowing, interest, repaying, trading, modes (COMMANDS.md)."""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from ledger.commands.fields import (
    AccountCommand,
    Asset,
    CommandBase,
    NonNegativeQuantity,
    Quantity,
    Time,
    User,
)


class Borrow(AccountCommand):
    type: Literal["borrow"]
    asset: Asset
    quantity: Quantity


class Repay(AccountCommand):
    """Interest first, then principal."""

    type: Literal["repay"]
    asset: Asset
    quantity: Quantity


class AccrueInterest(CommandBase):
    """Charge every full hour up to `until`, once per loan and hour."""

    type: Literal["accrue_interest"]
    until: Time


class UserCommand(CommandBase):
    user: User


class RecordProQuiz(UserCommand):
    type: Literal["record_pro_quiz"]
    passed: StrictBool


class AgreeProTerms(UserCommand):
    type: Literal["agree_pro_terms"]


class SetProJurisdiction(UserCommand):
    type: Literal["set_pro_jurisdiction"]
    supported: StrictBool


class StartCoolingOff(UserCommand):
    """The user disables their own borrowing for a period; it can be extended, not shortened."""

    type: Literal["start_cooling_off"]
    period: Literal["1d", "3d", "1w"]


class SetBnbDiscount(UserCommand):
    type: Literal["set_bnb_discount"]
    enabled: StrictBool


class AdminSetBorrowing(AccountCommand):
    type: Literal["admin_set_borrowing"]
    enabled: StrictBool
    note: str = Field(min_length=1, max_length=500)


class SettleTrade(AccountCommand):
    """A trade the matching engine executed: the ledger records it (not limited by the cap)."""

    type: Literal["settle_trade"]
    sell_asset: Asset
    sell_quantity: Quantity
    buy_asset: Asset
    buy_quantity: Quantity
    fee_asset: Asset
    fee_quantity: NonNegativeQuantity
    auto_borrow: StrictBool = False
    auto_repay: StrictBool = False

    @model_validator(mode="after")
    def _two_assets(self) -> "SettleTrade":
        if self.sell_asset == self.buy_asset:
            raise PydanticCustomError("same_asset", "buy_asset must differ from sell_asset")
        return self


class SwitchMode(UserCommand):
    """Switch the user's cross account between Classic 3x, Classic 5x and Pro."""

    type: Literal["switch_mode"]
    to: Literal["classic_3x", "classic_5x", "pro"]
    open_order_loss_usdt: NonNegativeQuantity = Decimal(0)


class AdminForceClassic(UserCommand):
    type: Literal["admin_force_classic"]
    to: Literal["classic_3x", "classic_5x"]
    note: str = Field(min_length=1, max_length=500)


AccountId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}:(cross|portfolio|isolated:[A-Z0-9]{4,40})$")
]


class CheckMargins(CommandBase):
    """The risk sweep after price marks: margin calls, auto top-ups and liquidations at the
    prices in force at effective_at. `spot_available` is what each account's owner holds in the
    spot wallet (the ledger does not own it), by account id and asset."""

    type: Literal["check_margins"]
    spot_available: dict[AccountId, dict[Asset, NonNegativeQuantity]] = Field(
        default_factory=dict, max_length=1_000_000
    )


class FundInsurance(CommandBase):
    """An administrator pays USDT into the insurance fund."""

    type: Literal["fund_insurance"]
    amount_usdt: Quantity


class SetAutoTopUp(AccountCommand):
    """On a margin call, move `asset` from the user's spot wallet into this account."""

    type: Literal["set_auto_top_up"]
    enabled: StrictBool
    asset: Asset | None = None

    @model_validator(mode="after")
    def _asset_when_enabled(self) -> "SetAutoTopUp":
        if self.enabled and self.asset is None:
            raise PydanticCustomError("top_up_asset", "is required when enabled is true")
        return self
