"""Collateral movements: transfers in and out, and the opening verification."""

from typing import Literal

from pydantic import Field, StrictBool

from ledger.commands.fields import (
    REQUEST_ID_PATTERN,
    AccountCommand,
    Asset,
    Quantity,
)
from ledger.rules.opening_check import Channel


class TransferIn(AccountCommand):
    type: Literal["transfer_in"]
    asset: Asset
    quantity: Quantity
    channel: Channel = Channel.API
    risk_flagged: StrictBool = False


class CompleteVerification(AccountCommand):
    type: Literal["complete_verification"]
    transfer_request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    passed: StrictBool


class TransferOut(AccountCommand):
    type: Literal["transfer_out"]
    asset: Asset
    quantity: Quantity
