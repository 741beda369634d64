"""The max collateral rule through the Ledger, on both backends (DOMAIN.md §3)."""

from decimal import Decimal

import pytest

from ledger import Ledger
from ledger.commands import CommandInvalid
from ledger.domain.asset_pool import AssetPool
from ledger.money import format_plain
from tests.support import at, command, event_count, run, setup_capped_asset, transfer_in

CAP_MESSAGE = (
    "{asset} has reached platform max pledged collateral amount. The max transfer-in quantity "
    "is {q}. Please reduce the quantity or try with other tokens"
)


def pool_total(ledger: Ledger, asset: str = "ABC") -> Decimal:
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(asset))
    return pool.platform_total


def test_worked_example_1_band_a_then_fixed_quota_at_80_percent(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000000", price="1")
    assert transfer_in(ledger, "user1", "500000").is_accepted
    refused = transfer_in(ledger, "user2", "300000.00000001")
    assert (refused.status, refused.reason) == ("rejected", "collateral_cap")
    assert refused.context["q_max"] == "300000"
    assert transfer_in(ledger, "user2", "300000").is_accepted
    assert pool_total(ledger) == Decimal("800000")
    third = transfer_in(ledger, "user3", "50000.1")
    assert third.context["band"] == "B"
    assert third.context["q_max"] == "50000"
    assert third.message == CAP_MESSAGE.format(asset="ABC", q="50000")
    assert transfer_in(ledger, "user3", "50000").is_accepted


def test_worked_example_2_at_85_percent_only_the_fixed_quota(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="2000000", price="1")
    assert transfer_in(ledger, "user1", "1600000").is_accepted  # exactly 80%: band B starts
    assert transfer_in(ledger, "user1", "50000").is_accepted
    assert transfer_in(ledger, "user1", "50000").is_accepted  # 1,700,000 = 85%
    outcome = transfer_in(ledger, "user2", "60000")
    assert (outcome.context["band"], outcome.context["total"], outcome.context["ratio"]) == (
        "B",
        "1700000",
        "0.85",
    )
    assert outcome.context["q_max"] == "50000"
    assert outcome.reason == "collateral_cap"


def test_worked_example_3_near_the_limit_the_message_names_the_remainder(ledger: Ledger) -> None:
    setup_capped_asset(ledger, asset="AST3", rank=10, upper_limit="3000000", price="1")
    assert transfer_in(ledger, "user0", "2400000", asset="AST3").is_accepted  # to 80%
    for _ in range(11):  # band B/C steps of the fixed quota, 50,000 each: to 2,950,000
        assert transfer_in(ledger, "user0", "50000", asset="AST3").is_accepted
    assert transfer_in(ledger, "user0", "40000", asset="AST3").is_accepted  # T = 2,990,000
    outcome = transfer_in(ledger, "user1", "50000", asset="AST3")
    assert outcome.status == "rejected"
    assert outcome.message == CAP_MESSAGE.format(asset="AST3", q="10000")
    assert outcome.context["band"] == "C"
    assert outcome.context["total"] == "2990000"
    assert outcome.context["ratio"] == "0.9966666666666666666666666667"
    assert outcome.context["q_max"] == "10000"
    assert transfer_in(ledger, "user1", "10000", asset="AST3").is_accepted
    assert pool_total(ledger, "AST3") == Decimal("3000000")
    blocked = transfer_in(ledger, "user2", "0.00000001", asset="AST3")
    assert (blocked.context["band"], blocked.context["q_max"]) == ("D", "0")


@pytest.mark.parametrize(
    ("filled", "band", "q_max"),
    [
        ("79999.99999999", "A", "0.00000001"),
        ("80000", "B", "2000"),
        ("89999.99999999", "B", "2000"),
        ("90000", "C", "2000"),
        ("99999.99999999", "C", "0.00000001"),
        ("100000", "D", "0"),
    ],
    ids=["just-below-80", "at-80", "just-below-90", "at-90", "just-below-100", "at-100"],
)
def test_band_edges_belong_to_the_higher_band(
    ledger: Ledger, filled: str, band: str, q_max: str
) -> None:
    # U = 100,000 at price 2.5 with a 5,000 USDT quota: F = 2,000 tokens.
    setup_capped_asset(ledger, upper_limit="100000", price="2.5", fixed_quota_usdt="5000")
    assert transfer_in(ledger, "whale", "79999.99999999").is_accepted
    rest = Decimal(filled) - Decimal("79999.99999999")
    remaining = rest
    if remaining > 0:  # fill band A to exactly 80%, then top up in fixed-quota steps
        assert transfer_in(ledger, "filler", "0.00000001").is_accepted
        remaining -= Decimal("0.00000001")
        while remaining > 0:
            step = min(remaining, Decimal("2000"))
            assert transfer_in(ledger, "filler", format_plain(step)).is_accepted, remaining
            remaining -= step
    probe = transfer_in(ledger, "probe", "100000")
    assert probe.status == "rejected"
    assert (probe.context["band"], probe.context["q_max"]) == (band, q_max)


def test_fixed_quota_is_converted_at_the_price_in_force(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000000", price="4")
    assert transfer_in(ledger, "a", "800000").is_accepted  # 80%: band B
    outcome = transfer_in(ledger, "b", "12500.00000001")
    assert (outcome.context["fixed_quota"], outcome.context["q_max"]) == ("12500", "12500")
    run(ledger, command("mark_prices", prices={"ABC": "3"}, effective_at=at(10)))
    later = transfer_in(ledger, "b", "20000", effective_at=at(11))
    # 50,000 / 3 = 16,666.666... rounded down to the asset's 8 decimals: never more than allowed.
    assert later.context["fixed_quota"] == "16666.66666666"
    assert later.context["q_max"] == "16666.66666666"
    assert later.context["price_usdt"] == "3"


def test_a_price_mark_moves_the_pool_so_cap_decisions_cannot_predate_it(ledger: Ledger) -> None:
    """A mark is noted on the capped asset's pool, so T and the price are read together and a
    transfer dated before the mark (after it was recorded) is refused as invalid input."""
    setup_capped_asset(ledger, upper_limit="1000000", price="1")
    assert transfer_in(ledger, "a", "800000").is_accepted  # band A up to 80%
    assert transfer_in(ledger, "a", "50000").is_accepted  # band B: the fixed quota
    assert transfer_in(ledger, "a", "50000").is_accepted  # 90%: band C
    run(ledger, command("mark_prices", prices={"ABC": "2"}, effective_at=at(60)))
    with pytest.raises(CommandInvalid) as raised:
        transfer_in(ledger, "b", "100000", effective_at=at(30))
    assert raised.value.errors[0].field == "effective_at"
    later = transfer_in(ledger, "c", "100000", effective_at=at(61))
    assert (later.context["price_usdt"], later.context["q_max"]) == ("2", "25000")


def test_per_account_quota_overrides_the_assets_fixed_quota(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000000", price="0.5")
    assert transfer_in(ledger, "a", "800000").is_accepted
    run(
        ledger,
        command(
            "set_account_quota", user="vip", account="cross", asset="ABC", fixed_quota_usdt="10000"
        ),
    )
    vip = transfer_in(ledger, "vip", "30000")
    assert (vip.context["q_max"], vip.context["fixed_quota_source"]) == ("20000", "account")
    other = transfer_in(ledger, "other", "120000")
    assert (other.context["q_max"], other.context["fixed_quota_source"]) == ("100000", "asset")


def test_portfolio_accounts_count_in_the_total_and_are_limited(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    assert transfer_in(ledger, "p", "700", account="portfolio").is_accepted
    assert transfer_in(ledger, "c", "100").is_accepted
    assert pool_total(ledger) == Decimal("800")
    outcome = transfer_in(ledger, "p", "250", account="portfolio")
    assert (outcome.status, outcome.context["total"], outcome.context["q_max"]) == (
        "rejected",
        "800",
        "200",
    )


def test_isolated_accounts_are_neither_limited_nor_counted(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    assert transfer_in(ledger, "c", "800").is_accepted
    assert transfer_in(ledger, "c", "200").is_accepted  # T = U: band D for cross and portfolio
    isolated = transfer_in(ledger, "i", "5000", account="isolated:ABCUSDT")
    assert isolated.is_accepted
    assert "band" not in isolated.context
    assert pool_total(ledger) == Decimal("1000")
    from projections.queries import assets_view

    abc = next(v for v in assets_view(ledger) if v.asset == "ABC")
    assert (abc.total, abc.isolated_total, abc.band) == ("1000", "5000", "D")


@pytest.mark.parametrize("rank", [1, 2, 6], ids=["stablecoin-rank-1", "rank-2", "rank-6"])
def test_uncapped_ranks_are_not_limited(ledger: Ledger, rank: int) -> None:
    run(ledger, command("list_asset", asset="BIG", collateral_rank=rank))
    with pytest.raises(CommandInvalid) as refused:
        run(ledger, command("set_collateral_cap", asset="BIG", upper_limit="10"))
    assert refused.value.errors[0].field == "asset"
    assert transfer_in(ledger, "u", "1000000000", asset="BIG").is_accepted


def test_capped_rank_without_upper_limit_is_tracked_then_limited_once_set(ledger: Ledger) -> None:
    run(ledger, command("list_asset", asset="NEW", collateral_rank=9))
    run(ledger, command("mark_prices", prices={"NEW": "1"}))
    assert transfer_in(ledger, "early", "900", asset="NEW").is_accepted  # no U: not limited
    assert "band" not in transfer_in(ledger, "early", "1", asset="NEW").context
    assert run(ledger, command("set_collateral_cap", asset="NEW", upper_limit="1000")).is_accepted
    outcome = transfer_in(ledger, "late", "100", asset="NEW")
    # T counted the transfers made before the cap existed: 901 of 1,000 is band C.
    assert (outcome.context["total"], outcome.context["band"], outcome.context["q_max"]) == (
        "901",
        "C",
        "99",
    )


def test_a_refusal_is_recorded_on_the_account_and_the_pool(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="100", price="1")
    assert transfer_in(ledger, "a", "80").is_accepted
    assert transfer_in(ledger, "a", "20").is_accepted  # T = U
    before = event_count(ledger)
    refused = transfer_in(ledger, "b", "1")
    assert refused.status == "rejected"
    stored = list(ledger.recorder.select_notifications(start=before + 1, limit=10))
    topics = sorted(n.topic.rsplit(".", 1)[-1] for n in stored)
    assert topics == ["Recorded", "Registered", "TransferInRefused", "TransferInRejected"]
    assert len(refused.events) == len(stored)
    refusal = next(
        ledger.mapper.to_domain_event(n) for n in stored if n.topic.endswith("TransferInRefused")
    )
    assert refusal.decision["q_max"] == "0"
    assert refusal.decision["band"] == "D"
    assert refusal.request_id == refused.request_id


def test_transfer_out_lowers_the_platform_total_and_reopens_room(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    assert transfer_in(ledger, "a", "800").is_accepted
    out = run(
        ledger, command("transfer_out", user="a", account="cross", asset="ABC", quantity="300")
    )
    assert out.is_accepted
    assert pool_total(ledger) == Decimal("500")
    assert transfer_in(ledger, "b", "300").is_accepted  # band A again: 800 - 500


def test_transfer_out_refuses_more_than_held_and_unopened_accounts(ledger: Ledger) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    assert transfer_in(ledger, "a", "10").is_accepted
    too_much = run(
        ledger,
        command("transfer_out", user="a", account="cross", asset="ABC", quantity="10.00000001"),
    )
    assert (too_much.status, too_much.reason) == ("rejected", "insufficient_balance")
    never = run(
        ledger, command("transfer_out", user="nobody", account="cross", asset="ABC", quantity="1")
    )
    assert (never.status, never.reason) == ("rejected", "account_not_open")
    assert pool_total(ledger) == Decimal("10")


def test_a_command_dated_before_the_latest_event_it_would_change_is_invalid(
    ledger: Ledger,
) -> None:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    assert transfer_in(ledger, "a", "10", effective_at=at(30)).is_accepted
    before = event_count(ledger)
    with pytest.raises(CommandInvalid) as raised:
        transfer_in(ledger, "b", "10", effective_at=at(29))  # the pool has moved on to 09:30
    assert raised.value.errors[0].field == "effective_at"
    assert event_count(ledger) == before
    assert transfer_in(ledger, "b", "10", effective_at=at(30)).is_accepted  # equal times are fine
