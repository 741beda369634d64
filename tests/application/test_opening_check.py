"""The opening risk check and facial verification through the Ledger (DOMAIN.md §2)."""

import pytest

from ledger import Ledger
from ledger.commands import CommandInvalid
from ledger.queries import account_view
from tests.support import command, event_count, run, setup_capped_asset, transfer_in

RISK_MESSAGE = (
    "Opening a margin account is currently restricted. To proceed, please complete the risk "
    "assessment. Please check Binance Margin Account Opening Risk Assessment FAQ for details."
)


@pytest.fixture
def listed(ledger: Ledger) -> Ledger:
    setup_capped_asset(ledger, upper_limit="1000", price="1")
    run(ledger, command("list_asset", asset="BTC", collateral_rank=1))
    run(ledger, command("list_asset", asset="ETH", collateral_rank=1))
    return ledger


def verify(
    ledger: Ledger, user: str, transfer_request_id: str, passed: bool, account: str = "cross"
) -> object:
    return run(
        ledger,
        command(
            "complete_verification",
            user=user,
            account=account,
            transfer_request_id=transfer_request_id,
            passed=passed,
        ),
    )


def test_flagged_first_transfer_through_the_api_is_refused_and_nothing_opens(
    listed: Ledger,
) -> None:
    outcome = transfer_in(listed, "u1", "5", asset="USDT", risk_flagged=True)
    assert (outcome.status, outcome.reason, outcome.message) == (
        "rejected",
        "opening_risk_check",
        RISK_MESSAGE,
    )
    view = account_view(listed, "u1:cross")
    assert (view.status, view.holdings) == ("not_open", {})


def test_unflagged_first_transfer_opens_the_account_in_classic_3x(listed: Ledger) -> None:
    assert transfer_in(listed, "u1", "5", asset="USDT").is_accepted
    view = account_view(listed, "u1:cross")
    assert (view.status, view.mode, view.holdings) == ("open", "classic_3x", {"USDT": "5"})


def test_client_channel_waits_for_verification_then_completes(listed: Ledger) -> None:
    pending = transfer_in(
        listed,
        "u1",
        "7",
        asset="USDT",
        channel="client",
        risk_flagged=True,
        request_id="first-transfer",
    )
    assert pending.status == "pending"
    assert account_view(listed, "u1:cross").status == "pending_verification"
    done = verify(listed, "u1", "first-transfer", passed=True)
    assert done.is_accepted
    assert done.context["transfer"] == "completed"
    view = account_view(listed, "u1:cross")
    assert (view.status, view.holdings) == ("open", {"USDT": "7"})


def test_failed_verification_cancels_the_pending_transfer(listed: Ledger) -> None:
    transfer_in(
        listed, "u1", "7", asset="USDT", channel="client", risk_flagged=True, request_id="t-1"
    )
    cancelled = verify(listed, "u1", "t-1", passed=False)
    assert cancelled.context["transfer"] == "cancelled"
    view = account_view(listed, "u1:cross")
    assert (view.status, view.holdings) == ("not_open", {})
    # The account can still be opened later by a new first transfer (checked again).
    assert transfer_in(listed, "u1", "1", asset="USDT", risk_flagged=True).reason == (
        "opening_risk_check"
    )
    assert transfer_in(listed, "u1", "1", asset="USDT").is_accepted


def test_only_the_first_transfer_is_checked(listed: Ledger) -> None:
    assert transfer_in(listed, "u1", "5", asset="USDT").is_accepted
    later = transfer_in(listed, "u1", "5", asset="USDT", risk_flagged=True)
    assert later.is_accepted
    assert later.context["opening_check"] == "not_checked"


def test_each_isolated_pair_is_a_new_first_transfer(listed: Ledger) -> None:
    assert transfer_in(listed, "u1", "5", asset="USDT").is_accepted  # cross opened
    btc = transfer_in(listed, "u1", "1", asset="BTC", account="isolated:BTCUSDT", risk_flagged=True)
    assert btc.reason == "opening_risk_check"  # cross being open does not open a pair
    assert transfer_in(listed, "u1", "1", asset="BTC", account="isolated:BTCUSDT").is_accepted
    eth = transfer_in(
        listed,
        "u1",
        "1",
        asset="ETH",
        account="isolated:ETHUSDT",
        risk_flagged=True,
        channel="client",
    )
    assert eth.status == "pending"  # another pair, checked again
    assert transfer_in(
        listed, "u1", "1", asset="BTC", account="isolated:BTCUSDT", risk_flagged=True
    ).is_accepted  # BTCUSDT is open: never checked again


def test_no_second_transfer_while_verification_is_pending(listed: Ledger) -> None:
    transfer_in(
        listed, "u1", "7", asset="USDT", channel="client", risk_flagged=True, request_id="t-1"
    )
    second = transfer_in(listed, "u1", "3", asset="USDT")
    assert (second.status, second.reason) == ("rejected", "verification_pending")


def test_the_cap_is_decided_again_when_verification_passes(listed: Ledger) -> None:
    pending = transfer_in(
        listed, "late", "300", channel="client", risk_flagged=True, request_id="t-late"
    )
    assert pending.status == "pending"  # band A: 300 <= 800 when asked
    assert transfer_in(listed, "fast", "800").is_accepted  # the band moved on meanwhile
    refused = verify(listed, "late", "t-late", passed=True)
    assert (refused.status, refused.reason, refused.context["q_max"]) == (
        "rejected",
        "collateral_cap",
        "200",
    )
    assert refused.context["transfer"] == "cancelled"
    assert account_view(listed, "late:cross").status == "not_open"


def test_verifying_an_unknown_transfer_is_invalid_and_records_nothing(listed: Ledger) -> None:
    before = event_count(listed)
    with pytest.raises(CommandInvalid) as raised:
        verify(listed, "u1", "no-such-transfer", passed=True)
    assert raised.value.errors[0].field == "transfer_request_id"
    assert event_count(listed) == before
