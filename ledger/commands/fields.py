"""Field types and the base command models shared by every command (COMMANDS.md)."""

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ledger.money import NotADecimal, check_quantity_shape, format_plain, parse_decimal
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


def _not_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise PydanticCustomError("not_negative", "must not be negative")
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
Quantity = Annotated[Decimal, BeforeValidator(_positive), BeforeValidator(_decimal), _plain]
NonNegativeQuantity = Annotated[
    Decimal, BeforeValidator(_not_negative), BeforeValidator(_decimal), _plain
]
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
        command_type = vars(self)["type"]  # each subclass's Literal field
        assert isinstance(command_type, str), command_type
        return command_type

    def default_actor(self) -> str:
        user = getattr(self, "user", None)
        return self.actor or (f"user:{user}" if user else "system")

    def payload_digest_source(self) -> str:
        """Canonical JSON of the command as given: what a retry must repeat to be a duplicate."""
        return canonical_json(self.model_dump(mode="json"))


def canonical_json(given: dict[str, Any]) -> str:
    """A command's JSON (`model_dump(mode="json")`) as its digest hashes it."""
    return json.dumps(given, sort_keys=True, separators=(",", ":"))


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
