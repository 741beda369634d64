"""Cross Margin mode switches through the Ledger, on both backends (DOMAIN.md §6)."""

from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger
from ledger.commands import CommandInvalid
from ledger.domain.account import MarginAccount
from ledger.domain.request import Request
from ledger.outcomes import Outcome
from ledger.queries import account_view
from tests.support import at, command, event_count, run, transfer_in

MIDNIGHT = 15 * 60  # minutes from T0 (2026-03-02T09:00Z) to 2026-03-03T00:00Z


@pytest.fixture
def market(ledger: Ledger) -> Ledger:
    """USDT and BTC at 20,000; USDT lends at 0.01% an hour, BTC at 0.001%."""
    for asset, rank in (("USDT", 1), ("BTC", 2)):
        assert run(ledger, command("list_asset", asset=asset, collateral_rank=rank)).is_accepted
    assert run(ledger, command("mark_prices", prices={"BTC": "20000"})).is_accepted
    for asset, rate in (("USDT", "0.0001"), ("BTC", "0.00001")):
        terms = command("set_borrow_terms", asset=asset, hourly_interest_rate=rate)
        assert run(ledger, terms).is_accepted
    return ledger


def switch(
    ledger: Ledger, user: str, to: str, minutes: float, open_order_loss: str | None = None
) -> Outcome:
    fields: dict[str, Any] = {"user": user, "to": to, "effective_at": at(minutes)}
    if open_order_loss is not None:
        fields["open_order_loss_usdt"] = open_order_loss
    return run(ledger, command("switch_mode", **fields))


def force_classic(ledger: Ledger, user: str, to: str, minutes: float) -> Outcome:
    return run(
        ledger,
        command(
            "admin_force_classic",
            user=user,
            to=to,
            note="did not complete the updated questionnaire",
            actor="admin:ops1",
            effective_at=at(minutes),
        ),
    )


def qualify(ledger: Ledger, user: str) -> None:
    """Every Pro requirement that belongs to the user: quiz passed, terms agreed, jurisdiction."""
    for data in (
        command("record_pro_quiz", user=user, passed=True),
        command("agree_pro_terms", user=user),
        command("set_pro_jurisdiction", user=user, supported=True),
    ):
        assert run(ledger, data).is_accepted


def borrow(ledger: Ledger, user: str, asset: str, quantity: str, minutes: float) -> Outcome:
    data = command(
        "borrow",
        user=user,
        account="cross",
        asset=asset,
        quantity=quantity,
        effective_at=at(minutes),
    )
    return run(ledger, data)


def mark(ledger: Ledger, price: str, minutes: float) -> None:
    data = command("mark_prices", prices={"BTC": price}, effective_at=at(minutes))
    assert run(ledger, data).is_accepted


def mode(ledger: Ledger, user: str) -> str | None:
    return account_view(ledger, f"{user}:cross").mode


def events_after(ledger: Ledger, position: int) -> list[Any]:
    return [
        ledger.mapper.to_domain_event(n)
        for n in ledger.recorder.select_notifications(
            start=position, limit=1000, inclusive_of_start=False
        )
    ]


def switch_events(ledger: Ledger, position: int, user: str) -> list[Any]:
    """The user's ModeSwitched and ModeSwitchRejected events after `position`, in order."""
    account_id = MarginAccount.create_id(user, "cross")
    return [
        e
        for e in events_after(ledger, position)
        if isinstance(e, MarginAccount.ModeSwitched | MarginAccount.ModeSwitchRejected)
        and e.originator_id == account_id
    ]


def test_a_cross_account_opens_in_classic_3x(market: Ledger) -> None:
    assert mode(market, "new") is None
    assert transfer_in(market, "new", "100", asset="USDT").is_accepted
    assert mode(market, "new") == "classic_3x"


def test_five_switches_per_utc_day_counted_across_midnight(market: Ledger) -> None:
    """Goal: the daily limit is per UTC day. Five switches 23:10-23:50 (3x and 5x alternately:
    they count too), a sixth at 23:55 is refused, one at 00:05 the next day is accepted."""
    assert transfer_in(market, "night", "1000", asset="USDT").is_accepted
    before = event_count(market)
    evening = [
        (MIDNIGHT - 50 + 10 * i, to) for i, to in enumerate(["classic_5x", "classic_3x"] * 3)
    ]
    for minutes, to in evening[:5]:
        assert switch(market, "night", to, minutes).is_accepted, (minutes, to)
    assert mode(market, "night") == "classic_5x"
    sixth = switch(market, "night", "classic_3x", MIDNIGHT - 5)
    assert (sixth.status, sixth.reason) == ("rejected", "mode_switch_limit")
    assert (sixth.context["switches_today"], sixth.context["switches_per_day_max"]) == (5, 5)
    assert sixth.message == "The mode was switched 5 times today (UTC); at most 5 switches a day."
    assert mode(market, "night") == "classic_5x"
    after_midnight = switch(market, "night", "classic_3x", MIDNIGHT + 5)
    assert after_midnight.is_accepted, after_midnight
    assert after_midnight.context["switches_today"] == 0
    assert mode(market, "night") == "classic_3x"

    recorded = switch_events(market, before, "night")
    assert [type(e).__name__ for e in recorded] == ["ModeSwitched"] * 5 + [
        "ModeSwitchRejected",
        "ModeSwitched",
    ]
    refused = recorded[5]
    assert (refused.reason, refused.to_mode, refused.request_id) == (
        "mode_switch_limit",
        "classic_3x",
        sixth.request_id,
    )
    assert refused.decision["switches_today"] == 5
    assert [e.effective_at.hour for e in recorded] == [23] * 6 + [0]
    assert [e.is_forced for e in recorded if isinstance(e, MarginAccount.ModeSwitched)] == [
        False
    ] * 6


def test_refused_switches_do_not_use_the_daily_allowance(market: Ledger) -> None:
    assert transfer_in(market, "u", "1000", asset="USDT").is_accepted
    for minutes in range(1, 8):  # seven refusals: the quiz was never passed
        assert switch(market, "u", "pro", minutes).reason == "pro_quiz_not_passed"
    for minutes, to in zip(range(10, 15), ["classic_5x", "classic_3x"] * 3, strict=False):
        assert switch(market, "u", to, minutes).is_accepted
    assert switch(market, "u", "classic_3x", 20).reason == "mode_switch_limit"


def test_classic_to_pro_with_each_requirement_missing_in_turn(market: Ledger) -> None:
    """Goal: every requirement of DOMAIN.md §6 refuses on its own, with its reason, recorded.

    Method: start with nothing but an open cross account of 3,000 USDT and fix one requirement
    after each refusal. The last one is the resulting Pro level: 6,000 USDT and 0.1 BTC borrowed
    (0.100001 with the first hour's interest: 2,000.02 USDT owed, 50.0005 maintenance margin).
    An open order loss of 5,899.979 leaves (8,000 - 2,000.02 - 5,899.979) / 50.0005 = 2 exactly.
    """
    user = "p"
    assert transfer_in(market, user, "3000", asset="USDT").is_accepted
    before = event_count(market)
    expected_reasons = []

    def refused(reason: str, minutes: float, open_order_loss: str | None = None) -> Outcome:
        outcome = switch(market, user, "pro", minutes, open_order_loss)
        assert (outcome.status, outcome.reason) == ("rejected", reason), outcome
        assert mode(market, user) == "classic_3x"
        expected_reasons.append(reason)
        return outcome

    refused("pro_quiz_not_passed", 1)
    assert run(market, command("record_pro_quiz", user=user, passed=False)).is_accepted
    refused("pro_quiz_not_passed", 2)
    assert run(market, command("record_pro_quiz", user=user, passed=True)).is_accepted
    refused("pro_terms_not_agreed", 3)
    assert run(market, command("agree_pro_terms", user=user)).is_accepted
    refused("pro_jurisdiction_unsupported", 4)
    assert run(market, command("set_pro_jurisdiction", user=user, supported=False)).is_accepted
    refused("pro_jurisdiction_unsupported", 5)
    assert run(market, command("set_pro_jurisdiction", user=user, supported=True)).is_accepted
    low = refused("wallet_value_too_low", 6)
    assert low.message == (
        "Switching to Pro requires a cross wallet worth more than 5000 USDT; it is worth 3000 USDT."
    )
    assert transfer_in(market, user, "2000", asset="USDT", effective_at=at(7)).is_accepted
    refused("wallet_value_too_low", 8)  # exactly 5,000: not more than 5,000
    assert transfer_in(market, user, "1000", asset="USDT", effective_at=at(9)).is_accepted
    assert borrow(market, user, "BTC", "0.1", 10).is_accepted
    level = refused("margin_level", 11, open_order_loss="5899.979")
    assert level.context["pro_margin_level_after"] == "2"
    assert level.message == "After the switch the pro margin level would be 2; it must be above 2."

    accepted = switch(market, user, "pro", 12)
    assert accepted.is_accepted, accepted
    assert mode(market, user) == "pro"
    recorded = switch_events(market, before, user)
    assert [getattr(e, "reason", "switched") for e in recorded] == [*expected_reasons, "switched"]
    assert all(e.to_mode == "pro" for e in recorded)
    switched = recorded[-1]
    assert (switched.from_mode, switched.is_forced) == ("classic_3x", False)
    assert switched.decision["total_value_usdt_after"] == "8000"
    assert switched.decision["debt_usdt_after"] == "2000.02"


def test_pro_needs_an_open_cross_account(market: Ledger) -> None:
    qualify(market, "nobody")
    before = event_count(market)
    outcome = switch(market, "nobody", "pro", 1)
    assert (outcome.status, outcome.reason, outcome.account) == (
        "rejected",
        "account_not_open",
        "nobody:cross",
    )
    recorded = events_after(market, before)
    assert [type(e).__qualname__ for e in recorded] == ["Request.Recorded"]
    assert isinstance(recorded[0], Request.Recorded)
    assert recorded[0].outcome["reason"] == "account_not_open"


def test_a_switch_refused_for_an_unopened_account_is_recorded_on_that_account(
    market: Ledger,
) -> None:
    qualify(market, "flagged")
    opening = transfer_in(market, "flagged", "6000", asset="USDT", risk_flagged=True)
    assert opening.reason == "opening_risk_check"  # the account is registered, not open
    before = event_count(market)
    outcome = switch(market, "flagged", "pro", 1)
    assert outcome.reason == "account_not_open"
    recorded = switch_events(market, before, "flagged")
    assert [(type(e).__name__, e.reason) for e in recorded] == [
        ("ModeSwitchRejected", "account_not_open")
    ]


def test_an_open_order_loss_can_tip_the_pro_level_below_2(market: Ledger) -> None:
    """6,000 USDT and 0.1 BTC borrowed: (8,000 - 2,000.02 - loss) / 50.0005 must exceed 2, so
    the open order loss must stay below 5,899.979."""
    qualify(market, "o")
    assert transfer_in(market, "o", "6000", asset="USDT").is_accepted
    assert borrow(market, "o", "BTC", "0.1", 1).is_accepted
    below = switch(market, "o", "pro", 2, open_order_loss="5899.97900001")
    assert (below.reason, below.context["open_order_loss_usdt"]) == (
        "margin_level",
        "5899.97900001",
    )
    assert Decimal(below.context["pro_margin_level_after"]) < 2
    assert switch(market, "o", "pro", 3, open_order_loss="5899.979").reason == "margin_level"
    above = switch(market, "o", "pro", 4, open_order_loss="5899.97899999")
    assert above.is_accepted, above
    assert Decimal(above.context["pro_margin_level_after"]) > 2
    assert mode(market, "o") == "pro"


def test_pro_to_classic_3x_needs_the_resulting_cml_above_1_5(market: Ledger) -> None:
    """Goal: Pro -> Classic 3x is refused at CML <= 1.5 and accepted above it.

    Method: 1 BTC of collateral, Pro, then 30,000 USDT borrowed (3 USDT first-hour interest:
    30,003 owed). CML = (BTC price + 30,000) / 30,003 is 1.5 exactly at a BTC price of 15,004.5.
    """
    qualify(market, "lev")
    assert transfer_in(market, "lev", "1", asset="BTC").is_accepted
    assert switch(market, "lev", "pro", 1).is_accepted
    loan = borrow(market, "lev", "USDT", "30000", 2)
    assert loan.is_accepted, loan  # Pro: (50,000 - 30,003) / 750.075 > 2; Classic would refuse
    assert account_view(market, "lev:cross").interest == {"USDT": "3"}
    before = event_count(market)

    mark(market, "15000", 3)
    below = switch(market, "lev", "classic_3x", 4)
    assert (below.reason, below.context["level_min"]) == ("margin_level", "1.5")
    assert Decimal(below.context["collateral_margin_level_after"]) < Decimal("1.5")
    mark(market, "15004.5", 5)
    exactly = switch(market, "lev", "classic_3x", 6)
    assert (exactly.reason, exactly.context["collateral_margin_level_after"]) == (
        "margin_level",
        "1.5",
    )
    assert exactly.message == (
        "After the switch the collateral margin level would be 1.5; it must be above 1.5."
    )
    assert mode(market, "lev") == "pro"
    mark(market, "15004.50000001", 7)
    above = switch(market, "lev", "classic_3x", 8)
    assert above.is_accepted, above
    assert Decimal(above.context["collateral_margin_level_after"]) > Decimal("1.5")
    assert mode(market, "lev") == "classic_3x"
    recorded = switch_events(market, before, "lev")
    assert [(type(e).__name__, getattr(e, "reason", None)) for e in recorded] == [
        ("ModeSwitchRejected", "margin_level"),
        ("ModeSwitchRejected", "margin_level"),
        ("ModeSwitched", None),
    ]
    assert recorded[1].decision["collateral_margin_level_after"] == "1.5"


def test_pro_to_classic_5x_needs_only_cml_above_1_25(market: Ledger) -> None:
    """The same position at a BTC price of 15,000: CML 45,000 / 30,003 = 1.49985, refused for
    3x, accepted for 5x; then 5x -> 3x is refused for the same reason."""
    qualify(market, "lev")
    assert transfer_in(market, "lev", "1", asset="BTC").is_accepted
    assert switch(market, "lev", "pro", 1).is_accepted
    assert borrow(market, "lev", "USDT", "30000", 2).is_accepted
    mark(market, "15000", 3)
    assert switch(market, "lev", "classic_3x", 4).reason == "margin_level"
    to_5x = switch(market, "lev", "classic_5x", 5)
    assert to_5x.is_accepted, to_5x
    assert to_5x.context["level_min"] == "1.25"
    assert switch(market, "lev", "classic_3x", 6).reason == "margin_level"
    assert mode(market, "lev") == "classic_5x"


def test_admin_force_classic_is_unchecked_and_not_counted_in_the_daily_limit(
    market: Ledger,
) -> None:
    """Goal: the administrator moves a Pro account back to Classic even when the user could not
    (CML 60,000 / 50,005 < 1.25), and forced switches leave the user's 5 a day untouched.

    Method: the user switches to Pro twice more after two forced switches, then twice between
    3x and 5x: five switches of their own, all accepted; the sixth is refused."""
    user = "forced"
    qualify(market, user)
    assert transfer_in(market, user, "10000", asset="USDT").is_accepted
    before = event_count(market)
    assert switch(market, user, "pro", 1).is_accepted  # the user's 1st
    assert borrow(market, user, "USDT", "50000", 2).is_accepted
    assert switch(market, user, "classic_3x", 3).reason == "margin_level"
    forced = force_classic(market, user, "classic_3x", 4)
    assert forced.is_accepted, forced
    assert mode(market, user) == "classic_3x"
    repay = command("repay", user=user, account="cross", asset="USDT", quantity="50005")
    assert run(market, repay | {"effective_at": at(5)}).is_accepted
    assert switch(market, user, "pro", 6).is_accepted  # 2nd
    assert force_classic(market, user, "classic_5x", 7).is_accepted
    assert mode(market, user) == "classic_5x"
    assert switch(market, user, "pro", 8).is_accepted  # 3rd
    assert switch(market, user, "classic_3x", 9).is_accepted  # 4th
    assert switch(market, user, "classic_5x", 10).is_accepted  # 5th
    sixth = switch(market, user, "pro", 11)
    assert (sixth.reason, sixth.context["switches_today"]) == ("mode_switch_limit", 5)

    recorded = switch_events(market, before, user)
    forced_events = [e for e in recorded if getattr(e, "is_forced", False)]
    assert [(e.from_mode, e.to_mode, e.actor) for e in forced_events] == [
        ("pro", "classic_3x", "admin:ops1"),
        ("pro", "classic_5x", "admin:ops1"),
    ]
    assert forced_events[0].note == "did not complete the updated questionnaire"
    assert [type(e).__name__ for e in recorded].count("ModeSwitched") == 7


@pytest.mark.parametrize(
    ("user", "setup"),
    [("classic", "open"), ("stranger", "none")],
    ids=["account-in-classic", "no-account"],
)
def test_admin_force_classic_on_an_account_not_in_pro_is_invalid(
    market: Ledger, user: str, setup: str
) -> None:
    if setup == "open":
        assert transfer_in(market, user, "100", asset="USDT").is_accepted
    before = event_count(market)
    with pytest.raises(CommandInvalid) as refused:
        force_classic(market, user, "classic_5x", 1)
    assert refused.value.errors[0].field == "user"
    assert event_count(market) == before


@pytest.mark.parametrize(
    ("switches", "to"),
    [([], "classic_3x"), (["classic_5x"], "classic_5x"), (["pro"], "pro")],
    ids=["already-3x", "already-5x", "already-pro"],
)
def test_switching_to_the_current_mode_is_invalid(
    market: Ledger, switches: list[str], to: str
) -> None:
    qualify(market, "same")
    assert transfer_in(market, "same", "6000", asset="USDT").is_accepted
    for minutes, target in enumerate(switches, start=1):
        assert switch(market, "same", target, minutes).is_accepted
    before = event_count(market)
    with pytest.raises(CommandInvalid) as refused:
        switch(market, "same", to, 10)
    assert refused.value.errors[0].field == "to"
    assert event_count(market) == before


def test_in_pro_an_auto_borrow_is_judged_by_the_pro_level(market: Ledger) -> None:
    """6,000 USDT in Pro; a buy of 1.5 BTC for 30,000 USDT borrows 24,000 (2.4 interest). CML
    after is 30,000 / 24,002.4 < 1.25, which Classic would refuse; the Pro level is
    (30,000 - 24,002.4) / 600.06 > 2, so Pro accepts."""
    qualify(market, "trader")
    assert transfer_in(market, "trader", "6000", asset="USDT").is_accepted
    assert switch(market, "trader", "pro", 1).is_accepted
    data = command(
        "settle_trade",
        user="trader",
        account="cross",
        sell_asset="USDT",
        sell_quantity="30000",
        buy_asset="BTC",
        buy_quantity="1.5",
        fee_asset="BTC",
        fee_quantity="0",
        auto_borrow=True,
        effective_at=at(2),
    )
    outcome = run(market, data)
    assert outcome.is_accepted, outcome
    assert (outcome.context["level_kind"], outcome.context["level_min"]) == (
        "pro_margin_level",
        "2",
    )
    view = account_view(market, "trader:cross")
    assert (view.holdings, view.liabilities, view.interest) == (
        {"BTC": "1.5"},
        {"USDT": "24000"},
        {"USDT": "2.4"},
    )
