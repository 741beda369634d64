"""Command models (COMMANDS.md): one pydantic model per command, one union discriminated on `type`.

Parsing is the edge: a line that passes here has the right shape; checks that need the ledger's
state (is the asset listed? too many decimals for it?) happen in the application.
"""

import json
from decimal import Decimal
from typing import Annotated, Any, get_args

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from ledger import limits
from ledger.commands.fields import (
    ACCOUNT_PATTERN,
    USER_PATTERN,
    AccountCommand,
    CommandBase,
    canonical_json,
)
from ledger.commands.lifecycle import (
    AccrueInterest,
    AdminForceClassic,
    AdminSetBorrowing,
    AgreeProTerms,
    Borrow,
    CheckMargins,
    FundInsurance,
    RecordProQuiz,
    Repay,
    SetAutoTopUp,
    SetBnbDiscount,
    SetProJurisdiction,
    SettleTrade,
    StartCoolingOff,
    SwitchMode,
)
from ledger.commands.movements import CompleteVerification, TransferIn, TransferOut
from ledger.commands.parameters import (
    ListAsset,
    MarkPrices,
    SetAccountQuota,
    SetBorrowTerms,
    SetCollateralCap,
    SetMaintenanceBrackets,
    SetMarginThresholds,
    SetPlatformRules,
)

COMMAND_TYPES: tuple[type[CommandBase], ...] = (
    ListAsset,
    SetCollateralCap,
    SetAccountQuota,
    MarkPrices,
    SetBorrowTerms,
    SetMarginThresholds,
    SetPlatformRules,
    SetMaintenanceBrackets,
    TransferIn,
    CompleteVerification,
    TransferOut,
    Borrow,
    Repay,
    AccrueInterest,
    RecordProQuiz,
    AgreeProTerms,
    SetProJurisdiction,
    StartCoolingOff,
    SetBnbDiscount,
    AdminSetBorrowing,
    SettleTrade,
    SwitchMode,
    AdminForceClassic,
    CheckMargins,
    FundInsurance,
    SetAutoTopUp,
)
Command = Annotated[
    ListAsset
    | SetCollateralCap
    | SetAccountQuota
    | MarkPrices
    | SetBorrowTerms
    | SetMarginThresholds
    | SetPlatformRules
    | SetMaintenanceBrackets
    | TransferIn
    | CompleteVerification
    | TransferOut
    | Borrow
    | Repay
    | AccrueInterest
    | RecordProQuiz
    | AgreeProTerms
    | SetProJurisdiction
    | StartCoolingOff
    | SetBnbDiscount
    | AdminSetBorrowing
    | SettleTrade
    | SwitchMode
    | AdminForceClassic
    | CheckMargins
    | FundInsurance
    | SetAutoTopUp,
    Field(discriminator="type"),
]
assert set(get_args(get_args(Command)[0])) == set(COMMAND_TYPES), "one list of commands"
command_adapter: TypeAdapter[Command] = TypeAdapter(Command)


class FieldError(BaseModel):
    field: str
    problem: str


class CommandInvalid(Exception):
    """A command that could not be understood; nothing about it is recorded."""

    def __init__(self, errors: list[FieldError], request_id: str | None = None) -> None:
        super().__init__("; ".join(f"{e.field}: {e.problem}" for e in errors))
        self.errors = errors
        self.request_id = request_id


_PROBLEM_TEXT = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this command",
    "string_pattern_mismatch": "has an invalid format",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "string_type": "must be a string",
    "dict_type": "must be a JSON object",
    "list_type": "must be a JSON list",
    "literal_error": "must be one of the documented values",
}


def _field_errors(error: ValidationError) -> list[FieldError]:
    errors = []
    for item in error.errors():
        location = [str(p) for p in item["loc"] if p != "[key]"]
        # Drop the union tag pydantic puts first (e.g. "transfer_in.quantity" -> "quantity").
        if location and location[0] in _TYPE_NAMES:
            location = location[1:]
        field = ".".join(location) or "line"
        kind = item["type"]
        if kind == "union_tag_invalid":
            given = item["input"].get("type") if isinstance(item.get("input"), dict) else None
            field, problem = "type", f"unknown command type {given!r}"
        elif kind == "union_tag_not_found":
            field, problem = "type", "is required"
        elif kind in _CROSS_FIELD_ERRORS:
            field, problem = _CROSS_FIELD_ERRORS[kind], item["msg"]
        elif kind == "string_pattern_mismatch" and field.split(".")[0] in _PATTERN_HINTS:
            problem = _PATTERN_HINTS[field.split(".")[0]]
        else:
            problem = _PROBLEM_TEXT.get(kind, item["msg"])
        errors.append(FieldError(field=field, problem=problem))
    return errors


# Checks across fields run on the whole model; the error names the field a person would change.
_CROSS_FIELD_ERRORS = {
    "bands": "band_c_ratio_min",
    "same_asset": "buy_asset",
    "top_up_asset": "asset",
}
_TYPE_NAMES = {t.model_fields["type"].annotation.__args__[0] for t in COMMAND_TYPES}  # type: ignore[union-attr]
_PATTERN_HINTS = {
    "request_id": "must be 1-128 characters of A-Z a-z 0-9 . _ : -",
    "transfer_request_id": "must be 1-128 characters of A-Z a-z 0-9 . _ : -",
    "user": "must be 1-64 characters of A-Z a-z 0-9 . _ -",
    "asset": "must be 2-20 upper-case letters or digits",
    "prices": "asset symbols must be 2-20 upper-case letters or digits",
    "actor": "must be user:<id>, admin:<id>, job:<name>, engine:<name> or system",
}


def parse_command(data: Any) -> CommandBase:
    """A validated command from a decoded JSON object; raises CommandInvalid naming each field."""
    request_id = data.get("request_id") if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise CommandInvalid([FieldError(field="line", problem="must be a JSON object")])
    try:
        command = command_adapter.validate_python(data)
    except ValidationError as error:
        raise CommandInvalid(
            _field_errors(error), request_id if isinstance(request_id, str) else None
        ) from None
    assert isinstance(command, CommandBase)
    return command


def parse_line(raw: bytes | str) -> CommandBase:
    """A command from one JSON line; numbers are parsed exactly, never through a float."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogateescape")
    if len(raw) > limits.SUBMIT_LINE_BYTES_MAX:
        raise CommandInvalid(
            [FieldError(field="line", problem=f"longer than {limits.SUBMIT_LINE_BYTES_MAX} bytes")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CommandInvalid(
            [FieldError(field="line", problem=f"is not valid UTF-8 (byte {error.start})")]
        ) from None
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=lambda name: name)
    except json.JSONDecodeError as error:
        raise CommandInvalid(
            [FieldError(field="line", problem=f"malformed JSON: {error.msg}")]
        ) from None
    return parse_command(data)


__all__ = [
    "ACCOUNT_PATTERN",
    "COMMAND_TYPES",
    "USER_PATTERN",
    "AccountCommand",
    "AccrueInterest",
    "AdminForceClassic",
    "AdminSetBorrowing",
    "AgreeProTerms",
    "Borrow",
    "CheckMargins",
    "CommandBase",
    "CommandInvalid",
    "CompleteVerification",
    "FieldError",
    "FundInsurance",
    "ListAsset",
    "MarkPrices",
    "RecordProQuiz",
    "Repay",
    "SetAccountQuota",
    "SetAutoTopUp",
    "SetBnbDiscount",
    "SetBorrowTerms",
    "SetCollateralCap",
    "SetMaintenanceBrackets",
    "SetMarginThresholds",
    "SetPlatformRules",
    "SetProJurisdiction",
    "SettleTrade",
    "StartCoolingOff",
    "SwitchMode",
    "TransferIn",
    "TransferOut",
    "canonical_json",
    "parse_command",
    "parse_line",
]
