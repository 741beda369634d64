"""`ledger whatif --set PARAM=VALUE`: the parameter overrides a counterfactual replay decides
under, parsed and checked with the command models' own field types.

PARAM names (the parameter events' own field names):
- `ASSET.upper_limit`, `ASSET.fixed_quota_usdt`, `ASSET.band_b_ratio_min`,
  `ASSET.band_c_ratio_min`: the max collateral rule of a capped asset (`set_collateral_cap`);
- `ASSET.collateral_ladder`: a haircut ladder as JSON, `[{"up_to_usdt": "100000", "ratio": "1"},
  {"up_to_usdt": null, "ratio": "0.5"}]` (the `list_asset` field);
- `MODE.transfer_out_level_min`, `MODE.borrow_level_min`, `MODE.margin_call_level`,
  `MODE.liquidation_level` with MODE one of `classic_3x`, `classic_5x`, `pro`, `isolated`
  (`set_margin_thresholds`);
- `liquidation_fee_ratio`, `margin_call_interval_hours`, `mode_switches_per_day_max`,
  `pro_wallet_value_min_usdt`, `pro_switch_level_min`, `bnb_interest_discount_ratio`
  (`set_platform_rules`).
"""

import json
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ledger.commands.fields import ASSET_PATTERN, Quantity, Ratio
from ledger.commands.parameters import CollateralBracketIn, check_ascending_brackets
from ledger.money import format_plain
from ledger.params import CollateralBracket, MarginThresholds

CAP_FIELDS: dict[str, Any] = {
    "upper_limit": Quantity,
    "fixed_quota_usdt": Quantity,
    "band_b_ratio_min": Ratio,
    "band_c_ratio_min": Ratio,
}
LADDER_FIELD = "collateral_ladder"
MODES = ("classic_3x", "classic_5x", "pro", "isolated")
THRESHOLD_FIELDS = tuple(MarginThresholds.model_fields)
PLATFORM_FIELDS: dict[str, Any] = {
    "liquidation_fee_ratio": Ratio,
    "margin_call_interval_hours": Annotated[int, Field(strict=True, ge=0, le=24 * 366)],
    "mode_switches_per_day_max": Annotated[int, Field(strict=True, ge=0, le=1000)],
    "pro_wallet_value_min_usdt": Quantity,
    "pro_switch_level_min": Quantity,
    "bnb_interest_discount_ratio": Ratio,
}
PARAM_NAMES_HELP = (
    "ASSET.upper_limit, ASSET.fixed_quota_usdt, ASSET.band_b_ratio_min, ASSET.band_c_ratio_min, "
    "ASSET.collateral_ladder (JSON list of {up_to_usdt, ratio}), "
    f"MODE.{{{','.join(THRESHOLD_FIELDS)}}} with MODE in {', '.join(MODES)}, "
    f"and the platform rules {', '.join(PLATFORM_FIELDS)}"
)


class OverrideInvalid(ValueError):
    """A `--set PARAM=VALUE` the replay cannot use: names the PARAM and the problem."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"--set {param}: {problem}")
        self.param = param
        self.problem = problem


class ParameterOverrides(BaseModel):
    """What a counterfactual replay changes: each group keyed as its parameter command is."""

    model_config = ConfigDict(frozen=True)

    cap: dict[str, dict[str, Decimal]] = {}  # asset -> set_collateral_cap field -> value
    ladders: dict[str, tuple[CollateralBracket, ...]] = {}  # asset -> collateral ladder
    thresholds: dict[str, dict[str, Decimal]] = {}  # mode -> set_margin_thresholds field
    platform_rules: dict[str, Decimal | int] = {}  # set_platform_rules field -> value

    @property
    def is_empty(self) -> bool:
        return not (self.cap or self.ladders or self.thresholds or self.platform_rules)

    def described(self) -> dict[str, Any]:
        """The overrides as PARAM -> VALUE text, the way they were given."""
        shown: dict[str, Any] = {}
        for asset, fields in sorted(self.cap.items()):
            shown |= {f"{asset}.{k}": _plain(v) for k, v in sorted(fields.items())}
        for asset, ladder in sorted(self.ladders.items()):
            shown[f"{asset}.{LADDER_FIELD}"] = [
                {"up_to_usdt": _plain(b.up_to_usdt), "ratio": _plain(b.ratio)} for b in ladder
            ]
        for mode, fields in sorted(self.thresholds.items()):
            shown |= {f"{mode}.{k}": _plain(v) for k, v in sorted(fields.items())}
        shown |= {k: _plain(v) for k, v in sorted(self.platform_rules.items())}
        return shown


def parse_overrides(settings: list[str]) -> ParameterOverrides:
    """`PARAM=VALUE` texts into typed overrides; OverrideInvalid names the first bad one."""
    cap: dict[str, dict[str, Decimal]] = {}
    ladders: dict[str, tuple[CollateralBracket, ...]] = {}
    thresholds: dict[str, dict[str, Decimal]] = {}
    platform: dict[str, Decimal | int] = {}
    seen: set[str] = set()
    for setting in settings:
        param, separator, text = setting.partition("=")
        param = param.strip()
        if not separator or not param:
            raise OverrideInvalid(setting, "expected PARAM=VALUE")
        if param in seen:
            raise OverrideInvalid(param, "given twice")
        seen.add(param)
        owner, dot, field = param.rpartition(".")
        if not dot and field in PLATFORM_FIELDS:
            platform[field] = _value(param, PLATFORM_FIELDS[field], text)
        elif owner in MODES and field in THRESHOLD_FIELDS:
            thresholds.setdefault(owner, {})[field] = _value(param, Quantity, text)
        elif dot and field in CAP_FIELDS and _is_asset(owner):
            cap.setdefault(owner, {})[field] = _value(param, CAP_FIELDS[field], text)
        elif dot and field == LADDER_FIELD and _is_asset(owner):
            ladders[owner] = _ladder(param, text)
        else:
            raise OverrideInvalid(param, f"unknown parameter; known: {PARAM_NAMES_HELP}")
    for asset, fields in cap.items():
        low, high = fields.get("band_b_ratio_min"), fields.get("band_c_ratio_min")
        if low is not None and high is not None and not 0 < low < high < 1:
            raise OverrideInvalid(
                f"{asset}.band_c_ratio_min", "must be above band_b_ratio_min, both below 1"
            )
    return ParameterOverrides(
        cap=cap, ladders=ladders, thresholds=thresholds, platform_rules=platform
    )


def _is_asset(owner: str) -> bool:
    return re.fullmatch(ASSET_PATTERN, owner) is not None


def _value(param: str, kind: Any, text: str) -> Any:
    value: Any = text.strip()
    if kind is not Quantity and kind is not Ratio:
        try:
            value = int(value)
        except ValueError:
            raise OverrideInvalid(param, f"{text!r} is not a whole number") from None
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as error:
        raise OverrideInvalid(param, f"{text!r}: {_problem(error)}") from None


def _ladder(param: str, text: str) -> tuple[CollateralBracket, ...]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise OverrideInvalid(param, f"not JSON: {error}") from None
    try:
        brackets = TypeAdapter(list[CollateralBracketIn]).validate_python(data)
    except ValidationError as error:
        raise OverrideInvalid(param, _problem(error)) from None
    if not brackets:
        raise OverrideInvalid(param, "a ladder needs at least one bracket")
    try:
        check_ascending_brackets([b.up_to_usdt for b in brackets])
    except ValueError as error:  # pydantic-core's custom errors are ValueErrors
        raise OverrideInvalid(param, str(error)) from None
    return tuple(CollateralBracket(up_to_usdt=b.up_to_usdt, ratio=b.ratio) for b in brackets)


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _plain(value: Decimal | int | None) -> str | int | None:
    return format_plain(value) if isinstance(value, Decimal) else value
