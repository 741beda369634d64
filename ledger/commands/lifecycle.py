"""Lifecycle commands: borrowing, interest, repaying, trading, modes (COMMANDS.md)."""

from decimal import Decimal
from typing import Literal

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
