"""Generated stores for the benchmarks: accounts with N events of their own in a store of M.

`generate_focus_history(ledger, events=M, account_events=(N1, N2, ...))` is `simulate.bulk`'s
history (the same users, commands, hourly jobs and snapshots, written through the domain
aggregates about a thousand events per transaction) in which the first accounts opened, one per
Ni, are given a steady share of the commands: whenever such a focus account's events fall behind
Ni/M of all the events written so far, the next command is one of its own (a trade, transfer,
borrow or repay, drawn with the bulk weights). Its events are thus spread evenly over the whole
history, so that a moment drawn from them can be anywhere in the log; its hourly interest
charges come on top, as for any borrower. The same seed gives the same history.
"""

from collections.abc import Sequence
from datetime import timedelta
from random import Random

from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.domain.account import MarginAccount
from ledger.rules.interest import HOUR, floor_hour
from ledger.simulate.bulk import SAVE_EVERY, WEIGHTS, BulkSummary, _Bulk

# A focus account's own commands: what users do to an account (price marks are the market's).
FOCUS_WEIGHTS = {action: weight for action, weight in WEIGHTS.items() if action != "mark"}
# A focus account's share runs ahead of Ni/M by this fraction of the run (1/50 = 2%), so that it
# has its Ni events before the run ends.
FOCUS_LEAD_DIVISOR = 50


class FocusSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    bulk: BulkSummary
    accounts: dict[str, int]  # focus account id -> its events (its last version), as asked
    log_events: int  # every event in the store, the set-up included


def default_users(events: int) -> int:
    """Users for a store of `events`: about 500 events each, between 20 and 2,000."""
    return max(20, min(2000, events // 500))


def generate_focus_history(
    ledger: Ledger,
    *,
    events: int,
    account_events: Sequence[int],
    users: int | None = None,
    seed: int = 1,
    save_every: int = SAVE_EVERY,
) -> FocusSummary:
    """Write at least `events` events to an empty store, with one focus account per entry of
    `account_events` holding at least that many events of its own."""
    assert account_events and all(n > 0 for n in account_events), account_events
    assert sum(account_events) < events, (account_events, events)
    bulk = _FocusBulk(ledger, users or default_users(events), seed, events, account_events)
    summary = bulk.run(events, save_every, None)
    for focus, target in zip(bulk.focus, account_events, strict=True):
        assert focus.version >= target, (focus.account_id, focus.version, target)
    return FocusSummary(
        bulk=summary,
        accounts={focus.account_id: focus.version for focus in bulk.focus},
        log_events=ledger.recorder.max_notification_id() or 0,
    )


class _FocusBulk(_Bulk):
    def __init__(
        self, ledger: Ledger, users: int, seed: int, events: int, account_events: Sequence[int]
    ) -> None:
        super().__init__(ledger, users, seed)
        self.events_target = events
        self.account_events_targets = tuple(account_events)
        self.focus: list[MarginAccount] = []
        # Its own generator, so that the focus accounts' choices never shift the bulk ones.
        self.focus_rng = Random(f"focus-{seed}")

    def _command(self) -> None:
        """`_Bulk._command`, but the focus accounts are opened first, and a focus account that
        is behind its share has the next turn."""
        hour = floor_hour(self.now) + HOUR
        self.now += timedelta(microseconds=self.rng.randint(1, 2 * self.step_us))
        while hour <= self.now:  # the hourly jobs: interest, then the new prices
            self._accrue(hour)
            self._mark(hour)
            hour += HOUR
        self.commands += 1
        if len(self.focus) < len(self.account_events_targets):
            opened = len(self.accounts)
            self._onboard()
            self.focus.append(self.accounts[opened])  # the new user's first account
            return
        behind = self._focus_behind()
        if behind is not None:
            actions, weights = list(FOCUS_WEIGHTS), list(FOCUS_WEIGHTS.values())
            getattr(self, f"_{self.focus_rng.choices(actions, weights)[0]}")(behind)
            return
        if self.created < self.users and self.rng.random() < 0.3:
            self._onboard()
            return
        action = self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        if action == "mark":
            self._mark(self.now)
        else:
            getattr(self, f"_{action}")(self.rng.choice(self.accounts))

    def _focus_behind(self) -> MarginAccount | None:
        """The first focus account whose events are behind its share of those written."""
        written = self.by_type.total() + self.events_target // FOCUS_LEAD_DIVISOR
        for focus, target in zip(self.focus, self.account_events_targets, strict=True):
            if focus.version * self.events_target < target * written:
                return focus
        return None
