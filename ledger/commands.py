"""Command models (COMMANDS.md): one pydantic model per command, one union discriminated on `type`.

Parsing is the edge: a line that passes here has the right shape; checks that need the ledger's
state (is the asset listed? too many decimals for it?) happen in the application.
"""

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ledger import limits
from ledger.money import NotADecimal, check_quantity_shape, format_plain, parse_decimal
from ledger.params import (
    BAND_B_RATIO_MIN_DEFAULT,
    BAND_C_RATIO_MIN_DEFAULT,
    FIXED_QUOTA_USDT_DEFAULT,
    QUANTITY_DECIMALS_DEFAULT,
    QUOTE_ASSET,
    CollateralBracket,
)
from ledger.rules.opening_check import Channel
from ledger.times import NotATime, format_time, parse_time

REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
USER_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
ASSET_PATTERN = r"^[A-Z0-9]{2,20}$"
ACTOR_PATTERN = r"^(user|admin|job|engine):[A-Za-z0-9._:-]{1,64}$|^system$"
ACCOUNT_PATTERN = re.compile(r"^(cross|portfolio|isolated:[A-Z0-9]{4,40})$")


def _decimal(value: object) -> Decimal:
    try:
        number = parse_decimal(value)
        check_quantity_shape(number)
    except NotADecimal as error:
        raise PydanticCustomError("decimal", str(error)) from None
    return number


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise PydanticCustomError("positive", "must be greater than 0")
    return value


def _ratio(value: Decimal) -> Decimal:
    if not 0 <= value <= 1:
        raise PydanticCustomError("ratio", 'must be a fraction between 0 and 1 ("0.8", not 80)')
    return value


def _time(value: object) -> datetime:
    try:
        return parse_time(value)
    except NotATime as error:
        raise PydanticCustomError("time", str(error)) from None


_plain = PlainSerializer(lambda d: format_plain(d), return_type=str, when_used="json")
DecimalText = Annotated[Decimal, BeforeValidator(_decimal), _plain]
Quantity = Annotated[Decimal, BeforeValidator(_positive), BeforeValidator(_decimal), _plain]
Ratio = Annotated[Decimal, BeforeValidator(_ratio), BeforeValidator(_decimal), _plain]
Time = Annotated[
    datetime,
    BeforeValidator(_time),
    PlainSerializer(lambda t: format_time(t), return_type=str, when_used="json"),
]
Asset = Annotated[str, Field(pattern=ASSET_PATTERN)]
User = Annotated[str, Field(pattern=USER_PATTERN)]


class CommandBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    effective_at: Time | None = None  # None: the time it is recorded
    actor: str | None = Field(default=None, pattern=ACTOR_PATTERN)

    @property
    def command_type(self) -> str:
        command_type = self.model_dump(include={"type"})["type"]  # each subclass's Literal
        assert isinstance(command_type, str), command_type
        return command_type

    def default_actor(self) -> str:
        user = getattr(self, "user", None)
        return self.actor or (f"user:{user}" if user else "system")

    def payload_digest_source(self) -> str:
        """Canonical JSON of the command as given: what a retry must repeat to be a duplicate."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class AccountCommand(CommandBase):
    user: User
    account: str

    @field_validator("account")
    @classmethod
    def _account_kind(cls, value: str) -> str:
        if not ACCOUNT_PATTERN.match(value):
            raise PydanticCustomError(
                "account",
                'must be "cross", "portfolio" or "isolated:<PAIR>" (e.g. "isolated:BTCUSDT")',
            )
        return value

    @property
    def account_id(self) -> str:
        return f"{self.user}:{self.account}"


# --- parameters (administrators) -------------------------------------------------------------


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
        if ladder is None:
            return None
        if ladder[-1].up_to_usdt is not None:
            raise PydanticCustomError("ladder", 'the last bracket must have "up_to_usdt": null')
        bounds = [b.up_to_usdt for b in ladder[:-1]]
        if any(b is None for b in bounds):
            raise PydanticCustomError("ladder", "only the last bracket may be unbounded")
        if any(b <= a for a, b in zip([Decimal(0), *bounds], bounds, strict=False)):  # type: ignore[operator]
            raise PydanticCustomError("ladder", '"up_to_usdt" must be positive and ascending')
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


# --- collateral movements --------------------------------------------------------------------


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


Command = Annotated[
    ListAsset
    | SetCollateralCap
    | SetAccountQuota
    | MarkPrices
    | TransferIn
    | CompleteVerification
    | TransferOut,
    Field(discriminator="type"),
]
COMMAND_TYPES: tuple[type[CommandBase], ...] = (
    ListAsset,
    SetCollateralCap,
    SetAccountQuota,
    MarkPrices,
    TransferIn,
    CompleteVerification,
    TransferOut,
)
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
_CROSS_FIELD_ERRORS = {"bands": "band_c_ratio_min"}
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
