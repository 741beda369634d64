"""Where an account's read-model rows left history: bisection over the account's log positions.

A read-model row holds the account as the projection last wrote it, not its past, so the row
alone cannot say when it went wrong. The write side can: the account's state right after any of
its events is one as-of replay away (from the nearest snapshot). A row that stopped following
its account (a skipped event, a projection run that died half-way) still equals the account as
it stood after some earlier event; the first of the account's events after that one is where
the read model and the log part. Among the account's events from the row's own last position
on, "the state then differs from the row" turns true once and stays true in that case, so it is
found by bisection in log2(n) replays. A row equal to no state (a value altered in place)
diverges at its own last position: the first probe says so.

Only the account's own facts are compared (status, mode, balances, overrides, version): the
valuation figures depend on prices marked after the event, not on the account.
"""

from bisect import bisect_left
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.domain.account import MarginAccount
from ledger.queries import (
    VALUATION_FIELDS,
    AccountView,
    account_view_of,
    parse_account_id,
    unknown_account_view,
)
from projections.accounts import account_view_of_row, load_account
from projections.queries import replay_events
from projections.sql import Db

ACCOUNT_FACTS = frozenset(
    {
        "kind",
        "status",
        "mode",
        "pair_assets",
        "holdings",
        "liabilities",
        "interest",
        "fixed_quota_usdt_overrides",
        "version",
    }
)
ACCOUNTS_BISECTED_MAX = 100  # per run: each costs log2(its events) as-of replays


class AccountDivergence(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    position: int  # the first of the account's events the read model does not reflect
    agrees_until: int | None  # the last position whose state the row still equals, if any
    is_row_missing: bool  # the read model has no row of the account at all
    replays: int  # as-of replays the bisection took


def account_divergence(
    ledger: Ledger, live: Db, replay: Db, account_id: str, position: int
) -> AccountDivergence | None:
    """The first log position (up to `position`) where the live read model's rows of this
    account stop matching the account's history; None if they match its state at `position`.

    `replay` is a freshly replayed read-model store: its event index, unlike the live one
    under suspicion, is known to be right.
    """
    user, name = parse_account_id(account_id)
    originator_id = MarginAccount.create_id(user, name)
    events = replay.query(
        "SELECT position, originator_version FROM {event_index} "
        "WHERE originator_id = ? AND position <= ? ORDER BY position",
        (str(originator_id), position),
    )
    row = load_account(live, account_id)
    found = _facts(unknown_account_view(account_id) if row is None else account_view_of_row(row))
    if not events:
        return None
    positions = [int(p) for p, _version in events]
    versions = [int(v) for _position, v in events]
    replays = 0

    def differs(index: int) -> bool:
        nonlocal replays
        replays += 1
        return _facts(_account_then(ledger, originator_id, versions[index])) != found

    # The row says it was written at its last position: nothing before that can be where it
    # parted (an absent row parts at the account's first event).
    last = len(positions) - 1
    low = 0 if row is None else min(bisect_left(positions, int(row["last_position"])), last)
    if not differs(last):
        return None
    high = last  # the first index in [low, last] whose state the row differs from
    while low < high:
        middle = (low + high) // 2
        if differs(middle):
            high = middle
        else:
            low = middle + 1
    agrees_until = positions[high - 1] if high > 0 and not differs(high - 1) else None
    return AccountDivergence(
        account=account_id,
        position=positions[high],
        agrees_until=agrees_until,
        is_row_missing=row is None,
        replays=replays,
    )


def _account_then(ledger: Ledger, originator_id: UUID, version: int) -> AccountView:
    account = ledger.repository.get(originator_id, version=version, projector_func=replay_events)
    assert isinstance(account, MarginAccount)
    return account_view_of(account, dict.fromkeys(VALUATION_FIELDS))


def _facts(view: AccountView) -> dict[str, Any]:
    return view.model_dump(include=set(ACCOUNT_FACTS))
