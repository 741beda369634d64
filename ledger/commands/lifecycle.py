"""Lifecycle commands: borrowing, interest, repaying, trading, modes (COMMANDS.md)."""

from typing import Literal

from pydantic import Field, StrictBool

from ledger.commands.fields import AccountCommand, Asset, CommandBase, Quantity, Time, User


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
