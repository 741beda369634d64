"""Borrow and repay through the Ledger, on both backends (DOMAIN.md §4-6, COMMANDS.md).

The market of most tests (all at T0 = 2026-03-02T09:00:00Z):
- USDT (rank 1): hourly rate 0.0001 unless a test sets another, minimum borrow 10 USDT;
- ETH (rank 2) at 2000 USDT with a ladder 0-1000 USDT at 100%, above at 50%: 1 ETH is worth
  2000 without haircut (ML) and 1500 with it (CML); hourly rate 0.00001;
- ABC (rank 8, two decimals) at 1 USDT, upper limit U = 1000: capped; hourly rate 0.001.
"""

import shutil
import tempfile
from collections import defaultdict
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger, limits
from ledger.commands import CommandInvalid
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.money import format_plain
from ledger.outcomes import Outcome
from ledger.queries import account_view
from projections.queries import assets_view
from tests.support import at, command, event_count, run

TINY = Decimal("0.00000001")
ETH_LADDER = [{"up_to_usdt": "1000", "ratio": "1"}, {"up_to_usdt": None, "ratio": "0.5"}]


def ratio(numerator: str, denominator: str) -> str:
    """A level as outcomes print it: 28 significant digits, plain."""
    with localcontext() as context:
        context.prec = limits.RATIO_DIGITS
        return format_plain(Decimal(numerator) / Decimal(denominator))


def set_up_market(ledger: Ledger, *, usdt_rate: str = "0.0001") -> None:
    for data in (
        command("list_asset", asset="USDT", collateral_rank=1),
        command("list_asset", asset="ETH", collateral_rank=2, collateral_ladder=ETH_LADDER),
        command("list_asset", asset="ABC", collateral_rank=8, quantity_decimals=2),
        command("set_collateral_cap", asset="ABC", upper_limit="1000"),
        command("mark_prices", prices={"ETH": "2000", "ABC": "1"}),
        command("set_borrow_terms", asset="USDT", hourly_interest_rate=usdt_rate),
        command("set_borrow_terms", asset="ETH", hourly_interest_rate="0.00001"),
        command("set_borrow_terms", asset="ABC", hourly_interest_rate="0.001"),
    ):
        outcome = run(ledger, data)
        assert outcome.is_accepted, outcome


def fund(
    ledger: Ledger,
    user: str,
    quantity: str,
    *,
    asset: str = "USDT",
    account: str = "cross",
    minute: float = 5,
) -> None:
    outcome = run(
        ledger,
        command(
            "transfer_in",
            user=user,
            account=account,
            asset=asset,
            quantity=quantity,
            effective_at=at(minute),
        ),
    )
    assert outcome.is_accepted, outcome


def movement(
    ledger: Ledger,
    type_: str,
    user: str,
    quantity: str | Decimal,
    *,
    asset: str = "USDT",
    account: str = "cross",
    minute: float = 15,
    **fields: Any,
) -> Outcome:
    """A borrow, repay or transfer_out dated `minute` minutes after T0."""
    return run(
        ledger,
        command(
            type_,
            user=user,
            account=account,
            asset=asset,
            quantity=str(quantity),
            effective_at=at(minute),
            **fields,
        ),
    )


def borrow(ledger: Ledger, user: str, quantity: str | Decimal, **fields: Any) -> Outcome:
    return movement(ledger, "borrow", user, quantity, **fields)


def repay(ledger: Ledger, user: str, quantity: str | Decimal, **fields: Any) -> Outcome:
    return movement(ledger, "repay", user, quantity, **fields)


def stored(ledger: Ledger, name: str, after: int = 0) -> list[Any]:
    """The stored events of one kind (e.g. "BorrowRejected"), read back from the store."""
    return [
        ledger.mapper.to_domain_event(n)
        for n in ledger.recorder.select_notifications(start=after + 1, limit=100_000)
        if n.topic.endswith(f".{name}")
    ]


def balances(ledger: Ledger, account_id: str) -> tuple[dict[str, str], ...]:
    view = account_view(ledger, account_id)
    return view.holdings, view.liabilities, view.interest


def asset_row(ledger: Ledger, asset: str) -> Any:
    return next(row for row in assets_view(ledger) if row.asset == asset)


# --- accepted borrows ------------------------------------------------------------------------


def test_a_borrow_lands_as_holding_and_liability_with_its_first_hour_charged(
    ledger: Ledger,
) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    before = event_count(ledger)

    outcome = borrow(ledger, "u1", "1000", request_id="b-1")

    assert outcome.status == "accepted"
    assert outcome.context["first_hour_interest"] == "0.1"  # 1000 * 0.0001
    assert outcome.context["collateral_margin_level_after"] == ratio("2000", "1000.1")
    assert balances(ledger, "u1:cross") == ({"USDT": "2000"}, {"USDT": "1000"}, {"USDT": "0.1"})
    [borrowed] = stored(ledger, "Borrowed", before)
    assert borrowed.event_id in outcome.events
    assert (borrowed.asset, borrowed.quantity, borrowed.is_auto) == ("USDT", Decimal(1000), False)
    assert borrowed.first_hour.isoformat() == "2026-03-02T09:00:00+00:00"
    assert borrowed.first_hour_interest == Decimal("0.1")
    assert (borrowed.holding_after, borrowed.liability_after) == (Decimal(2000), Decimal(1000))
    assert (borrowed.request_id, borrowed.actor) == ("b-1", "user:u1")
    assert borrowed.decision["level_kind"] == "collateral_margin_level"


def test_a_retried_borrow_is_answered_once_and_recorded_once(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    first = borrow(ledger, "u1", "100", request_id="b-same")
    before = event_count(ledger)
    again = borrow(ledger, "u1", "100", request_id="b-same")
    assert again.duplicate is True
    assert (again.status, again.events) == (first.status, first.events)
    assert event_count(ledger) == before
    assert account_view(ledger, "u1:cross").liabilities == {"USDT": "100"}


# --- refusals, each recorded ------------------------------------------------------------------


REFUSALS = [
    pytest.param(
        command(
            "set_borrow_terms",
            asset="USDT",
            hourly_interest_rate="0.0001",
            borrowable=False,
            effective_at=at(10),
        ),
        "100",
        "asset_not_borrowable",
        {"min_borrow_usdt": "10"},
        "USDT cannot be borrowed.",
        id="asset-not-borrowable",
    ),
    pytest.param(
        command(
            "admin_set_borrowing",
            user="u1",
            account="cross",
            enabled=False,
            note="questionnaire not completed",
            actor="admin:risk",
            effective_at=at(10),
        ),
        "100",
        "borrow_disabled",
        {},
        "Borrowing is disabled for this account.",
        id="borrow-disabled",
    ),
    pytest.param(
        command("start_cooling_off", user="u1", period="1d", effective_at=at(10)),
        "100",
        "cooling_off",
        {"cooling_off_until": "2026-03-03T09:10:00Z"},
        "Borrowing is paused by your cooling-off period until 2026-03-03T09:10:00Z.",
        id="cooling-off",
    ),
    pytest.param(
        None,
        "9.99999999",
        "below_min_borrow",
        {"value_usdt": "9.99999999", "min_borrow_usdt": "10"},
        "The minimum borrow is 10 USDT-equivalent; USDT 9.99999999 is worth 9.99999999 USDT.",
        id="below-min-borrow",
    ),
    pytest.param(
        None,
        "5000",
        "margin_level",
        {
            "first_hour_interest": "0.5",
            "collateral_value_usdt_after": "6000",
            "debt_usdt_after": "5000.5",
            "collateral_margin_level_before": None,
        },
        f"This borrow would take the collateral margin level to {ratio('6000', '5000.5')}, "
        "which must stay above 1.5.",
        id="margin-level",
    ),
]


@pytest.mark.parametrize(("prepare", "quantity", "reason", "figures", "message"), REFUSALS)
def test_each_borrow_refusal_is_recorded_with_its_reason_and_figures(
    ledger: Ledger,
    prepare: dict[str, Any] | None,
    quantity: str,
    reason: str,
    figures: dict[str, Any],
    message: str,
) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    if prepare is not None:
        assert run(ledger, prepare).is_accepted
    before = event_count(ledger)

    outcome = borrow(ledger, "u1", quantity, request_id="b-refused")

    assert (outcome.status, outcome.reason, outcome.account) == ("rejected", reason, "u1:cross")
    assert outcome.message == message
    [rejected] = stored(ledger, "BorrowRejected", before)
    assert rejected.event_id in outcome.events
    assert rejected.reason == reason
    assert (rejected.asset, rejected.quantity_requested) == ("USDT", Decimal(quantity))
    assert (rejected.request_id, rejected.actor) == ("b-refused", "user:u1")
    assert rejected.effective_at.isoformat() == "2026-03-02T09:15:00+00:00"
    assert rejected.decision["level_kind"] == "collateral_margin_level"
    assert rejected.decision["level_min"] == "1.5"
    assert rejected.decision["requested"] == quantity
    for key, value in figures.items():
        assert rejected.decision[key] == value, key
        assert outcome.context[key] == value, key
    assert stored(ledger, "Borrowed") == []
    assert balances(ledger, "u1:cross") == ({"USDT": "1000"}, {}, {})


def test_an_asset_without_borrow_terms_is_refused_as_not_borrowable(ledger: Ledger) -> None:
    set_up_market(ledger)
    assert run(ledger, command("list_asset", asset="XRP", collateral_rank=3)).is_accepted
    assert run(ledger, command("mark_prices", prices={"XRP": "0.5"})).is_accepted
    fund(ledger, "u1", "1000")
    before = event_count(ledger)

    outcome = borrow(ledger, "u1", "100", asset="XRP")

    assert (outcome.status, outcome.reason) == ("rejected", "asset_not_borrowable")
    [rejected] = stored(ledger, "BorrowRejected", before)
    assert rejected.decision["min_borrow_usdt"] is None


def test_a_borrow_on_an_account_never_opened_is_refused(ledger: Ledger) -> None:
    set_up_market(ledger)
    before = event_count(ledger)
    outcome = borrow(ledger, "ghost", "100")
    assert (outcome.status, outcome.reason) == ("rejected", "account_not_open")
    assert outcome.message == "The margin account ghost:cross is not open."
    assert outcome.context["status"] == "not_open"
    assert stored(ledger, "BorrowRejected") == []
    assert event_count(ledger) == before + 1  # only the request's record


def test_a_borrow_on_a_registered_but_unopened_account_is_recorded_on_it(ledger: Ledger) -> None:
    set_up_market(ledger)
    flagged = run(
        ledger,
        command(
            "transfer_in",
            user="u1",
            account="cross",
            asset="USDT",
            quantity="1000",
            risk_flagged=True,
            effective_at=at(5),
        ),
    )
    assert flagged.reason == "opening_risk_check"
    before = event_count(ledger)

    outcome = borrow(ledger, "u1", "100")

    assert (outcome.status, outcome.reason) == ("rejected", "account_not_open")
    [rejected] = stored(ledger, "BorrowRejected", before)
    assert rejected.reason == "account_not_open"
    assert rejected.decision == {"asset": "USDT", "requested": "100", "status": "not_open"}


# --- cooling-off and the administrator's switch ------------------------------------------------


def test_a_cooling_off_period_cannot_be_shortened(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    week = run(ledger, command("start_cooling_off", user="u1", period="1w", effective_at=at(10)))
    week_end = "2026-03-09T09:10:00Z"
    assert week.context["cooling_off_until"] == week_end
    day_later = 24 * 60
    shorter = run(
        ledger,
        command("start_cooling_off", user="u1", period="1d", effective_at=at(day_later)),
    )
    assert shorter.is_accepted
    assert (shorter.context["cooling_off_until"], shorter.context["extended"]) == (week_end, False)

    refused = borrow(ledger, "u1", "100", minute=3 * day_later)  # the 1d would have ended
    assert (refused.reason, refused.context["cooling_off_until"]) == ("cooling_off", week_end)
    assert borrow(ledger, "u1", "100", minute=7 * day_later + 9).reason == "cooling_off"
    assert borrow(ledger, "u1", "100", minute=7 * day_later + 10).is_accepted  # the week's end

    started = stored(ledger, "CoolingOffStarted")
    assert [(e.period, e.cooling_off_until.isoformat()) for e in started] == [
        ("1w", "2026-03-09T09:10:00+00:00"),
        ("1d", "2026-03-09T09:10:00+00:00"),
    ]


def test_a_longer_cooling_off_period_extends_a_shorter_one(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    run(ledger, command("start_cooling_off", user="u1", period="1d", effective_at=at(10)))
    longer = run(ledger, command("start_cooling_off", user="u1", period="3d", effective_at=at(70)))
    assert (longer.context["cooling_off_until"], longer.context["extended"]) == (
        "2026-03-05T10:10:00Z",
        True,
    )
    assert borrow(ledger, "u1", "100", minute=2 * 24 * 60).reason == "cooling_off"


def test_a_cooling_off_started_later_does_not_refuse_an_earlier_borrow(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    run(ledger, command("start_cooling_off", user="u1", period="1d", effective_at=at(60)))
    assert borrow(ledger, "u1", "100", minute=30).is_accepted


def test_an_administrator_disables_then_enables_borrowing(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    fund(ledger, "u2", "1000")

    def admin(enabled: bool, minute: float) -> Outcome:
        return run(
            ledger,
            command(
                "admin_set_borrowing",
                user="u1",
                account="cross",
                enabled=enabled,
                note="updated questionnaire",
                actor="admin:risk",
                effective_at=at(minute),
            ),
        )

    assert admin(False, 10).context == {
        "borrowing_enabled": False,
        "note": "updated questionnaire",
        "effective_at": "2026-03-02T09:10:00Z",
    }
    assert borrow(ledger, "u1", "100", minute=15).reason == "borrow_disabled"
    assert borrow(ledger, "u2", "100", minute=15).is_accepted  # only that account
    assert admin(True, 20).is_accepted
    assert borrow(ledger, "u1", "100", minute=25).is_accepted
    switches = stored(ledger, "BorrowingSet")
    assert [(e.enabled, e.note, e.actor) for e in switches] == [
        (False, "updated questionnaire", "admin:risk"),
        (True, "updated questionnaire", "admin:risk"),
    ]


def test_the_administrator_switch_needs_a_known_account(ledger: Ledger) -> None:
    set_up_market(ledger)
    before = event_count(ledger)
    with pytest.raises(CommandInvalid) as raised:
        run(
            ledger,
            command("admin_set_borrowing", user="nobody", account="cross", enabled=False, note="x"),
        )
    assert [e.field for e in raised.value.errors] == ["account"]
    assert event_count(ledger) == before


# --- the governing level after the borrow --------------------------------------------------------


def make_pro(ledger: Ledger, user: str) -> None:
    for data in (
        command("record_pro_quiz", user=user, passed=True, effective_at=at(6)),
        command("agree_pro_terms", user=user, effective_at=at(6)),
        command("set_pro_jurisdiction", user=user, supported=True, effective_at=at(6)),
        command("switch_mode", user=user, to="pro", effective_at=at(7)),
    ):
        outcome = run(ledger, data)
        assert outcome.is_accepted, outcome


def make_classic_5x(ledger: Ledger, user: str) -> None:
    outcome = run(ledger, command("switch_mode", user=user, to="classic_5x", effective_at=at(7)))
    assert outcome.is_accepted, outcome


# (account, funding, mode change, level kind, level min, X where the level after borrowing X
# USDT at rate 0 is exactly the minimum):
# cross Classic 3x / portfolio: (1000 + X) / X = 1.5 at X = 2000; Classic 5x: 1.25 at 4000;
# Pro (maintenance 2.5%): 10000 / (0.025 X) = 2 at X = 200000;
# isolated, 1 ETH without haircut: (2000 + X) / X = 1.5 at X = 4000.
LEVEL_CASES = [
    pytest.param("cross", "1000", "USDT", None, "collateral_margin_level", "1.5", "2000", id="3x"),
    pytest.param(
        "portfolio", "1000", "USDT", None, "collateral_margin_level", "1.5", "2000", id="portfolio"
    ),
    pytest.param(
        "cross",
        "1000",
        "USDT",
        make_classic_5x,
        "collateral_margin_level",
        "1.25",
        "4000",
        id="5x",
    ),
    pytest.param("cross", "10000", "USDT", make_pro, "pro_margin_level", "2", "200000", id="pro"),
    pytest.param(
        "isolated:ETHUSDT", "1", "ETH", None, "margin_level", "1.5", "4000", id="isolated"
    ),
]


@pytest.mark.parametrize(
    ("account", "funding", "funding_asset", "mode_change", "kind", "level_min", "exact"),
    LEVEL_CASES,
)
def test_the_level_after_a_borrow_must_be_strictly_above_the_mode_minimum(
    ledger: Ledger,
    account: str,
    funding: str,
    funding_asset: str,
    mode_change: Any,
    kind: str,
    level_min: str,
    exact: str,
) -> None:
    set_up_market(ledger, usdt_rate="0")
    fund(ledger, "u1", funding, asset=funding_asset, account=account)
    if mode_change is not None:
        mode_change(ledger, "u1")

    at_minimum = borrow(ledger, "u1", exact, account=account)
    assert (at_minimum.status, at_minimum.reason) == ("rejected", "margin_level")
    assert at_minimum.context["level_kind"] == kind
    assert at_minimum.context["level_min"] == level_min
    assert at_minimum.context[f"{kind}_after"] == level_min  # exactly at: refused

    just_above = borrow(ledger, "u1", Decimal(exact) - TINY, account=account, minute=16)
    assert just_above.status == "accepted", just_above
    assert Decimal(just_above.context[f"{kind}_after"]) > Decimal(level_min)
    view = account_view(ledger, f"u1:{account}")
    assert view.liabilities == {"USDT": str(Decimal(exact) - TINY)}


def test_isolated_ml_accepts_what_the_cross_cml_refuses(ledger: Ledger) -> None:
    """The same 1 ETH: isolated ML after borrowing 3500 = 5500 / 3500 = 1.571 > 1.5, while the
    cross account's CML = (1500 + 3500) / 3500 = 1.428 (haircut ladder) is refused."""
    set_up_market(ledger, usdt_rate="0")
    fund(ledger, "u1", "1", asset="ETH")
    fund(ledger, "u1", "1", asset="ETH", account="isolated:ETHUSDT")

    cross = borrow(ledger, "u1", "3500")
    isolated = borrow(ledger, "u1", "3500", account="isolated:ETHUSDT")

    assert (cross.reason, cross.context["collateral_value_usdt_after"]) == ("margin_level", "5000")
    assert cross.context["total_value_usdt_after"] == "5500"
    assert isolated.status == "accepted"
    assert isolated.context["level_kind"] == "margin_level"
    assert isolated.context["margin_level_after"] == ratio("5500", "3500")


def test_the_first_hours_interest_counts_in_the_level_after_the_borrow(ledger: Ledger) -> None:
    """At an hourly rate of 0.5, borrowing 800 against 1000 owes 800 + 400 after the first hour:
    CML = 1800 / 1200 = 1.5 exactly, refused; one unit less is accepted."""
    set_up_market(ledger, usdt_rate="0.5")
    fund(ledger, "u1", "1000")

    refused = borrow(ledger, "u1", "800")
    assert refused.reason == "margin_level"
    assert refused.context["first_hour_interest"] == "400"
    assert refused.context["debt_usdt_after"] == "1200"
    assert refused.context["collateral_margin_level_after"] == "1.5"

    accepted = borrow(ledger, "u1", "799.99999999", minute=16)
    assert accepted.status == "accepted"
    assert account_view(ledger, "u1:cross").interest == {"USDT": "400"}


def test_thresholds_set_later_apply_from_their_effective_at(ledger: Ledger) -> None:
    """The Classic 3x minimum raised to 3 at 09:10: a borrow dated 09:12 is judged against 3, one
    dated 09:08 (arriving later) against the 1.5 then in force."""
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    fund(ledger, "u2", "1000")
    raised = run(
        ledger,
        command(
            "set_margin_thresholds", mode="classic_3x", borrow_level_min="3", effective_at=at(10)
        ),
    )
    assert raised.is_accepted

    after = borrow(ledger, "u1", "600", minute=12)  # CML 1600 / 600.06 = 2.666
    earlier = borrow(ledger, "u2", "600", minute=8)

    assert (after.reason, after.context["level_min"]) == ("margin_level", "3")
    assert (earlier.status, earlier.context["level_min"]) == ("accepted", "1.5")


# --- isolated accounts and capped assets ------------------------------------------------------


def test_an_isolated_account_borrows_only_its_pairs_assets(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1", asset="ETH", account="isolated:ETHUSDT")
    before = event_count(ledger)

    with pytest.raises(CommandInvalid) as raised:
        borrow(ledger, "u1", "100", asset="ABC", account="isolated:ETHUSDT")

    [error] = raised.value.errors
    assert error.field == "asset"
    assert "ETH, USDT" in error.problem
    assert event_count(ledger) == before
    assert borrow(ledger, "u1", "0.01", asset="ETH", account="isolated:ETHUSDT").is_accepted
    assert borrow(ledger, "u1", "100", account="isolated:ETHUSDT", minute=16).is_accepted


def test_a_borrow_more_precise_than_the_asset_is_invalid(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    before = event_count(ledger)
    with pytest.raises(CommandInvalid) as raised:
        borrow(ledger, "u1", "20.001", asset="ABC")
    assert [e.field for e in raised.value.errors] == ["quantity"]
    assert event_count(ledger) == before


def test_borrow_and_repay_of_a_capped_asset_move_the_platform_total_past_the_cap(
    ledger: Ledger,
) -> None:
    """DOMAIN.md §3: borrows may push T past U (then transfer-ins are blocked); repays lower it."""
    set_up_market(ledger)
    fund(ledger, "u1", "800", asset="ABC")  # band A: q_max = 0.8 * 1000 - 0 = 800
    fund(ledger, "u1", "5000", minute=6)

    borrowed = borrow(ledger, "u1", "500", asset="ABC")

    assert borrowed.status == "accepted"
    assert borrowed.context["first_hour_interest"] == "0.5"
    row = asset_row(ledger, "ABC")
    assert (row.total, row.band, row.ratio) == ("1300", "D", "1.3")
    blocked = run(
        ledger,
        command(
            "transfer_in",
            user="u2",
            account="cross",
            asset="ABC",
            quantity="1",
            effective_at=at(20),
        ),
    )
    assert (blocked.reason, blocked.context["q_max"]) == ("collateral_cap", "0")

    repaid = repay(ledger, "u1", "200.5", asset="ABC", minute=30)

    assert (repaid.context["interest_paid"], repaid.context["principal_paid"]) == ("0.5", "200")
    assert asset_row(ledger, "ABC").total == "1099.5"
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    assert pool.platform_total == Decimal("1099.5")
    increases = [(e.movement, e.quantity) for e in stored(ledger, "TotalIncreased")]
    decreases = [(e.movement, e.quantity) for e in stored(ledger, "TotalDecreased")]
    assert increases == [("transfer_in", Decimal(800)), ("borrow", Decimal(500))]
    assert decreases == [("repay", Decimal("200.5"))]


def test_an_isolated_borrow_of_a_capped_asset_leaves_the_platform_total(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000", account="isolated:ABCUSDT")
    assert borrow(ledger, "u1", "100", asset="ABC", account="isolated:ABCUSDT").is_accepted
    row = asset_row(ledger, "ABC")
    assert (row.total, row.isolated_total) == ("0", "100")
    assert stored(ledger, "TotalIncreased") == []


# --- repay -------------------------------------------------------------------------------------


def test_repay_pays_interest_first_and_never_more_than_owed_or_held(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1", asset="ETH")  # CML value 1500
    assert borrow(ledger, "u1", "500").context["first_hour_interest"] == "0.05"

    part = repay(ledger, "u1", "0.03", minute=16)  # part of the interest
    rest = repay(ledger, "u1", "10.02", minute=17)  # the rest of it, and some principal
    paid = [(o.context["interest_paid"], o.context["principal_paid"]) for o in (part, rest)]
    assert paid == [("0.03", "0"), ("0.02", "10")]
    assert balances(ledger, "u1:cross")[1:] == ({"USDT": "490"}, {})
    out = movement(ledger, "transfer_out", "u1", "450", minute=18)
    assert out.is_accepted  # CML after (1500 + 39.95) / 490 > 2

    over_debt = repay(ledger, "u1", "490.00000001", minute=20)
    over_holding = repay(ledger, "u1", "40", minute=21)
    assert (over_debt.reason, over_debt.context["liability"], over_debt.context["interest"]) == (
        "repay_exceeds_debt",
        "490",
        "0",
    )
    assert (over_holding.reason, over_holding.context["holding"]) == (
        "insufficient_balance",
        "39.95",
    )
    assert over_holding.message == "USDT: the account holds 39.95, less than 40."
    rejected = stored(ledger, "RepayRejected")
    assert [(e.reason, e.quantity_requested) for e in rejected] == [
        ("repay_exceeds_debt", Decimal("490.00000001")),
        ("insufficient_balance", Decimal(40)),
    ]

    assert repay(ledger, "u1", "39.95", minute=22).is_accepted
    fund(ledger, "u1", "450.05", minute=23)
    assert repay(ledger, "u1", "450.05", minute=24).is_accepted
    assert balances(ledger, "u1:cross") == ({"ETH": "1"}, {}, {})
    repaid = stored(ledger, "Repaid")
    assert [(e.interest_paid, e.principal_paid) for e in repaid] == [
        (Decimal("0.03"), Decimal(0)),
        (Decimal("0.02"), Decimal(10)),
        (Decimal(0), Decimal("39.95")),
        (Decimal(0), Decimal("450.05")),
    ]
    assert repaid[-1].liability_after == repaid[-1].interest_after == 0


def test_a_repay_with_nothing_owed_is_refused(ledger: Ledger) -> None:
    set_up_market(ledger)
    fund(ledger, "u1", "1000")
    outcome = repay(ledger, "u1", "1")
    assert (outcome.reason, outcome.context["liability"]) == ("repay_exceeds_debt", "0")


# --- transfer-out with debt ------------------------------------------------------------------


def test_a_transfer_out_with_debt_keeps_the_level_strictly_above_2(ledger: Ledger) -> None:
    """1000 USDT + 500 borrowed (rate 0): CML after taking X out = (1500 - X) / 500 > 2."""
    set_up_market(ledger, usdt_rate="0")
    fund(ledger, "u1", "1000")
    assert borrow(ledger, "u1", "500").is_accepted

    refused = movement(ledger, "transfer_out", "u1", "500", minute=20)
    assert (refused.reason, refused.context["collateral_margin_level_after"]) == (
        "margin_level",
        "2",
    )
    [rejected] = stored(ledger, "TransferOutRejected")
    assert rejected.decision["collateral_margin_level_min"] == "2"
    accepted = movement(ledger, "transfer_out", "u1", "499.99999999", minute=21)
    assert accepted.is_accepted
    assert account_view(ledger, "u1:cross").holdings == {"USDT": "1000.00000001"}


# --- property: random borrowing sequences on SQLite -------------------------------------------

PROPERTY_USERS = ("p1", "p2")
PROPERTY_ACCOUNTS = ("cross", "isolated:ETHUSDT")
# (user, account, asset): the last one is invalid (ABC is not one of ETHUSDT's assets).
PROPERTY_TARGETS = [
    ("p1", "cross", "USDT"),
    ("p1", "cross", "ABC"),
    ("p1", "isolated:ETHUSDT", "USDT"),
    ("p1", "isolated:ETHUSDT", "ETH"),
    ("p2", "cross", "ABC"),
    ("p2", "cross", "USDT"),
    ("p2", "isolated:ETHUSDT", "ABC"),
]
amounts = st.one_of(
    st.sampled_from([Decimal(q) for q in ("0.5", "5", "20", "50", "120", "300", "800")]),
    st.integers(min_value=1, max_value=100_000).map(lambda n: Decimal(n) / 100),
)
operations = st.one_of(
    st.tuples(
        st.sampled_from(["transfer_in", "transfer_out", "borrow", "borrow", "repay_owed"]),
        st.sampled_from(PROPERTY_TARGETS),
        amounts,
    ),
    st.tuples(st.just("repay_loan"), st.integers(min_value=0, max_value=7), amounts),
    st.tuples(st.just("advance"), st.sampled_from([0, 7, 35, 60, 125, 300])),
    st.tuples(st.just("accrue"), st.sampled_from(["new", "retry", "same_until"])),
)


class BorrowingRun:
    """One example: a fresh SQLite store, a small market, then the operations in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ledger = Ledger(url)
        self.minute = 1
        self.numbers = iter(range(1, 10_000))
        self.last_accrual: dict[str, Any] | None = None
        for data in (
            command("list_asset", asset="USDT", collateral_rank=1),
            command("list_asset", asset="ETH", collateral_rank=2, collateral_ladder=ETH_LADDER),
            command("list_asset", asset="ABC", collateral_rank=8, quantity_decimals=2),
            command("list_asset", asset="BNB", collateral_rank=2),
            command("set_collateral_cap", asset="ABC", upper_limit="1000"),
            command("mark_prices", prices={"ETH": "20", "ABC": "1", "BNB": "300"}),
            command("set_borrow_terms", asset="USDT", hourly_interest_rate="0.001"),
            command("set_borrow_terms", asset="ETH", hourly_interest_rate="0.0005"),
            command("set_borrow_terms", asset="ABC", hourly_interest_rate="0.002"),
            command("set_bnb_discount", user="p1", enabled=True),
        ):
            assert run(self.ledger, data).is_accepted
        self.send("transfer_in", "p1", "cross", "USDT", Decimal(1000))
        self.send("transfer_in", "p1", "cross", "BNB", Decimal(1))
        self.send("transfer_in", "p1", "isolated:ETHUSDT", "ETH", Decimal(50))
        self.send("transfer_in", "p2", "cross", "ABC", Decimal(300))

    def request_id(self) -> str:
        return f"p-{next(self.numbers)}"

    def send(self, type_: str, user: str, account: str, asset: str, quantity: Decimal) -> None:
        data = command(
            type_,
            self.request_id(),
            user=user,
            account=account,
            asset=asset,
            quantity=str(quantity),
            effective_at=at(self.minute),
        )
        before = event_count(self.ledger)
        try:
            outcome = run(self.ledger, data)
        except CommandInvalid:
            assert account.startswith("isolated:") and asset == "ABC", data  # not in the pair
            assert event_count(self.ledger) == before, "invalid input recorded something"
            return
        assert outcome.status in {"accepted", "rejected"}, outcome

    def repay_owed(self, user: str, account: str, asset: str, at_most: Decimal) -> None:
        """Repay up to `at_most` of what is owed and held (all of it when it is less)."""
        found = self.ledger.get_aggregate(MarginAccount, MarginAccount.create_id(user, account))
        owed = Decimal(0) if found is None else found.liability(asset) + found.interest_owed(asset)
        held = Decimal(0) if found is None else found.holding(asset)
        self.send("repay", user, account, asset, min(at_most, owed, held) or at_most)

    def repay_loan(self, index: int, at_most: Decimal) -> None:
        """Repay (up to `at_most` of) one of the open loans, if there is one."""
        loans = [
            (account.user, account.account, asset)
            for account in self.accounts(self.ledger).values()
            for asset in account.open_loans()
        ]
        if loans:
            self.repay_owed(*loans[index % len(loans)], at_most)

    def accrue(self, how: str) -> None:
        if how == "retry" and self.last_accrual is not None:
            before = event_count(self.ledger)
            again = run(self.ledger, self.last_accrual)
            assert again.duplicate is True
            assert event_count(self.ledger) == before
            return
        until = (
            self.last_accrual["until"]
            if how == "same_until" and self.last_accrual is not None
            else at(self.minute)
        )
        data = command(
            "accrue_interest", self.request_id(), until=until, effective_at=at(self.minute)
        )
        outcome = run(self.ledger, data)
        assert outcome.is_accepted, outcome
        if until != at(self.minute):  # an until already settled: nothing is charged again
            assert outcome.context["hours_charged"] == 0, outcome
        self.last_accrual = data

    def advance(self, minutes: int) -> None:
        """Time passes; interest for the hours passed is settled by the next command or job."""
        self.minute += minutes

    def apply(self, operation: tuple[Any, ...]) -> None:
        kind = operation[0]
        if kind == "advance":
            self.advance(operation[1])
        elif kind == "accrue":
            self.accrue(operation[1])
        elif kind == "repay_loan":
            self.repay_loan(operation[1], operation[2])
        elif kind == "repay_owed":
            self.repay_owed(*operation[1], operation[2])
        else:
            self.send(kind, *operation[1], operation[2])
        self.check_invariants(self.ledger)

    def accounts(self, ledger: Ledger) -> dict[str, MarginAccount]:
        found = {}
        for user in PROPERTY_USERS:
            for account in PROPERTY_ACCOUNTS:
                aggregate = ledger.get_aggregate(
                    MarginAccount, MarginAccount.create_id(user, account)
                )
                if aggregate is not None:
                    found[aggregate.account_id] = aggregate
        return found

    def check_invariants(self, ledger: Ledger) -> None:
        accounts = self.accounts(ledger)
        for account in accounts.values():
            for quantities in (account.holdings, account.liabilities, account.interest):
                assert all(q >= 0 for q in quantities.values()), account.account_id
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
        in_cross = sum(
            (a.holding("ABC") for a in accounts.values() if a.counts_in_platform_total),
            Decimal(0),
        )
        assert pool.platform_total == in_cross

    def check_replay(self) -> None:
        """A fresh Ledger rebuilds every account from the store; the events, folded by hand,
        give the same holdings, liabilities and interest; no loan hour is charged twice."""

        def nonzero(quantities: dict[str, Decimal]) -> dict[str, Decimal]:
            return {a: q for a, q in quantities.items() if q}

        folded: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(
            lambda: {key: defaultdict(Decimal) for key in "hli"}
        )
        hours_charged: set[tuple[Any, str, Any]] = set()
        for notification in self.ledger.recorder.select_notifications(start=1, limit=1_000_000):
            event = self.ledger.mapper.to_domain_event(notification)
            state = folded[str(event.originator_id)]
            if isinstance(event, MarginAccount.TransferredIn):
                state["h"][event.asset] += event.quantity
            elif isinstance(event, MarginAccount.TransferredOut):
                state["h"][event.asset] -= event.quantity
            elif isinstance(event, MarginAccount.Borrowed):
                state["h"][event.asset] += event.quantity
                state["l"][event.asset] += event.quantity
                state["i"][event.asset] += event.first_hour_interest
            elif isinstance(event, MarginAccount.InterestCharged):
                key = (event.originator_id, event.asset, event.hour)
                assert key not in hours_charged, key
                hours_charged.add(key)
                state["i"][event.asset] += event.quantity
            elif isinstance(event, MarginAccount.Repaid):
                state["h"][event.asset] -= event.quantity
                state["l"][event.asset] -= event.principal_paid
                state["i"][event.asset] -= event.interest_paid
        live = self.accounts(self.ledger)
        with Ledger(self.url) as fresh:
            replayed = self.accounts(fresh)
            self.check_invariants(fresh)
        assert replayed.keys() == live.keys()
        for account_id, account in live.items():
            again = replayed[account_id]
            by_hand = folded[str(account.id)]
            for mine, theirs, hand in (
                (account.holdings, again.holdings, by_hand["h"]),
                (account.liabilities, again.liabilities, by_hand["l"]),
                (account.interest, again.interest, by_hand["i"]),
            ):
                assert nonzero(mine) == nonzero(theirs) == nonzero(hand), account_id


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(operations, min_size=12, max_size=30))
def test_random_borrowing_keeps_balances_non_negative_and_replays(
    steps: list[tuple[Any, ...]],
) -> None:
    """Goal: whatever the order of transfers, borrows, repays and accrual jobs (retried or not),
    no holding, liability or interest goes negative, the capped pool equals the cross holdings,
    and the store alone reproduces every account. Method: one fresh SQLite file per example."""
    directory = tempfile.mkdtemp(prefix="ledger-borrowing-")
    example = BorrowingRun(f"sqlite:///{directory}/ledger.sqlite3")
    try:
        for step in steps:
            example.apply(step)
        example.check_replay()
    finally:
        example.ledger.close()
        shutil.rmtree(directory, ignore_errors=True)
