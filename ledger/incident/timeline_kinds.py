"""The kinds of timeline lines and what a line holds (the timeline's vocabulary), with the
helpers every line's builder shares."""

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from ledger.money import format_plain

Figure = str | bool | None


class TimelineKind(StrEnum):
    PRICE_MARK = "price_mark"
    BAND_TRANSITION = "band_transition"
    TRANSFER_IN = "transfer_in"
    TRANSFER_IN_REFUSED = "transfer_in_refused"
    TRANSFER_OUT = "transfer_out"
    BORROW = "borrow"
    REPAY = "repay"
    TRADE = "trade"
    MARGIN_CALL = "margin_call"
    TOP_UP = "top_up"
    TOP_UP_BLOCKED = "top_up_blocked"
    LIQUIDATION = "liquidation"
    INSURANCE_FUND = "insurance_fund"
    PARAMETER_CHANGE = "parameter_change"
    ACCOUNT_OPENED = "account_opened"
    MODE_SWITCH = "mode_switch"


class Line(BaseModel):
    """An event's part of a timeline entry (the entry adds where and when it was recorded)."""

    model_config = ConfigDict(frozen=True)

    kind: TimelineKind
    account: str | None
    asset: str | None
    figures: dict[str, Figure]
    text: str


class Subject(NamedTuple):
    """Who an event concerns, which its own fields may not say: the account of an account
    event (its aggregate id is a uuid) and the symbol of an asset's or pool's event."""

    account: str | None
    symbol: str | None


def plain(value: Decimal | None) -> str | None:
    return None if value is None else format_plain(value)


def quantities(values: Mapping[str, Decimal]) -> str:
    return ", ".join(f"{format_plain(q)} {asset}" for asset, q in sorted(values.items())) or "-"


def cap_figures(decision: Mapping[str, Any]) -> dict[str, Figure]:
    """The cap rule's figures of a decision context (DOMAIN.md §3), when it has them."""
    names = ("band", "total", "upper_limit", "ratio", "q_max", "price_usdt")
    return {name: decision[name] for name in names if name in decision}


def cap_text(decision: Mapping[str, Any]) -> str:
    if "q_max" not in decision:
        return ""
    return f" (band {decision.get('band')}, q_max {decision['q_max']})"
