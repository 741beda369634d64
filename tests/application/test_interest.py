"""Hourly interest through the Ledger, on both backends (DOMAIN.md §5).

"One hour is charged at the moment of borrowing, then every full hour": the borrow charges the
clock hour it falls in on the amount borrowed; every clock hour HH:00 after it is charged on the
principal then outstanding, by the account's next command or by the accrual job, once per loan
and hour, rounded up to the asset's quantity decimals.

Market (at T0 = 2026-03-02T09:00:00Z): USDT (hourly rate 0.0001 unless a test sets another),
ETH at 2000 (rate 0.00001), BNB at 100 (not borrowable), DEC2 at 4 with two decimals (rate
0.00001). Times below are UTC clock times on that day.
"""

from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger
from ledger.commands import CommandInvalid
from ledger.money import format_plain
from ledger.outcomes import Outcome
from ledger.queries import account_view
from tests.support import at, command, event_count, run

JOB = "job:accrue-interest"


def set_up_market(ledger: Ledger, *, usdt_rate: str = "0.0001", with_bnb: bool = True) -> None:
    commands = [
        command("list_asset", asset="USDT", collateral_rank=1),
        command("list_asset", asset="ETH", collateral_rank=2),
        command("list_asset", asset="DEC2", collateral_rank=3, quantity_decimals=2),
        command("mark_prices", prices={"ETH": "2000", "DEC2": "4"}),
        command("set_borrow_terms", asset="USDT", hourly_interest_rate=usdt_rate),
        command("set_borrow_terms", asset="ETH", hourly_interest_rate="0.00001"),
        command("set_borrow_terms", asset="DEC2", hourly_interest_rate="0.00001"),
    ]
    if with_bnb:
        commands += [
            command("list_asset", asset="BNB", collateral_rank=2),
            command("mark_prices", prices={"BNB": "100"}),
        ]
    for data in commands:
        outcome = run(ledger, data)
        assert outcome.is_accepted, outcome


def act(
    ledger: Ledger,
    type_: str,
    user: str,
    quantity: str,
    *,
    minute: float,
    asset: str = "USDT",
    account: str = "cross",
) -> Outcome:
    """A transfer_in, borrow, repay or transfer_out dated `minute` minutes after 09:00."""
    return run(
        ledger,
        command(
            type_,
            user=user,
            account=account,
            asset=asset,
            quantity=quantity,
            effective_at=at(minute),
        ),
    )


def accrue(ledger: Ledger, minute: float, request_id: str | None = None) -> Outcome:
    """The accrual job up to `minute` minutes after 09:00, dated then (as the CLI does)."""
    outcome = run(
        ledger,
        command(
            "accrue_interest",
            request_id,
            until=at(minute),
            effective_at=at(minute),
            actor=JOB,
        ),
    )
    assert outcome.status == "accepted", outcome
    return outcome


def stored(ledger: Ledger, name: str, after: int = 0) -> list[Any]:
    return [
        ledger.mapper.to_domain_event(n)
        for n in ledger.recorder.select_notifications(start=after + 1, limit=100_000)
        if n.topic.endswith(f".{name}")
    ]


def charges(ledger: Ledger, after: int = 0) -> list[tuple[str, str, str, str, str]]:
    """Every InterestCharged as (asset, clock hour, principal, rate, interest) strings."""
    return [
        (
            e.asset,
            e.hour.strftime("%H:%M"),
            format_plain(e.principal),
            format_plain(e.hourly_interest_rate),
            format_plain(e.quantity),
        )
        for e in stored(ledger, "InterestCharged", after)
    ]


def interest(ledger: Ledger, account_id: str = "u1:cross") -> dict[str, str]:
    return account_view(ledger, account_id).interest


# --- the first hour, and the hours after it ---------------------------------------------------


def test_a_loan_repaid_within_its_first_hour_is_charged_exactly_one_hour(ledger: Ledger) -> None:
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    borrowed = act(ledger, "borrow", "u1", "1000", minute=15)
    assert borrowed.context["first_hour_interest"] == "0.1"

    repaid = act(ledger, "repay", "u1", "1000.1", minute=59)

    assert (repaid.context["interest_paid"], repaid.context["principal_paid"]) == ("0.1", "1000")
    assert repaid.context["interest_settled_hours"] == 0
    assert accrue(ledger, 300).context["hours_charged"] == 0  # 14:00: the loan is gone
    assert charges(ledger) == []
    [first] = stored(ledger, "Borrowed")
    assert (first.first_hour.strftime("%H:%M"), first.first_hour_interest) == (
        "09:00",
        Decimal("0.1"),
    )
    view = account_view(ledger, "u1:cross")
    assert (view.holdings, view.liabilities, view.interest) == ({"USDT": "999.9"}, {}, {})


def test_a_repay_on_the_next_full_hour_pays_for_two_hours(ledger: Ledger) -> None:
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    act(ledger, "borrow", "u1", "1000", minute=15)

    too_little = act(ledger, "repay", "u1", "1000.1", minute=60)  # 10:00 is due now
    assert too_little.status == "accepted"
    assert too_little.context["interest_settled_hours"] == 1
    assert charges(ledger) == [("USDT", "10:00", "1000", "0.0001", "0.1")]
    assert account_view(ledger, "u1:cross").liabilities == {"USDT": "0.1"}


def test_hours_are_clock_hours_so_a_loan_across_hh00_pays_two_hours(ledger: Ledger) -> None:
    """The interpretation in force (ledger/rules/interest.py): borrowed at 09:59 and repaid at
    10:01, a loan pays for the 09:00 hour (at the borrow) and the 10:00 hour: two hours for two
    minutes; one borrowed at 09:01 and repaid at 09:59 pays one hour."""
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=0)
    act(ledger, "transfer_in", "u2", "1000", minute=0)
    act(ledger, "borrow", "u1", "1000", minute=59)
    act(ledger, "borrow", "u2", "1000", minute=1)

    across = act(ledger, "repay", "u1", "1000.2", minute=61)
    within = act(ledger, "repay", "u2", "1000.1", minute=59)

    assert (across.context["interest_paid"], across.context["interest_settled_hours"]) == ("0.2", 1)
    assert (within.context["interest_paid"], within.context["interest_settled_hours"]) == ("0.1", 0)


def test_a_three_hour_gap_is_charged_hour_by_hour_and_only_once(ledger: Ledger) -> None:
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    act(ledger, "borrow", "u1", "1000", minute=15)

    job = accrue(ledger, 180, request_id="accrual-12")  # until 12:00

    assert {k: job.context[k] for k in ("until", "hours_charged", "interest")} == {
        "until": "2026-03-02T12:00:00Z",
        "hours_charged": 3,
        "interest": {"USDT": "0.3"},
    }
    assert (job.context["accounts_scanned"], job.context["accounts_charged"]) == (1, 1)
    assert charges(ledger) == [
        ("USDT", "10:00", "1000", "0.0001", "0.1"),
        ("USDT", "11:00", "1000", "0.0001", "0.1"),
        ("USDT", "12:00", "1000", "0.0001", "0.1"),
    ]
    for event in stored(ledger, "InterestCharged"):
        assert (event.request_id, event.actor) == ("accrual-12", JOB)
        assert event.effective_at == event.hour
    assert interest(ledger) == {"USDT": "0.4"}

    before = event_count(ledger)
    retried = accrue(ledger, 180, request_id="accrual-12")
    assert retried.duplicate is True
    assert retried.context == job.context
    assert event_count(ledger) == before

    other_job = accrue(ledger, 180, request_id="accrual-12-again")
    later_in_the_hour = accrue(ledger, 239, request_id="accrual-12-59")
    for outcome in (other_job, later_in_the_hour):
        assert (outcome.duplicate, outcome.context["hours_charged"]) == (False, 0)
        assert outcome.context["accounts_charged"] == 0
    assert len(charges(ledger)) == 3
    assert interest(ledger) == {"USDT": "0.4"}


def test_every_account_command_first_settles_the_hours_that_passed(ledger: Ledger) -> None:
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    act(ledger, "borrow", "u1", "1000", minute=15)
    before = event_count(ledger)

    topped_up = act(ledger, "transfer_in", "u1", "10", minute=150)  # 11:30

    settled = stored(ledger, "InterestCharged", before)
    assert [e.hour.strftime("%H:%M") for e in settled] == ["10:00", "11:00"]
    assert {e.request_id for e in settled} == {topped_up.request_id}
    assert [e.event_id for e in settled] == topped_up.events[:2]
    assert accrue(ledger, 180).context["hours_charged"] == 1  # only 12:00 is left
    assert interest(ledger) == {"USDT": "0.4"}


def test_each_hour_is_charged_on_the_principal_outstanding_at_it(ledger: Ledger) -> None:
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    act(ledger, "borrow", "u1", "1000", minute=15)

    partial = act(ledger, "repay", "u1", "500.2", minute=90)  # 10:30, after 10:00 was due

    assert (partial.context["interest_paid"], partial.context["principal_paid"]) == ("0.2", "500")
    accrue(ledger, 120)
    assert charges(ledger) == [
        ("USDT", "10:00", "1000", "0.0001", "0.1"),
        ("USDT", "11:00", "500", "0.0001", "0.05"),
    ]
    assert interest(ledger) == {"USDT": "0.05"}


def test_a_rate_change_applies_from_the_next_full_hour(ledger: Ledger) -> None:
    """The rate rises at 11:30; one job run at 12:00 charges 10:00 and 11:00 at the old rate
    (the rate then in force) and 12:00 at the new one."""
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    act(ledger, "borrow", "u1", "1000", minute=15)
    raised = run(
        ledger,
        command(
            "set_borrow_terms", asset="USDT", hourly_interest_rate="0.0003", effective_at=at(150)
        ),
    )
    assert raised.is_accepted

    accrue(ledger, 180)

    assert charges(ledger) == [
        ("USDT", "10:00", "1000", "0.0001", "0.1"),
        ("USDT", "11:00", "1000", "0.0001", "0.1"),
        ("USDT", "12:00", "1000", "0.0003", "0.3"),
    ]
    assert interest(ledger) == {"USDT": "0.6"}


def test_a_second_borrow_within_the_hour_charges_one_hour_on_the_new_amount_only(
    ledger: Ledger,
) -> None:
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "2000", minute=5)
    act(ledger, "borrow", "u1", "1000", minute=15)

    second = act(ledger, "borrow", "u1", "500", minute=40)

    assert second.context["first_hour_interest"] == "0.05"
    assert second.context["interest_settled_hours"] == 0
    borrowed = stored(ledger, "Borrowed")
    first_hours = [(e.first_hour.strftime("%H:%M"), e.first_hour_interest) for e in borrowed]
    assert first_hours == [("09:00", Decimal("0.1")), ("09:00", Decimal("0.05"))]
    assert interest(ledger) == {"USDT": "0.15"}
    accrue(ledger, 60)
    assert charges(ledger) == [("USDT", "10:00", "1500", "0.0001", "0.15")]
    assert interest(ledger) == {"USDT": "0.3"}


def test_interest_is_rounded_up_to_the_asset_decimals(ledger: Ledger) -> None:
    """DEC2 keeps two decimals: 150 * 0.00001 = 0.0015 per hour is charged as 0.01."""
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)

    borrowed = act(ledger, "borrow", "u1", "150", asset="DEC2", minute=15)

    assert borrowed.context["first_hour_interest"] == "0.01"
    accrue(ledger, 120)
    assert charges(ledger) == [
        ("DEC2", "10:00", "150", "0.00001", "0.01"),
        ("DEC2", "11:00", "150", "0.00001", "0.01"),
    ]
    assert interest(ledger) == {"DEC2": "0.03"}
    act(ledger, "transfer_in", "u1", "0.03", asset="DEC2", minute=121)
    assert act(ledger, "repay", "u1", "150.03", asset="DEC2", minute=125).is_accepted
    view = account_view(ledger, "u1:cross")
    assert (view.liabilities, view.interest, view.holdings) == ({}, {}, {"USDT": "1000"})


# --- the BNB discount ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "bnb", "enabled", "ratio", "hourly"),
    [
        pytest.param("cross", "1", True, "0.05", "9.5", id="enabled-and-held"),
        pytest.param("cross", "0.095", True, "0.05", "9.5", id="held-exactly-the-interest"),
        pytest.param("cross", "0.09", True, "0", "10", id="enabled-not-enough-bnb"),
        pytest.param("cross", "1", False, "0", "10", id="held-but-not-enabled"),
        pytest.param("isolated:BNBUSDT", "1", True, "0", "10", id="isolated-account"),
    ],
)
def test_the_bnb_discount_takes_5_percent_off_cross_interest(
    ledger: Ledger, account: str, bnb: str, enabled: bool, ratio: str, hourly: str
) -> None:
    """10000 USDT at 0.001 an hour: 10 a full hour, 9.5 discounted; holding BNB worth at least
    the discounted hour (9.5 USDT at 100 a BNB = 0.095 BNB) is enough."""
    set_up_market(ledger, usdt_rate="0.001")
    if enabled:
        assert run(ledger, command("set_bnb_discount", user="u1", enabled=True)).is_accepted
    act(ledger, "transfer_in", "u1", "20000", minute=5, account=account)
    act(ledger, "transfer_in", "u1", bnb, asset="BNB", minute=6, account=account)

    borrowed = act(ledger, "borrow", "u1", "10000", minute=15, account=account)

    assert borrowed.context["first_hour_interest"] == hourly
    accrue(ledger, 60)
    [charged] = stored(ledger, "InterestCharged")
    assert (charged.discount_ratio, charged.quantity) == (Decimal(ratio), Decimal(hourly))
    assert interest(ledger, f"u1:{account}") == {"USDT": format_plain(2 * Decimal(hourly))}


def test_the_discount_ratio_is_a_platform_rule_in_force_at_each_hour(ledger: Ledger) -> None:
    set_up_market(ledger, usdt_rate="0.001")
    run(ledger, command("set_bnb_discount", user="u1", enabled=True))
    act(ledger, "transfer_in", "u1", "20000", minute=5)
    act(ledger, "transfer_in", "u1", "1", asset="BNB", minute=6)
    assert act(ledger, "borrow", "u1", "10000", minute=15).context["first_hour_interest"] == "9.5"
    changed = run(
        ledger,
        command("set_platform_rules", bnb_interest_discount_ratio="0.2", effective_at=at(30)),
    )
    assert changed.context["bnb_interest_discount_ratio"] == "0.2"

    accrue(ledger, 60)

    [charged] = stored(ledger, "InterestCharged")
    assert (charged.discount_ratio, charged.quantity) == (Decimal("0.2"), Decimal(8))


def test_a_discount_enabled_later_does_not_discount_earlier_hours(ledger: Ledger) -> None:
    set_up_market(ledger, usdt_rate="0.001")
    act(ledger, "transfer_in", "u1", "20000", minute=5)
    act(ledger, "transfer_in", "u1", "1", asset="BNB", minute=6)
    act(ledger, "borrow", "u1", "10000", minute=15)
    enabled = run(
        ledger, command("set_bnb_discount", user="u1", enabled=True, effective_at=at(150))
    )
    assert enabled.is_accepted

    job = accrue(ledger, 180)

    assert [(hour, charged) for _asset, hour, _p, _r, charged in charges(ledger)] == [
        ("10:00", "10"),
        ("11:00", "10"),
        ("12:00", "9.5"),
    ]
    assert job.context["interest"] == {"USDT": "29.5"}


def test_bnb_listed_after_a_loan_began_does_not_block_its_settlement(ledger: Ledger) -> None:
    set_up_market(ledger, with_bnb=False)
    run(ledger, command("set_bnb_discount", user="u1", enabled=True))
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    act(ledger, "borrow", "u1", "1000", minute=15)
    for data in (
        command("list_asset", asset="BNB", collateral_rank=2, effective_at=at(90)),
        command("mark_prices", prices={"BNB": "100"}, effective_at=at(90)),
    ):
        assert run(ledger, data).is_accepted

    job = accrue(ledger, 120)  # raises CommandInvalid: "BNB was not yet listed at 10:00"

    assert job.context["hours_charged"] == 2


def test_bnb_not_listed_means_no_discount(ledger: Ledger) -> None:
    set_up_market(ledger, with_bnb=False)
    run(ledger, command("set_bnb_discount", user="u1", enabled=True))
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    assert act(ledger, "borrow", "u1", "1000", minute=15).context["first_hour_interest"] == "0.1"
    accrue(ledger, 60)
    assert charges(ledger) == [("USDT", "10:00", "1000", "0.0001", "0.1")]


# --- the job over many accounts and loans -----------------------------------------------------


def test_the_job_scans_the_accounts_in_debt_and_skips_repaid_loans(ledger: Ledger) -> None:
    set_up_market(ledger)
    assert accrue(ledger, 1).context["accounts_scanned"] == 0
    for user in ("u1", "u2", "u3"):
        act(ledger, "transfer_in", user, "1000", minute=5)
    act(ledger, "borrow", "u1", "1000", minute=15)
    act(ledger, "borrow", "u2", "1000", minute=15)
    act(ledger, "repay", "u2", "1000.1", minute=30)

    job = accrue(ledger, 60)

    counts = ("accounts_scanned", "accounts_charged", "hours_charged")
    # Candidates come from the accounts read model: u3 never borrowed, u2 repaid everything.
    assert [job.context[k] for k in counts] == [1, 1, 1]
    assert [e.originator_id for e in stored(ledger, "InterestCharged")] == [
        stored(ledger, "Borrowed")[0].originator_id
    ]


def test_an_invalid_until_records_nothing(ledger: Ledger) -> None:
    set_up_market(ledger)
    before = event_count(ledger)
    with pytest.raises(CommandInvalid) as raised:
        run(ledger, command("accrue_interest", until="2026-03-02T12:00:00"))
    assert [e.field for e in raised.value.errors] == ["until"]
    assert event_count(ledger) == before


@pytest.mark.parametrize("settled_by", ["job", "account-command"])
def test_two_open_loans_are_settled_over_several_hours(ledger: Ledger, settled_by: str) -> None:
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    act(ledger, "borrow", "u1", "100", minute=15)
    act(ledger, "borrow", "u1", "0.01", asset="ETH", minute=20)

    if settled_by == "job":
        assert accrue(ledger, 180).context["hours_charged"] == 6
    else:
        assert act(ledger, "transfer_in", "u1", "1", minute=180).is_accepted

    assert sorted((asset, hour) for asset, hour, *_ in charges(ledger)) == [
        ("ETH", "10:00"),
        ("ETH", "11:00"),
        ("ETH", "12:00"),
        ("USDT", "10:00"),
        ("USDT", "11:00"),
        ("USDT", "12:00"),
    ]


def test_two_open_loans_settled_every_hour_are_charged_each_hour(ledger: Ledger) -> None:
    set_up_market(ledger)
    act(ledger, "transfer_in", "u1", "1000", minute=5)
    act(ledger, "borrow", "u1", "100", minute=15)
    act(ledger, "borrow", "u1", "0.01", asset="ETH", minute=20)

    for minute in (60, 120, 180):
        assert accrue(ledger, minute).context["hours_charged"] == 2

    assert charges(ledger) == [
        ("ETH", "10:00", "0.01", "0.00001", "0.0000001"),
        ("USDT", "10:00", "100", "0.0001", "0.01"),
        ("ETH", "11:00", "0.01", "0.00001", "0.0000001"),
        ("USDT", "11:00", "100", "0.0001", "0.01"),
        ("ETH", "12:00", "0.01", "0.00001", "0.0000001"),
        ("USDT", "12:00", "100", "0.0001", "0.01"),
    ]
    assert interest(ledger) == {"ETH": "0.0000004", "USDT": "0.04"}
