"""The simulation: sizes, `generate`, and the stream of setup, hourly jobs and planned steps."""

import heapq
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from random import Random
from typing import Any

from ledger.money import format_plain
from ledger.rules.valuation import Market
from ledger.simulate.accounts import Account
from ledger.simulate.base import ADMIN, RISK_ADMIN, Step
from ledger.simulate.onboarding import OnboardingActions
from ledger.simulate.plans import PlansLayer
from ledger.simulate.trading import TradingActions
from ledger.times import format_time

# Sizes: below these minimums the special characters (flagged openings, Pro users, whales) and
# the crash would not fit; above the maximums a run is not "a few seconds" but a load test.
ACCOUNTS_MIN = 30
ACCOUNTS_MAX = 100_000
HOURS_MIN = 6
HOURS_MAX = 24 * 31
SEED_MAX = 10**18 - 1  # request ids carry the seed, and must stay within 128 characters


def generate(seed: int, *, accounts: int, hours: int, start: datetime) -> Iterator[dict[str, Any]]:
    """The commands of one simulated platform history, in business-time order, JSON-ready.

    `start` must be a tz-aware time on the hour: the jobs run at every full hour after it.
    """
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be between 0 and {SEED_MAX}")
    if not ACCOUNTS_MIN <= accounts <= ACCOUNTS_MAX:
        raise ValueError(f"accounts must be between {ACCOUNTS_MIN} and {ACCOUNTS_MAX}")
    if not HOURS_MIN <= hours <= HOURS_MAX:
        raise ValueError(f"hours must be between {HOURS_MIN} and {HOURS_MAX}")
    if start.tzinfo is None or start != start.replace(minute=0, second=0, microsecond=0):
        raise ValueError("start must be a timezone-aware time on the hour")
    yield from Simulation(seed, accounts, hours, start).commands()


class Simulation(PlansLayer, OnboardingActions, TradingActions):
    """One run: the layers (market, model, plans, actions) over one shared state and agenda."""

    def __init__(self, seed: int, accounts: int, hours: int, start: datetime) -> None:
        self.rng = Random(seed)
        self.seed = seed
        self.hours = hours
        self.start = start
        self.crash_start = max(3, hours // 2)
        self.crash_end = self.crash_start + max(2, min(4, hours - self.crash_start - 2)) - 1
        self.count = 0
        self.seq = 0
        self.agenda: list[Step] = []
        self._markets: dict[int, Market] = {}
        self._actions: dict[str, Callable[[Account, int, int], Iterator[dict[str, Any]]]] = {
            "deposit": self._deposit,
            "retry": self._retry,
            "flag_api": self._flag_api,
            "flag_client": self._flag_client,
            "while_pending": self._while_pending,
            "verify_pass": self._verify_pass,
            "verify_fail": self._verify_fail,
            "late_flagged": self._late_flagged,
            "quota": self._quota,
            "pro_profile": self._pro_profile,
            "switch_pro": self._switch_pro,
            "switch_5x": self._switch_5x,
            "fiddle": self._fiddle,
            "cooling": self._cooling,
            "admin_disable": self._admin_disable,
            "auto_top_up": self._auto_top_up,
            "long": self._long,
            "short": self._short,
            "reduce": self._reduce,
            "withdraw": self._withdraw,
            "dip": self._dip,
            "pro_exit": self._pro_exit,
        }
        self.assets = self._list_assets()
        self.crash_asset = self.capped()[0].symbol  # the first capped asset walks into the crash
        self.totals: dict[str, Decimal] = {a.symbol: Decimal(0) for a in self.capped()}
        self.accounts: list[Account] = []
        self.borrowers: list[Account] = []  # in the order of their first borrow (the sweep's)
        self._borrower_indices: set[int] = set()
        self._plan_accounts(accounts)
        self._set_caps()

    # --- the stream -------------------------------------------------------------------------

    def commands(self) -> Iterator[dict[str, Any]]:
        yield from self._setup()
        hour = 0
        while self.agenda:
            step = heapq.heappop(self.agenda)
            while hour < step.hour:
                hour += 1
                yield from self._hourly_jobs(hour)
            yield from self._act(step)
        while hour < self.hours:
            hour += 1
            yield from self._hourly_jobs(hour)

    def _setup(self) -> Iterator[dict[str, Any]]:
        for asset in self.assets:
            fields: dict[str, Any] = {"asset": asset.symbol, "collateral_rank": asset.rank}
            if asset.cap is not None:
                fields["collateral_ladder"] = [
                    {
                        "up_to_usdt": None if b.up_to_usdt is None else format_plain(b.up_to_usdt),
                        "ratio": format_plain(b.ratio),
                    }
                    for b in asset.ladder
                ]
            yield self._command(
                "list_asset", 0, 0, quantity_decimals=asset.decimals, actor=ADMIN, **fields
            )
        for asset in self.capped():
            assert asset.cap is not None
            yield self._command(
                "set_collateral_cap",
                0,
                0,
                asset=asset.symbol,
                upper_limit=format_plain(asset.cap.upper_limit),
                actor=RISK_ADMIN,
            )
        for symbol, rate_range in (("USDT", (500, 1500)), ("BTC", (100, 300)), ("ETH", (200, 600))):
            rate = Decimal(self.rng.randint(*rate_range)).scaleb(-8)  # per hour
            yield self._command(
                "set_borrow_terms",
                0,
                0,
                asset=symbol,
                hourly_interest_rate=format_plain(rate),
                actor=RISK_ADMIN,
            )
        yield self._mark(0)
        fund = Decimal(len(self.accounts) * self.rng.randint(40, 120))
        yield self._command("fund_insurance", 0, 0, amount_usdt=format_plain(fund), actor=ADMIN)

    def _hourly_jobs(self, hour: int) -> Iterator[dict[str, Any]]:
        """Interest for the hour, the new prices, then the risk sweep at those prices."""
        at = format_time(self.start + timedelta(hours=hour))
        yield self._command("accrue_interest", hour, 0, until=at, actor="job:accrue-interest")
        yield self._mark(hour)
        spot = {
            a.account_id: {a.top_up_asset: format_plain(a.spot)}
            for a in self.accounts
            if a.top_up_asset is not None
        }
        yield self._command("check_margins", hour, 0, spot_available=spot, actor="job:risk-sweep")
        self._sweep(hour)

    def _mark(self, hour: int) -> dict[str, Any]:
        prices = {a.symbol: format_plain(a.prices[hour]) for a in self.assets if a.prices}
        return self._command("mark_prices", hour, 0, prices=prices, actor="job:prices")

    def _act(self, step: Step) -> Iterator[dict[str, Any]]:
        if step.index < 0:  # after the crash the platform tops the insurance fund up
            amount = Decimal(len(self.accounts) * self.rng.randint(20, 60))
            yield self._command(
                "fund_insurance",
                step.hour,
                step.minute,
                amount_usdt=format_plain(amount),
                actor=ADMIN,
            )
            return
        account = self.accounts[step.index]
        yield from self._actions[step.action](account, step.hour, step.minute)
