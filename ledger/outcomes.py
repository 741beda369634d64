"""Outcomes (COMMANDS.md "Outcome"): what every command answers, one JSON line each."""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.commands import CommandInvalid, FieldError


class Status(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PENDING = "pending"  # a client-channel first transfer awaiting facial verification
    INVALID = "invalid"  # not understood; nothing was recorded


class RejectionReason(StrEnum):
    """Stable reason codes of refused business requests (each one a recorded event)."""

    COLLATERAL_CAP = "collateral_cap"
    OPENING_RISK_CHECK = "opening_risk_check"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    MARGIN_LEVEL = "margin_level"
    ACCOUNT_NOT_OPEN = "account_not_open"
    # A transfer-in while the account's first transfer still awaits facial verification.
    VERIFICATION_PENDING = "verification_pending"
    ASSET_NOT_BORROWABLE = "asset_not_borrowable"
    BORROW_DISABLED = "borrow_disabled"  # an administrator disabled borrowing for the account
    COOLING_OFF = "cooling_off"  # the user's own cooling-off period
    BELOW_MIN_BORROW = "below_min_borrow"
    REPAY_EXCEEDS_DEBT = "repay_exceeds_debt"
    MODE_SWITCH_LIMIT = "mode_switch_limit"  # DOMAIN.md §6: at most N switches per UTC day
    PRO_QUIZ_NOT_PASSED = "pro_quiz_not_passed"
    PRO_TERMS_NOT_AGREED = "pro_terms_not_agreed"
    PRO_JURISDICTION_UNSUPPORTED = "pro_jurisdiction_unsupported"
    WALLET_VALUE_TOO_LOW = "wallet_value_too_low"


class Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str | None
    status: Status
    reason: RejectionReason | None = None
    message: str | None = None
    account: str | None = None
    events: list[str] = []
    context: dict[str, Any] = {}
    duplicate: bool = False
    line: int | None = None  # invalid lines only
    errors: list[FieldError] | None = None  # invalid lines only

    @property
    def is_accepted(self) -> bool:
        return self.status is Status.ACCEPTED

    def to_json_dict(self) -> dict[str, Any]:
        """The contract's JSON: optional keys only where they mean something."""
        data = self.model_dump(mode="json")
        for key in ("reason", "message", "account", "line", "errors"):
            if data[key] is None:
                del data[key]
        if self.status is Status.INVALID:
            del data["events"], data["context"], data["duplicate"]
        return data

    @classmethod
    def of_invalid(cls, line: int, invalid: CommandInvalid) -> "Outcome":
        """The `invalid` outcome of input line `line` (`ledger submit`, the HTTP batch)."""
        return cls(
            request_id=invalid.request_id, status=Status.INVALID, line=line, errors=invalid.errors
        )
