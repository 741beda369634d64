"""Opening risk check on the first transfer-in to an account (DOMAIN.md §2)."""

import pytest

from ledger.rules.opening_check import (
    OPENING_RISK_MESSAGE,
    Channel,
    OpeningVerdict,
    decide_opening_check,
)


@pytest.mark.parametrize(
    ("is_first_transfer", "risk_flagged", "channel", "verdict"),
    [
        (False, False, Channel.API, OpeningVerdict.NOT_CHECKED),
        (False, False, Channel.CLIENT, OpeningVerdict.NOT_CHECKED),
        (False, True, Channel.API, OpeningVerdict.NOT_CHECKED),
        (False, True, Channel.CLIENT, OpeningVerdict.NOT_CHECKED),
        (True, False, Channel.API, OpeningVerdict.PASSED),
        (True, False, Channel.CLIENT, OpeningVerdict.PASSED),
        (True, True, Channel.API, OpeningVerdict.REJECTED),
        (True, True, Channel.CLIENT, OpeningVerdict.PENDING_VERIFICATION),
    ],
    ids=[
        "later-unflagged-api",
        "later-unflagged-client",
        "later-flagged-api-never-checked-again",
        "later-flagged-client-never-checked-again",
        "first-unflagged-api",
        "first-unflagged-client",
        "first-flagged-api-rejected",
        "first-flagged-client-pending-verification",
    ],
)
def test_only_a_flagged_first_transfer_is_stopped_and_the_channel_says_how(
    is_first_transfer: bool, risk_flagged: bool, channel: Channel, verdict: OpeningVerdict
) -> None:
    decision = decide_opening_check(
        is_first_transfer=is_first_transfer, risk_flagged=risk_flagged, channel=channel
    )
    assert decision.verdict is verdict
    assert decision.context() == {
        "first_transfer": is_first_transfer,
        "risk_flagged": risk_flagged,
        "channel": channel.value,
        "opening_check": verdict.value,
    }


def test_channels_are_the_contract_strings() -> None:
    assert [channel.value for channel in Channel] == ["api", "client"]


def test_opening_risk_message_is_exact() -> None:
    assert OPENING_RISK_MESSAGE == (
        "Opening a margin account is currently restricted. To proceed, please complete the risk "
        "assessment. Please check Binance Margin Account Opening Risk Assessment FAQ for details."
    )
