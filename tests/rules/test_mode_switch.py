"""Cross Margin mode switches (DOMAIN.md §6): the requirements, the levels, the daily limit."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ledger.params import MARGIN_THRESHOLDS_DEFAULT, PLATFORM_RULES_DEFAULT
from ledger.rules.mode_switch import (
    SwitchDecision,
    SwitchVerdict,
    decide_mode_switch,
    switches_on_day,
)
from ledger.rules.valuation import LevelKind, Valuation

# A healthy cross wallet: 10,000 USDT of collateral against 2,000 of debt; CML 5, and a Pro level
# of (10,000 - 2,000) / 50 = 160 with 2.5% maintenance margin.
HEALTHY = Valuation(
    total_value_usdt=Decimal(10000),
    collateral_value_usdt=Decimal(10000),
    debt_usdt=Decimal(2000),
    maintenance_margin_usdt=Decimal(50),
    open_order_loss_usdt=Decimal(0),
)


def valuation(
    *,
    total: str = "10000",
    collateral: str = "10000",
    debt: str = "2000",
    maintenance: str = "50",
    open_order_loss: str = "0",
) -> Valuation:
    return Valuation(
        total_value_usdt=Decimal(total),
        collateral_value_usdt=Decimal(collateral),
        debt_usdt=Decimal(debt),
        maintenance_margin_usdt=Decimal(maintenance),
        open_order_loss_usdt=Decimal(open_order_loss),
    )


def decide(
    to_mode: str,
    *,
    from_mode: str | None = None,
    switches_today: int = 0,
    quiz: bool = True,
    terms: bool = True,
    jurisdiction: bool = True,
    value: Valuation = HEALTHY,
) -> SwitchDecision:
    if from_mode is None:
        from_mode = "classic_3x" if to_mode == "pro" else "pro"
    return decide_mode_switch(
        from_mode=from_mode,
        to_mode=to_mode,
        switches_today=switches_today,
        pro_quiz_passed=quiz,
        pro_terms_agreed=terms,
        pro_jurisdiction_supported=jurisdiction,
        valuation=value,
        target_thresholds=MARGIN_THRESHOLDS_DEFAULT[to_mode],
        platform_rules=PLATFORM_RULES_DEFAULT,
    )


@pytest.mark.parametrize(
    ("switches_today", "quiz", "terms", "jurisdiction", "value", "verdict"),
    [
        (0, True, True, True, HEALTHY, SwitchVerdict.ACCEPTED),
        (4, True, True, True, HEALTHY, SwitchVerdict.ACCEPTED),
        (5, True, True, True, HEALTHY, SwitchVerdict.MODE_SWITCH_LIMIT),
        (6, True, True, True, HEALTHY, SwitchVerdict.MODE_SWITCH_LIMIT),
        (5, False, False, False, valuation(total="0"), SwitchVerdict.MODE_SWITCH_LIMIT),
        (0, False, True, True, HEALTHY, SwitchVerdict.PRO_QUIZ_NOT_PASSED),
        (0, False, False, False, valuation(total="0"), SwitchVerdict.PRO_QUIZ_NOT_PASSED),
        (0, True, False, True, HEALTHY, SwitchVerdict.PRO_TERMS_NOT_AGREED),
        (0, True, False, False, valuation(total="0"), SwitchVerdict.PRO_TERMS_NOT_AGREED),
        (0, True, True, False, HEALTHY, SwitchVerdict.PRO_JURISDICTION_UNSUPPORTED),
        (0, True, True, False, valuation(total="0"), SwitchVerdict.PRO_JURISDICTION_UNSUPPORTED),
        (0, True, True, True, valuation(total="100"), SwitchVerdict.WALLET_VALUE_TOO_LOW),
        (
            0,
            True,
            True,
            True,
            valuation(total="100", open_order_loss="1000000"),
            SwitchVerdict.WALLET_VALUE_TOO_LOW,
        ),
        (0, True, True, True, valuation(open_order_loss="9000"), SwitchVerdict.MARGIN_LEVEL),
    ],
    ids=[
        "all-met",
        "fifth-switch-of-the-day",
        "sixth-switch-refused",
        "past-the-limit",
        "limit-checked-first",
        "quiz-not-passed",
        "quiz-checked-before-terms-jurisdiction-wallet",
        "terms-not-agreed",
        "terms-checked-before-jurisdiction-and-wallet",
        "jurisdiction-unsupported",
        "jurisdiction-checked-before-wallet",
        "wallet-too-low",
        "wallet-checked-before-level",
        "pro-level-too-low",
    ],
)
def test_classic_to_pro_requires_every_condition_in_a_fixed_order(
    switches_today: int,
    quiz: bool,
    terms: bool,
    jurisdiction: bool,
    value: Valuation,
    verdict: SwitchVerdict,
) -> None:
    decision = decide(
        "pro",
        switches_today=switches_today,
        quiz=quiz,
        terms=terms,
        jurisdiction=jurisdiction,
        value=value,
    )
    assert decision.verdict is verdict
    assert decision.is_accepted is (verdict is SwitchVerdict.ACCEPTED)
    assert (decision.level_kind, decision.level_min) == (LevelKind.PRO_MARGIN_LEVEL, Decimal(2))
    assert decision.wallet_value_min_usdt == Decimal(5000)


@pytest.mark.parametrize(
    ("total", "verdict"),
    [
        ("4999.99999999", SwitchVerdict.WALLET_VALUE_TOO_LOW),
        ("5000", SwitchVerdict.WALLET_VALUE_TOO_LOW),
        ("5000.00000001", SwitchVerdict.ACCEPTED),
    ],
    ids=["just-below-5000", "exactly-5000-refused", "just-above-5000"],
)
def test_pro_needs_a_wallet_worth_strictly_more_than_5000(
    total: str, verdict: SwitchVerdict
) -> None:
    """The total asset value counts, without haircuts: a collateral value of 1 does not matter
    when there is no debt."""
    decision = decide(
        "pro", value=valuation(total=total, collateral="1", debt="0", maintenance="0")
    )
    assert decision.verdict is verdict


@pytest.mark.parametrize(
    ("open_order_loss", "level", "verdict"),
    [
        ("0", "160", SwitchVerdict.ACCEPTED),
        ("7899.99999999", "2.0000000002", SwitchVerdict.ACCEPTED),
        ("7900", "2", SwitchVerdict.MARGIN_LEVEL),
        ("7900.00000001", "1.9999999998", SwitchVerdict.MARGIN_LEVEL),
        ("8000", "0", SwitchVerdict.MARGIN_LEVEL),
        ("9000", "-20", SwitchVerdict.MARGIN_LEVEL),
    ],
    ids=[
        "no-open-order-loss",
        "just-above-2",
        "exactly-2-refused",
        "just-below-2",
        "no-net-collateral-left",
        "negative-net-collateral",
    ],
)
def test_the_resulting_pro_level_counts_the_open_order_loss(
    open_order_loss: str, level: str, verdict: SwitchVerdict
) -> None:
    """ML_pro = (collateral 10,000 - debt 2,000 - open order loss) / maintenance margin 50."""
    decision = decide("pro", value=valuation(open_order_loss=open_order_loss))
    assert decision.verdict is verdict
    context = decision.context()
    assert Decimal(context["pro_margin_level_after"]) == Decimal(level)
    assert context["open_order_loss_usdt"] == open_order_loss


@pytest.mark.parametrize(
    ("collateral", "debt", "maintenance", "verdict"),
    [
        ("5200.00000001", "5000", "100", SwitchVerdict.ACCEPTED),
        ("5200", "5000", "100", SwitchVerdict.MARGIN_LEVEL),
        ("5199.99999999", "5000", "100", SwitchVerdict.MARGIN_LEVEL),
        ("6000", "5000", "500", SwitchVerdict.MARGIN_LEVEL),
        ("6000", "0", "0", SwitchVerdict.ACCEPTED),
    ],
    ids=[
        "haircut-value-just-above",
        "haircut-value-exactly-at-2",
        "haircut-value-just-below",
        "larger-maintenance-margin",
        "no-debt-is-infinite",
    ],
)
def test_the_pro_level_uses_haircut_collateral_and_maintenance_margin(
    collateral: str, debt: str, maintenance: str, verdict: SwitchVerdict
) -> None:
    """The total value (20,000) passes the wallet minimum; the level uses the haircut value."""
    value = valuation(total="20000", collateral=collateral, debt=debt, maintenance=maintenance)
    assert decide("pro", value=value).verdict is verdict


@pytest.mark.parametrize(
    ("to_mode", "from_mode", "collateral", "verdict"),
    [
        ("classic_3x", "pro", "1500.00000001", SwitchVerdict.ACCEPTED),
        ("classic_3x", "pro", "1500", SwitchVerdict.MARGIN_LEVEL),
        ("classic_3x", "pro", "1499.99999999", SwitchVerdict.MARGIN_LEVEL),
        ("classic_5x", "pro", "1250.00000001", SwitchVerdict.ACCEPTED),
        ("classic_5x", "pro", "1250", SwitchVerdict.MARGIN_LEVEL),
        ("classic_5x", "pro", "1249.99999999", SwitchVerdict.MARGIN_LEVEL),
        ("classic_3x", "classic_5x", "1500", SwitchVerdict.MARGIN_LEVEL),
        ("classic_3x", "classic_5x", "1500.00000001", SwitchVerdict.ACCEPTED),
        ("classic_5x", "classic_3x", "1250", SwitchVerdict.MARGIN_LEVEL),
        ("classic_5x", "classic_3x", "1250.00000001", SwitchVerdict.ACCEPTED),
    ],
    ids=[
        "pro-to-3x-just-above-1.5",
        "pro-to-3x-exactly-1.5-refused",
        "pro-to-3x-just-below-1.5",
        "pro-to-5x-just-above-1.25",
        "pro-to-5x-exactly-1.25-refused",
        "pro-to-5x-just-below-1.25",
        "5x-to-3x-exactly-1.5-refused",
        "5x-to-3x-just-above-1.5",
        "3x-to-5x-exactly-1.25-refused",
        "3x-to-5x-just-above-1.25",
    ],
)
def test_to_classic_the_resulting_cml_must_exceed_the_initial_risk_ratio(
    to_mode: str, from_mode: str, collateral: str, verdict: SwitchVerdict
) -> None:
    """CML = collateral value / debt of 1,000; the open order loss plays no part in Classic."""
    value = valuation(
        total="100000", collateral=collateral, debt="1000", maintenance="25", open_order_loss="999"
    )
    decision = decide(to_mode, from_mode=from_mode, value=value)
    assert decision.verdict is verdict
    assert decision.level_kind is LevelKind.COLLATERAL_MARGIN_LEVEL
    assert decision.level_min == MARGIN_THRESHOLDS_DEFAULT[to_mode].borrow_level_min
    assert decision.wallet_value_min_usdt is None


def test_to_classic_needs_no_pro_requirement_nor_wallet_value() -> None:
    value = valuation(total="0", collateral="0", debt="0", maintenance="0")
    decision = decide("classic_3x", quiz=False, terms=False, jurisdiction=False, value=value)
    assert decision.verdict is SwitchVerdict.ACCEPTED
    assert decision.context()["wallet_value_min_usdt"] is None


@pytest.mark.parametrize(
    ("to_mode", "from_mode"),
    [("classic_3x", "pro"), ("classic_5x", "classic_3x"), ("classic_3x", "classic_5x")],
    ids=["pro-to-3x", "3x-to-5x", "5x-to-3x"],
)
def test_the_daily_limit_counts_every_direction(to_mode: str, from_mode: str) -> None:
    assert decide(to_mode, from_mode=from_mode, switches_today=4).is_accepted
    refused = decide(to_mode, from_mode=from_mode, switches_today=5)
    assert refused.verdict is SwitchVerdict.MODE_SWITCH_LIMIT
    assert (refused.context()["switches_today"], refused.context()["switches_per_day_max"]) == (
        5,
        5,
    )


def test_the_context_names_every_figure() -> None:
    context = decide("pro", value=valuation(open_order_loss="100")).context()
    assert context == {
        "from": "classic_3x",
        "to": "pro",
        "switches_today": 0,
        "switches_per_day_max": 5,
        "level_kind": "pro_margin_level",
        "level_min": "2",
        "wallet_value_min_usdt": "5000",
        "open_order_loss_usdt": "100",
        "total_value_usdt_after": "10000",
        "collateral_value_usdt_after": "10000",
        "debt_usdt_after": "2000",
        "maintenance_margin_usdt_after": "50",
        "pro_margin_level_after": "158",
    }


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


EVENING = [utc(f"2026-03-02T23:{minute}:00") for minute in (10, 20, 30, 40, 50)]


@pytest.mark.parametrize(
    ("switched_at", "at", "count"),
    [
        ([], utc("2026-03-02T12:00:00"), 0),
        (EVENING, utc("2026-03-02T23:55:00"), 5),
        (EVENING, utc("2026-03-02T23:59:59.999999"), 5),
        (EVENING, utc("2026-03-03T00:00:00"), 0),
        (EVENING, utc("2026-03-03T00:05:00"), 0),
        (EVENING, utc("2026-03-02T23:30:00"), 3),
        (
            [utc("2026-03-02T00:00:00"), *EVENING, utc("2026-03-03T00:00:00")],
            utc("2026-03-03T00:05:00"),
            1,
        ),
        ([utc("2026-03-01T23:59:59"), utc("2026-03-02T00:00:00")], utc("2026-03-02T00:00:01"), 1),
        (EVENING, utc("2026-03-09T23:55:00"), 0),
    ],
    ids=[
        "none-yet",
        "five-before-midnight",
        "last-microsecond-of-the-day",
        "midnight-starts-a-new-day",
        "just-after-midnight",
        "switches-after-at-not-counted",
        "a-switch-at-midnight-belongs-to-the-new-day",
        "a-second-before-midnight-belongs-to-the-old-day",
        "same-clock-time-another-week",
    ],
)
def test_switches_are_counted_per_utc_day(
    switched_at: list[datetime], at: datetime, count: int
) -> None:
    assert switches_on_day(switched_at, at) == count


def test_switches_are_counted_per_utc_day_whatever_the_offset_given() -> None:
    """Commands are parsed to UTC, so the ledger never passes other offsets today; the function
    promises the UTC day and should keep it for any aware datetime."""
    plus_two = timezone(timedelta(hours=2))
    minus_two = timezone(timedelta(hours=-2))
    # 00:30+02:00 on 3 March is 22:30 UTC on 2 March: a switch at 22:00 UTC is the same UTC day.
    assert (
        switches_on_day([utc("2026-03-02T22:00:00")], datetime(2026, 3, 3, 0, 30, tzinfo=plus_two))
        == 1
    )
    # 23:30-02:00 on 2 March is 01:30 UTC on 3 March: a switch at 00:10 UTC is the same UTC day.
    assert (
        switches_on_day(
            [utc("2026-03-03T00:10:00")], datetime(2026, 3, 2, 23, 30, tzinfo=minus_two)
        )
        == 1
    )


@pytest.mark.parametrize(
    ("open_order_loss", "verdict"),
    [
        ("0", SwitchVerdict.ACCEPTED),
        ("9999.99", SwitchVerdict.ACCEPTED),
        ("10000", SwitchVerdict.MARGIN_LEVEL),
        ("25000", SwitchVerdict.MARGIN_LEVEL),
    ],
    ids=["no-loss", "loss-below-collateral", "loss-equal-to-collateral", "loss-above-collateral"],
)
def test_without_debt_an_open_order_loss_that_eats_the_collateral_blocks_pro(
    open_order_loss: str, verdict: SwitchVerdict
) -> None:
    """With no liability there is no maintenance margin: the Pro level is infinite only while
    collateral minus the open order loss stays positive."""
    no_debt = valuation(debt="0", maintenance="0", open_order_loss=open_order_loss)
    assert decide("pro", value=no_debt).verdict is verdict
