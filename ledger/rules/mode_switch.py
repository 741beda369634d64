"""Cross Margin mode switches (DOMAIN.md §6): Classic 3x/5x <-> Pro, at most N per UTC day."""

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ledger.money import format_plain
from ledger.params import Frozen, MarginThresholds, PlatformRules
from ledger.rules.valuation import LevelKind, Valuation


class SwitchVerdict(StrEnum):
    ACCEPTED = "accepted"
    MODE_SWITCH_LIMIT = "mode_switch_limit"
    PRO_QUIZ_NOT_PASSED = "pro_quiz_not_passed"
    PRO_TERMS_NOT_AGREED = "pro_terms_not_agreed"
    PRO_JURISDICTION_UNSUPPORTED = "pro_jurisdiction_unsupported"
    WALLET_VALUE_TOO_LOW = "wallet_value_too_low"
    MARGIN_LEVEL = "margin_level"


class SwitchDecision(Frozen):
    from_mode: str
    to_mode: str
    switches_today: int
    switches_per_day_max: int
    level_kind: LevelKind
    level_min: Decimal
    wallet_value_min_usdt: Decimal | None
    valuation: Valuation  # of the account in the target mode (open order loss included)
    verdict: SwitchVerdict

    @property
    def is_accepted(self) -> bool:
        return self.verdict is SwitchVerdict.ACCEPTED

    def context(self) -> dict[str, Any]:
        return {
            "from": self.from_mode,
            "to": self.to_mode,
            "switches_today": self.switches_today,
            "switches_per_day_max": self.switches_per_day_max,
            "level_kind": self.level_kind.value,
            "level_min": format_plain(self.level_min),
            "wallet_value_min_usdt": None
            if self.wallet_value_min_usdt is None
            else format_plain(self.wallet_value_min_usdt),
            "open_order_loss_usdt": format_plain(self.valuation.open_order_loss_usdt),
            **self.valuation.context(self.level_kind, "_after"),
        }


def switches_on_day(switched_at: list[datetime], at: datetime) -> int:
    """Switches already made on the UTC day of `at` (both directions count)."""
    day = at.astimezone(UTC).date()
    return sum(1 for moment in switched_at if moment.astimezone(UTC).date() == day and moment <= at)


def decide_mode_switch(
    *,
    from_mode: str,
    to_mode: str,
    switches_today: int,
    pro_quiz_passed: bool,
    pro_terms_agreed: bool,
    pro_jurisdiction_supported: bool,
    valuation: Valuation,
    target_thresholds: MarginThresholds,
    platform_rules: PlatformRules,
) -> SwitchDecision:
    """To Pro: quiz, terms, jurisdiction, wallet value above the minimum, and the resulting Pro
    margin level above its minimum (haircuts and open order loss included). To Classic: the
    resulting CML above that leverage's initial risk ratio. Always: under the daily limit."""
    assert from_mode != to_mode, to_mode
    assert switches_today >= 0, switches_today
    to_pro = to_mode == "pro"
    level_kind = LevelKind.PRO_MARGIN_LEVEL if to_pro else LevelKind.COLLATERAL_MARGIN_LEVEL
    level_min = (
        platform_rules.pro_switch_level_min if to_pro else target_thresholds.borrow_level_min
    )
    wallet_min = platform_rules.pro_wallet_value_min_usdt if to_pro else None
    if switches_today >= platform_rules.mode_switches_per_day_max:
        verdict = SwitchVerdict.MODE_SWITCH_LIMIT
    elif to_pro and not pro_quiz_passed:
        verdict = SwitchVerdict.PRO_QUIZ_NOT_PASSED
    elif to_pro and not pro_terms_agreed:
        verdict = SwitchVerdict.PRO_TERMS_NOT_AGREED
    elif to_pro and not pro_jurisdiction_supported:
        verdict = SwitchVerdict.PRO_JURISDICTION_UNSUPPORTED
    elif wallet_min is not None and not valuation.total_value_usdt > wallet_min:
        verdict = SwitchVerdict.WALLET_VALUE_TOO_LOW
    elif not valuation.is_above(level_kind, level_min):
        verdict = SwitchVerdict.MARGIN_LEVEL
    else:
        verdict = SwitchVerdict.ACCEPTED
    return SwitchDecision(
        from_mode=from_mode,
        to_mode=to_mode,
        switches_today=switches_today,
        switches_per_day_max=platform_rules.mode_switches_per_day_max,
        level_kind=level_kind,
        level_min=level_min,
        wallet_value_min_usdt=wallet_min,
        valuation=valuation,
        verdict=verdict,
    )
