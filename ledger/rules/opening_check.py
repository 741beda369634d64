"""Opening risk check on the first transfer-in to an account (DOMAIN.md §2)."""

from enum import StrEnum

from ledger.params import Frozen

OPENING_RISK_MESSAGE = (
    "Opening a margin account is currently restricted. To proceed, please complete the risk "
    "assessment. Please check Binance Margin Account Opening Risk Assessment FAQ for details."
)


class Channel(StrEnum):
    API = "api"
    CLIENT = "client"


class OpeningVerdict(StrEnum):
    NOT_CHECKED = "not_checked"  # not the account's first transfer: never checked again
    PASSED = "passed"  # first transfer, not flagged
    REJECTED = "rejected"  # first transfer, flagged, through the API
    PENDING_VERIFICATION = "pending_verification"  # first transfer, flagged, through the client


class OpeningDecision(Frozen):
    is_first_transfer: bool
    risk_flagged: bool
    channel: Channel
    verdict: OpeningVerdict

    def context(self) -> dict[str, str | bool]:
        return {
            "first_transfer": self.is_first_transfer,
            "risk_flagged": self.risk_flagged,
            "channel": self.channel.value,
            "opening_check": self.verdict.value,
        }


def decide_opening_check(
    *, is_first_transfer: bool, risk_flagged: bool, channel: Channel
) -> OpeningDecision:
    """The external risk verdict is an input; only the first transfer to an account is checked."""
    if not is_first_transfer:
        verdict = OpeningVerdict.NOT_CHECKED
    elif not risk_flagged:
        verdict = OpeningVerdict.PASSED
    elif channel is Channel.API:
        verdict = OpeningVerdict.REJECTED
    else:
        verdict = OpeningVerdict.PENDING_VERIFICATION
    if verdict in (OpeningVerdict.REJECTED, OpeningVerdict.PENDING_VERIFICATION):
        assert is_first_transfer and risk_flagged, (is_first_transfer, risk_flagged)
    return OpeningDecision(
        is_first_transfer=is_first_transfer,
        risk_flagged=risk_flagged,
        channel=channel,
        verdict=verdict,
    )
