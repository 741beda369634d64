"""Idempotency, atomicity and what every event carries (COMMANDS.md, DOMAIN.md §8)."""

from datetime import UTC, datetime

import pytest

from ledger import Ledger
from ledger.errors import RequestIdReused
from tests.support import command, event_count, run, setup_capped_asset, transfer_in


def stored_events(ledger: Ledger, after: int = 0) -> list[object]:
    return [
        ledger.mapper.to_domain_event(n)
        for n in ledger.recorder.select_notifications(start=after + 1, limit=1000)
    ]


def test_a_retry_returns_the_first_outcome_and_records_nothing(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    first = transfer_in(ledger, "u1", "800", request_id="same")
    before = event_count(ledger)
    again = transfer_in(ledger, "u1", "800", request_id="same")
    assert again.duplicate is True
    assert (again.status, again.events, again.context) == (
        first.status,
        first.events,
        first.context,
    )
    assert event_count(ledger) == before


def test_a_retry_without_effective_at_is_still_a_duplicate(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    data = {
        "type": "transfer_in",
        "request_id": "no-time",
        "user": "u1",
        "account": "cross",
        "asset": "ABC",
        "quantity": "5",
    }
    from ledger.commands import parse_command

    first = ledger.execute(parse_command(dict(data)))
    again = ledger.execute(parse_command(dict(data)))
    assert first.is_accepted and again.duplicate
    assert again.context["effective_at"] == first.context["effective_at"]


def test_the_same_request_id_with_another_payload_is_refused(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    transfer_in(ledger, "u1", "5", request_id="key-1")
    before = event_count(ledger)
    with pytest.raises(RequestIdReused):
        transfer_in(ledger, "u1", "6", request_id="key-1")
    assert event_count(ledger) == before


def test_equal_amounts_written_differently_are_the_same_payload(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    transfer_in(ledger, "u1", "5.50", request_id="key-2")
    assert transfer_in(ledger, "u1", "5.5", request_id="key-2").duplicate


def test_every_event_of_a_command_carries_its_request_actor_and_times(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    before = event_count(ledger)
    outcome = transfer_in(ledger, "u7", "12", request_id="meta-1", actor="engine:transfers")
    events = stored_events(ledger, before)
    assert [e.event_id for e in events] == outcome.events  # type: ignore[attr-defined]
    for event in events:
        assert event.request_id == "meta-1"  # type: ignore[attr-defined]
        assert event.actor == "engine:transfers"  # type: ignore[attr-defined]
        assert event.effective_at == datetime(2026, 3, 2, 9, tzinfo=UTC)  # type: ignore[attr-defined]
        assert event.timestamp.tzinfo is not None  # type: ignore[attr-defined]
    request = events[-1]
    assert request.outcome["status"] == "accepted"  # type: ignore[attr-defined]
    assert request.command["quantity"] == "12"  # type: ignore[attr-defined]


def test_the_actor_defaults_to_the_user(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    before = event_count(ledger)
    transfer_in(ledger, "u8", "1")
    assert {e.actor for e in stored_events(ledger, before)} == {"user:u8"}  # type: ignore[attr-defined]


def test_a_reopened_ledger_replays_the_same_state(database_url: str) -> None:
    with Ledger(database_url) as ledger:
        setup_capped_asset(ledger, upper_limit="1000", price="1")
        transfer_in(ledger, "u1", "700")
        transfer_in(ledger, "u2", "100", account="portfolio")
        run(ledger, command("transfer_out", user="u1", account="cross", asset="ABC", quantity="50"))
    from ledger.queries import account_view
    from projections.queries import assets_view

    with Ledger(database_url) as reopened:
        assert account_view(reopened, "u1:cross").holdings == {"ABC": "650"}
        assert account_view(reopened, "u2:portfolio").holdings == {"ABC": "100"}
        abc = next(v for v in assets_view(reopened) if v.asset == "ABC")
        assert (abc.total, abc.ratio, abc.band) == ("750", "0.75", "A")


def test_the_account_view_shows_the_level_that_governs_each_kind(ledger: Ledger) -> None:
    """Portfolio accounts are governed by the CML like cross Classic (DOMAIN.md §1): the view
    shows it, valued by the same rules as the write side."""
    from ledger.queries import account_view

    for setup in (
        command("list_asset", asset="USDT", collateral_rank=1),
        command("list_asset", asset="BTC", collateral_rank=1),
        command("mark_prices", prices={"BTC": "40000"}),
        command("set_borrow_terms", asset="USDT", hourly_interest_rate="0.0001"),
        command("transfer_in", user="p", account="portfolio", asset="BTC", quantity="1"),
        command("borrow", user="p", account="portfolio", asset="USDT", quantity="10000"),
    ):
        assert run(ledger, setup).is_accepted
    view = account_view(ledger, "p:portfolio")
    # (40,000 + 10,000) / (10,000 + 1 hour of interest at 0.0001) = 50,000 / 10,001
    assert view.debt_usdt == "10001"
    assert view.collateral_margin_level == "4.999500049995000499950005"  # 28 digits
    assert view.pro_margin_level is None


def test_a_refused_trade_states_its_quantities_in_the_contracts_number_format(
    ledger: Ledger,
) -> None:
    """COMMANDS.md: numbers are printed without exponent or trailing zeros, refusals included."""
    for setup in (
        command("list_asset", asset="USDT", collateral_rank=1),
        command("list_asset", asset="BTC", collateral_rank=1),
        command("transfer_in", user="t", account="cross", asset="USDT", quantity="10"),
    ):
        assert run(ledger, setup).is_accepted
    from ledger.commands import parse_line

    # JSON numbers, parsed exactly: 1E+3 arrives as Decimal("1E+3"), 0.0200 with its zeros.
    refused = ledger.execute(
        parse_line(
            '{"type": "settle_trade", "request_id": "t-1", "user": "never", "account": "cross",'
            ' "sell_asset": "USDT", "sell_quantity": 1E+3, "buy_asset": "BTC",'
            ' "buy_quantity": 0.0200, "fee_asset": "USDT", "fee_quantity": 0}'
        )
    )
    assert (refused.status, refused.reason) == ("rejected", "account_not_open")
    assert (refused.context["sell_quantity"], refused.context["buy_quantity"]) == ("1000", "0.02")
