"""Account kinds, statuses and Cross Margin modes (DOMAIN.md §1, §6)."""

from enum import StrEnum


class AccountKind(StrEnum):
    CROSS = "cross"
    PORTFOLIO = "portfolio"
    ISOLATED = "isolated"


class AccountStatus(StrEnum):
    NOT_OPEN = "not_open"
    PENDING_VERIFICATION = "pending_verification"
    OPEN = "open"


class Mode(StrEnum):
    CLASSIC_3X = "classic_3x"
    CLASSIC_5X = "classic_5x"
    PRO = "pro"


def account_kind(account: str) -> AccountKind:
    return AccountKind(account.split(":", 1)[0])
