"""`ledger simulate`: a seeded, deterministic platform history, produced as ledger commands.

Pure: no I/O, no clock, no global random and no floats. The same seed and sizes give the same
commands, dict for dict. The generator keeps a rough model of the ledger (holdings, debt, the
cap's platform totals T, margin levels) only to size realistic requests; the ledger decides every
outcome, and a wrong guess by the model yields a rejection, never an invalid command: whatever
the model believes, a command is only sent when it is valid in every state the ledger can be in
(mode switches, verifications and asset choices never depend on a guessed outcome).

The story: USDT, BTC, ETH and a few capped assets (ranks 7-10, collateral ladders, upper limits)
are listed; users open cross, portfolio and isolated accounts (some through the opening risk
check), fill the capped assets past their caps, borrow and trade into leveraged positions, switch
modes; mid-run one capped asset crashes 40-60% over a few hours, and the hourly risk sweep after
every price mark finds margin calls, auto top-ups and liquidations, some with deficits for the
insurance fund. Afterwards users repay, de-risk, withdraw or buy the dip.
"""

import heapq
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from random import Random
from typing import Any

from ledger.money import format_plain, quantize_down, quantize_up
from ledger.params import (
    BAND_B_RATIO_MIN_DEFAULT,
    BAND_C_RATIO_MIN_DEFAULT,
    FIXED_QUOTA_USDT_DEFAULT,
    MAINTENANCE_BRACKETS_DEFAULT,
    MARGIN_THRESHOLDS_DEFAULT,
    QUOTE_ASSET,
    CapParams,
    CollateralBracket,
    MarginThresholds,
)
from ledger.rules.cap_band import CapDecision, decide_cap_band
from ledger.rules.valuation import LevelKind, Market, Position, value_position
from ledger.times import format_time

# Sizes: below these minimums the special characters (flagged openings, Pro users, whales) and
# the crash would not fit; above the maximums a run is not "a few seconds" but a load test.
ACCOUNTS_MIN = 30
ACCOUNTS_MAX = 100_000
HOURS_MIN = 6
HOURS_MAX = 24 * 31
SEED_MAX = 10**18 - 1  # request ids carry the seed, and must stay within 128 characters

MAJORS = {"BTC": (55_000, 75_000), "ETH": (2_200, 3_800)}  # opening price range in USDT
MAJOR_DECIMALS = 8
CAPPED_SYMBOLS = ("ORCA", "PIXL", "KITE", "LUMA", "NOVA", "ZEST", "VOLT", "MOSS")
CAPPED_COUNT = 3
CAPPED_DECIMALS = 2
PRICE_DECIMALS = {"BTC": 2, "ETH": 2}  # capped assets' prices keep 4 places
# Haircut ladders by rank (DOMAIN.md §4; rank 8 is its example). Every first bracket is at least
# FLAT_NOTIONAL_MAX_USDT, so the leveraged positions below are valued without haircuts.
LADDERS: dict[int, list[tuple[int | None, str]]] = {
    7: [(100_000, "1"), (300_000, "0.7"), (600_000, "0.4"), (None, "0.1")],
    8: [
        (100_000, "1"),
        (250_000, "0.8"),
        (500_000, "0.6"),
        (700_000, "0.3"),
        (1_000_000, "0.1"),
        (None, "0"),
    ],
    9: [(75_000, "1"), (200_000, "0.6"), (400_000, "0.3"), (None, "0")],
    10: [(50_000, "1"), (150_000, "0.5"), (None, "0")],
}
FLAT_NOTIONAL_MAX_USDT = Decimal(45_000)
FEE_RATIO = Decimal("0.001")  # the matching engine's taker fee, paid in the bought asset
LIQUIDATION_FEE_RATIO = Decimal("0.02")  # the ledger's default, for the model only
# The model charges no interest, so it believes in slightly more USDT than the ledger holds; a
# user taking "all" of it takes this share, and is not refused for the model's rounding.
MODEL_MARGIN = Decimal("0.98")
MARGIN_CALL_INTERVAL_HOURS = 24
PRO_MAINTENANCE_RATE = MAINTENANCE_BRACKETS_DEFAULT[0].rate

# The crowd's plans by account kind, with integer weights.
CROWD_PLANS: dict[str, list[tuple[str, int]]] = {
    "cross": [
        ("saver", 25),
        ("capped_long", 35),
        ("capped_long_5x", 10),
        ("major_long", 18),
        ("short", 12),
    ],
    "portfolio": [("saver", 35), ("capped_long", 45), ("major_long", 20)],
    "isolated": [("capped_long", 50), ("major_long", 35), ("short", 15)],
}
# Special characters whose plan changes how their borrowing goes (kept as a flag).
SPECIAL_BORROWERS = frozenset(
    {"cooling", "admin_disabled", "pro_no_quiz", "pro_no_terms", "pro_no_jurisdiction"}
)

ADMIN = "admin:ops"
RISK_ADMIN = "admin:risk"
ENGINE = "engine:matching"


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
    yield from _Simulation(seed, accounts, hours, start).commands()


def summarize(
    commands: Sequence[dict[str, Any]], outcomes: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """What a run did, from its commands and their outcomes (the contract's JSON)."""
    by_type: dict[str, Counter[str]] = {}
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    top_ups: Counter[str] = Counter({"topped_up": 0, "limited": 0, "blocked": 0})
    margin_calls = liquidations = with_deficit = 0
    deficit = uncovered = Decimal(0)
    fund: str | None = None
    for command, outcome in zip(commands, outcomes, strict=True):
        status = outcome["status"]
        by_type.setdefault(command["type"], Counter())[status] += 1
        statuses[status] += 1
        if status == "rejected":
            reasons[outcome["reason"]] += 1
        context = outcome.get("context", {})
        if command["type"] == "fund_insurance" and status == "accepted":
            fund = context["balance_usdt"]
        if command["type"] != "check_margins" or status != "accepted":
            continue
        margin_calls += context["margin_calls"]
        liquidations += context["liquidations"]
        top_ups.update(context["top_ups"])
        deficit += Decimal(context["deficit_usdt"])
        uncovered += Decimal(context["uncovered_usdt"])
        fund = context["insurance_fund_usdt"]
        with_deficit += sum(
            1
            for done in context["accounts"]
            if done["action"] == "liquidation" and Decimal(done["deficit_usdt"]) > 0
        )
    return {
        "commands": len(commands),
        "statuses": dict(sorted(statuses.items())),
        "by_type": {t: dict(sorted(c.items())) for t, c in sorted(by_type.items())},
        "rejection_reasons": dict(sorted(reasons.items())),
        "invalid": statuses["invalid"],
        "margin_calls": margin_calls,
        "top_ups": dict(top_ups),
        "liquidations": liquidations,
        "liquidations_with_deficit": with_deficit,
        "deficit_usdt": format_plain(deficit),
        "uncovered_usdt": format_plain(uncovered),
        "insurance_fund_usdt": fund,
    }


# --- the model --------------------------------------------------------------------------------


@dataclass
class _Asset:
    symbol: str
    rank: int
    decimals: int
    prices: list[Decimal]  # index price in force from each hour (0 .. hours)
    ladder: tuple[CollateralBracket, ...]
    cap: CapParams | None = None

    def units(self, quantity: Decimal) -> Decimal:
        return quantize_down(quantity, self.decimals)


@dataclass
class _Account:
    """One margin account: its plan, and what the generator believes the ledger holds for it."""

    index: int
    user: str
    name: str  # "cross", "portfolio" or "isolated:<PAIR>"
    behaviour: str  # "saver", "long" or "short"
    collateral: str
    deposit: Decimal  # the opening transfer-in, in `collateral`
    target: str = QUOTE_ASSET  # bought by a long, borrowed by a short
    level: Decimal = Decimal(0)  # the planned margin level right after the position's trade
    mode: str | None = None  # cross accounts: the mode the generator knows for certain
    flags: set[str] = field(default_factory=set)
    top_up_choice: str | None = None  # the asset auto top-up will be set to
    top_up_asset: str | None = None  # set: the ledger was told
    spot: Decimal = Decimal(0)  # the owner's spot wallet in top_up_asset
    quotas_usdt: dict[str, Decimal] = field(default_factory=dict)  # per-account fixed quotas
    holdings: dict[str, Decimal] = field(default_factory=dict)
    liabilities: dict[str, Decimal] = field(default_factory=dict)
    is_open: bool = False
    pending_request_id: str | None = None
    called_hour: int | None = None
    is_liquidated: bool = False

    @property
    def account_id(self) -> str:
        return f"{self.user}:{self.name}"

    @property
    def is_isolated(self) -> bool:
        return self.name.startswith("isolated:")

    @property
    def has_debt(self) -> bool:
        return any(q > 0 for q in self.liabilities.values())

    def add(self, book: dict[str, Decimal], asset: str, quantity: Decimal) -> None:
        book[asset] = book.get(asset, Decimal(0)) + quantity
        assert book[asset] >= 0, (self.account_id, asset, book[asset])

    def level_rules(self) -> tuple[LevelKind, MarginThresholds]:
        """The level and thresholds that govern the account (as ledger/handlers/accounts.py)."""
        if self.is_isolated:
            return LevelKind.MARGIN_LEVEL, MARGIN_THRESHOLDS_DEFAULT["isolated"]
        if self.name == "portfolio":
            return LevelKind.COLLATERAL_MARGIN_LEVEL, MARGIN_THRESHOLDS_DEFAULT["classic_3x"]
        mode = self.mode or "classic_3x"
        kind = LevelKind.PRO_MARGIN_LEVEL if mode == "pro" else LevelKind.COLLATERAL_MARGIN_LEVEL
        return kind, MARGIN_THRESHOLDS_DEFAULT[mode]

    def borrow_ratio_min(self) -> Decimal:
        """The value/debt ratio a borrow must stay above; Pro's level turned into that ratio."""
        kind, thresholds = self.level_rules()
        if kind is LevelKind.PRO_MARGIN_LEVEL:
            return 1 + thresholds.borrow_level_min * PRO_MAINTENANCE_RATE
        return thresholds.borrow_level_min


@dataclass(order=True)
class _Step:
    hour: int
    minute: int
    seq: int
    index: int = field(compare=False)  # the account, or -1 for the platform
    action: str = field(compare=False)


class _Simulation:
    def __init__(self, seed: int, accounts: int, hours: int, start: datetime) -> None:
        self.rng = Random(seed)
        self.seed = seed
        self.hours = hours
        self.start = start
        self.crash_start = max(3, hours // 2)
        self.crash_end = self.crash_start + max(2, min(4, hours - self.crash_start - 2)) - 1
        self.count = 0
        self.seq = 0
        self.agenda: list[_Step] = []
        self._markets: dict[int, Market] = {}
        self._actions: dict[str, Callable[[_Account, int, int], Iterator[dict[str, Any]]]] = {
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
        self.accounts: list[_Account] = []
        self.borrowers: list[_Account] = []  # in the order of their first borrow (the sweep's)
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

    def _command(self, type_: str, hour: int, minute: int, **fields: Any) -> dict[str, Any]:
        self.count += 1
        at = self.start + timedelta(hours=hour, minutes=minute)
        return {
            "type": type_,
            "request_id": f"s{self.seed}-{self.count:06d}",
            "effective_at": format_time(at),
            **fields,
        }

    def _schedule(self, hour: int, minute: int, index: int, action: str) -> None:
        assert 0 <= hour < self.hours and 0 <= minute < 60, (hour, minute, action)
        self.seq += 1
        heapq.heappush(self.agenda, _Step(hour, minute, self.seq, index, action))

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

    # --- listing and prices -------------------------------------------------------------------

    def _list_assets(self) -> list[_Asset]:
        rng = self.rng
        flat = (CollateralBracket(up_to_usdt=None, ratio=Decimal(1)),)
        assets = [_Asset(QUOTE_ASSET, 1, MAJOR_DECIMALS, [], flat)]
        for symbol, (low, high) in MAJORS.items():
            opening = Decimal(rng.randint(low, high))
            path = self._walk(opening, 25, Decimal("0.85"), Decimal("1.15"), PRICE_DECIMALS[symbol])
            assets.append(_Asset(symbol, 1, MAJOR_DECIMALS, path, flat))
        for position, symbol in enumerate(rng.sample(CAPPED_SYMBOLS, CAPPED_COUNT)):
            rank = rng.randint(7, 10)
            ladder = tuple(
                CollateralBracket(
                    up_to_usdt=None if up_to is None else Decimal(up_to), ratio=Decimal(ratio)
                )
                for up_to, ratio in LADDERS[rank]
            )
            opening = Decimal(rng.randint(20, 2500)).scaleb(-2)
            path = (
                self._crash_walk(opening)
                if position == 0
                else self._walk(opening, 40, Decimal("0.75"), Decimal("1.3"), 4)
            )
            # The cap is set once the accounts are planned (it depends on their demand).
            cap = CapParams(
                upper_limit=Decimal(1),
                fixed_quota_usdt=FIXED_QUOTA_USDT_DEFAULT,
                band_b_ratio_min=BAND_B_RATIO_MIN_DEFAULT,
                band_c_ratio_min=BAND_C_RATIO_MIN_DEFAULT,
            )
            assets.append(_Asset(symbol, rank, CAPPED_DECIMALS, path, ladder, cap))
        return assets

    def _walk(
        self, opening: Decimal, step: int, low: Decimal, high: Decimal, decimals: int
    ) -> list[Decimal]:
        """An hourly random walk of at most `step` per mille an hour, kept in [low, high]."""
        prices = [opening]
        for _hour in range(self.hours):
            moved = prices[-1] * (1000 + self.rng.randint(-step, step)) / 1000
            prices.append(quantize_down(min(max(moved, low * opening), high * opening), decimals))
        return prices

    def _crash_walk(self, opening: Decimal) -> list[Decimal]:
        """A calm walk, then a fall of 40-60% over the crash hours, then a weak rebound."""
        steps = self.crash_end - self.crash_start + 1
        remaining = Decimal(100 - self.rng.randint(40, 60)) / 100
        factors = []
        for left in range(steps, 1, -1):
            even = remaining ** (Decimal(1) / left)
            factor = even * (100 + self.rng.randint(-4, 4)) / 100
            factors.append(factor)
            remaining /= factor
        factors.append(remaining)
        prices = [opening]
        for hour in range(1, self.hours + 1):
            if self.crash_start <= hour <= self.crash_end:
                moved = prices[-1] * factors[hour - self.crash_start]
            elif hour < self.crash_start:
                moved = prices[-1] * (1000 + self.rng.randint(-15, 15)) / 1000
                moved = min(max(moved, opening * Decimal("0.85")), opening * Decimal("1.15"))
            else:
                moved = max(prices[-1] * (1000 + self.rng.randint(-15, 35)) / 1000, opening / 5)
            prices.append(quantize_down(moved, 4))
        return prices

    def asset(self, symbol: str) -> _Asset:
        return next(a for a in self.assets if a.symbol == symbol)

    def capped(self) -> list[_Asset]:
        return [a for a in self.assets if a.cap is not None]

    def price(self, symbol: str, hour: int) -> Decimal:
        return Decimal(1) if symbol == QUOTE_ASSET else self.asset(symbol).prices[hour]

    # --- who does what, and when -------------------------------------------------------------

    def _plan_accounts(self, count: int) -> None:
        """Special characters first (every DOMAIN.md path at least once), then the crowd."""
        rng = self.rng
        entries: list[tuple[str, str]] = [
            *[("cross", "flag_api"), ("cross", "flag_client_fail"), ("isolated", "flag_isolated")]
            * max(1, count // 120),
            *[("cross", "pro")] * max(2, count // 25),
            *[
                ("cross", f"pro_{why}")
                for why in ("no_quiz", "no_terms", "no_jurisdiction", "small")
            ],
            ("cross", "fiddler"),
            ("cross", "cooling"),
            ("cross", "admin_disabled"),
            ("cross", "quota"),
            *[(rng.choice(("cross", "portfolio")), f"whale:{a.symbol}") for a in self.capped()],
        ]
        for kind, share in (("isolated", count // 5), ("portfolio", count // 10)):
            number = share - sum(1 for k, _ in entries if k == kind)
            entries += [(kind, self._pick(CROWD_PLANS[kind])) for _ in range(max(0, number))]
        entries += [
            ("cross", self._pick(CROWD_PLANS["cross"])) for _ in range(count - len(entries))
        ]
        rng.shuffle(entries)
        crowd_users: list[str] = []  # users of plain cross accounts, who may trade isolated too
        taken: set[str] = set()
        for index, (kind, plan) in enumerate(entries):
            account = self._plan_account(index, f"u{index:04d}", kind, plan)
            if plan in dict(CROWD_PLANS[kind]):
                if kind == "cross":
                    crowd_users.append(account.user)
                elif kind == "isolated" and crowd_users and rng.randrange(2):
                    owner = rng.choice(crowd_users)
                    if f"{owner}:{account.name}" not in taken:
                        account.user = owner
            taken.add(account.account_id)
            self.accounts.append(account)
            self._schedule_plan(account, plan)
        self._schedule(self.crash_end + 1, 3, -1, "fund")

    def _set_caps(self) -> None:
        """Upper limits below what the crowd brings in hour 0 (DOMAIN.md §3), so the last to
        come are refused; the crash asset's limit also leaves room for half of what the
        leveraged longs will buy, so their trades push its total past the limit (band D), but
        not so far that the liquidations cannot bring it back."""
        for asset in self.capped():
            assert asset.cap is not None
            counted = [a for a in self.accounts if not a.is_isolated]
            demand = sum((a.deposit for a in counted if a.collateral == asset.symbol), Decimal(0))
            if asset.symbol == self.crash_asset:
                demand += self._long_demand(counted, asset) / 2
            share = Decimal(self.rng.randint(78, 92)) / 100
            upper_limit = max(quantize_down(demand * share, 0), Decimal(1000))
            asset.cap = asset.cap.model_copy(update={"upper_limit": upper_limit})

    def _long_demand(self, accounts: list[_Account], asset: _Asset) -> Decimal:
        """Roughly what the planned longs on `asset` will buy, in tokens at the opening price."""
        demand = Decimal(0)
        for account in accounts:
            if account.behaviour == "long" and account.target == asset.symbol:
                value = account.deposit * self.price(account.collateral, 0)
                borrowed = min(value / (account.level - 1), FLAT_NOTIONAL_MAX_USDT - value)
                demand += (value + borrowed) / asset.prices[0]
        return demand

    def _pick(self, options: list[tuple[str, int]]) -> str:
        """A weighted choice by integer weights (random.choices would draw floats)."""
        draw = self.rng.randrange(sum(weight for _, weight in options))
        for option, weight in options:
            if draw < weight:
                return option
            draw -= weight
        raise AssertionError("unreachable: the draw is below the total weight")

    def _plan_account(self, index: int, user: str, kind: str, plan: str) -> _Account:
        rng = self.rng
        capped = [a.symbol for a in self.capped()]
        major = rng.choice(tuple(MAJORS))
        if plan.startswith("whale:") or plan in ("saver", "quota", "flag_client_fail"):
            collateral = {
                "saver": self._pick(
                    [(rng.choice(capped), 60), ("BTC", 15), ("ETH", 10), (QUOTE_ASSET, 15)]
                ),
                "quota": rng.choice(capped),
                "flag_client_fail": QUOTE_ASSET,
            }.get(plan, plan.removeprefix("whale:"))
            value = {"saver": rng.randint(5, 300) * 100, "flag_client_fail": 3000}.get(
                plan, rng.randint(60, 150) * 1000
            )
            account = self._new(index, user, kind, "saver", collateral, value, QUOTE_ASSET)
            if plan == "quota":
                account.flags.add("quota")
            return account
        if plan == "short":
            account = self._new(
                index, user, kind, "short", QUOTE_ASSET, rng.randint(20, 150) * 100, major
            )
        elif plan in ("capped_long", "capped_long_5x", "pro"):
            target = self.crash_asset
            if plan == "capped_long" and rng.randrange(4) == 0:
                target = rng.choice(capped[1:])
            elif plan == "pro" and rng.randrange(10) < 3:
                target = major
            collateral = target if plan == "capped_long" and rng.randrange(2) else QUOTE_ASSET
            value = rng.randint(60, 90) * 100 if plan == "pro" else rng.randint(10, 120) * 100
            account = self._new(index, user, kind, "long", collateral, value, target)
        else:  # major_long and the special characters who trade like it
            if plan == "flag_isolated":
                major = "BTC"
            collateral = major if plan == "major_long" and rng.randrange(10) < 3 else QUOTE_ASSET
            value = rng.randint(15, 40) * 100 if plan == "pro_small" else rng.randint(20, 90) * 100
            account = self._new(index, user, kind, "long", collateral, value, major)
        account.mode = {"pro": "pro", "capped_long_5x": "classic_5x", "fiddler": "classic_5x"}.get(
            plan, None if kind != "cross" else "classic_3x"
        )
        account.flags |= self._long_flags(account, plan)
        return account

    def _new(
        self,
        index: int,
        user: str,
        kind: str,
        behaviour: str,
        collateral: str,
        value_usdt: int,
        target: str,
    ) -> _Account:
        base = target if target != QUOTE_ASSET else collateral
        name = f"isolated:{base}{QUOTE_ASSET}" if kind == "isolated" else kind
        deposit = self.asset(collateral).units(Decimal(value_usdt) / self.price(collateral, 0))
        return _Account(index, user, name, behaviour, collateral, deposit, target)

    def _long_flags(self, account: _Account, plan: str) -> set[str]:
        """How this trader borrows, which refusals they run into, whether auto top-up is on."""
        rng = self.rng
        flags = {plan} if plan in SPECIAL_BORROWERS else set()
        if plan in ("cooling", "admin_disabled") or rng.randrange(2):
            flags.add("manual")
            if rng.randrange(100) < 15:
                flags.add("overreach")
        for flag, percent in (
            ("tiny_borrow", 4),
            ("borrow_capped", 5),
            ("greedy_repay", 6),
            ("insufficient_trade", 4),
            ("over_withdraw", 5),
        ):
            if rng.randrange(100) < percent:
                flags.add(flag)
        exposed = account.target == self.crash_asset and account.mode != "pro"
        if account.behaviour == "long" and rng.randrange(100) < (45 if exposed else 10):
            flags.add("top_up")
            flags.add(self._pick([("spot_ample", 5), ("spot_limited", 3), ("spot_zero", 2)]))
            capped_target = self.asset(account.target).cap is not None
            if capped_target and not account.is_isolated and rng.randrange(4) == 0:
                account.top_up_choice = account.target
            else:
                account.top_up_choice = QUOTE_ASSET
        return flags

    def _schedule_plan(self, account: _Account, plan: str) -> None:
        rng = self.rng
        minute = rng.randint(1, 40)
        verified = rng.randint(1, 30)
        first_hour = 2 if plan.startswith("flag_") else 1  # after a verification in hour 1
        position = (rng.randint(first_hour, self.crash_start - 1), rng.randint(5, 50))
        later = (rng.randint(self.crash_end + 1, self.hours - 1), rng.randint(5, 55))
        steps: list[tuple[int, int, str]] = {
            "flag_api": [(0, minute, "flag_api"), (0, minute + 3, "flag_client")],
            "flag_client_fail": [
                (0, minute, "flag_client"),
                (0, minute + 2, "while_pending"),
                (0, minute + 4, "verify_fail"),
                (1, verified, "deposit"),
            ],
            "flag_isolated": [(0, minute, "flag_client"), (1, verified + 5, "late_flagged")],
            "quota": [(0, minute - 1, "quota"), (0, minute, "deposit")],
        }.get(plan, [(0, minute, "deposit")])
        if plan in ("flag_api", "flag_isolated"):
            steps.append((1, verified, "verify_pass"))
        if plan.startswith("pro"):
            steps += [(0, 45, "pro_profile"), (0, 50, "switch_pro")]
        steps += {
            "capped_long_5x": [(0, 50, "switch_5x")],
            "fiddler": [(0, 50, "fiddle")],
            "cooling": [(0, 50, "cooling")],
            "admin_disabled": [(0, 50, "admin_disable")],
        }.get(plan, [])
        if account.behaviour == "saver":
            draw = rng.randrange(10)
            if draw < 3:
                steps.append((*later, "withdraw"))
            elif draw < 6 and self.asset(account.collateral).cap and not account.is_isolated:
                steps.append((*later, "dip"))
        else:
            account.level = self._sample_level(account, position[0])
            steps.append((*position, account.behaviour))
            if "top_up" in account.flags:
                steps.append((position[0], position[1] + 1, "auto_top_up"))
            if plan == "pro" and rng.randrange(10) < 4:
                steps.append((later[0], later[1] - 1, "pro_exit"))
            if rng.randrange(10) < 7:
                steps.append((*later, "reduce"))
        for hour, at_minute, action in steps:
            self._schedule(hour, at_minute, account.index, action)

    def _sample_level(self, account: _Account, hour: int) -> Decimal:
        """The margin level right after the position's trade (the leverage it takes).

        Auto top-up only acts on a margin call, so its users are given a level that the crash
        takes through the margin-call zone before the liquidation level (by the price path).
        """
        rng = self.rng
        ratio_min = account.borrow_ratio_min()
        if account.mode == "pro":
            return ratio_min + Decimal(rng.randint(5, 55)) / 100
        if account.behaviour == "short" or self.asset(account.target).cap is None:
            return ratio_min + Decimal(rng.randint(10, 120)) / 100
        if "top_up" not in account.flags:
            return ratio_min + Decimal(rng.randint(3, 100)) / 100
        _kind, thresholds = account.level_rules()
        prices = self.asset(account.target).prices
        level = ratio_min
        for _attempt in range(50):
            level = ratio_min + Decimal(rng.randint(3, 90)) / 100
            for later in range(hour + 1, self.hours + 1):
                seen = level * prices[later] / prices[hour]
                if seen <= thresholds.margin_call_level * Decimal("1.02"):
                    low = thresholds.liquidation_level * Decimal("1.03")
                    if low <= seen <= thresholds.margin_call_level * Decimal("0.98"):
                        return level
                    break
        return level

    # --- actions: each emits commands and updates the model ----------------------------------

    def _act(self, step: _Step) -> Iterator[dict[str, Any]]:
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

    def _on(
        self, type_: str, account: _Account, hour: int, minute: int, **fields: Any
    ) -> dict[str, Any]:
        """A command on one account; Decimal fields are written as plain decimal strings."""
        plain = {k: format_plain(v) if isinstance(v, Decimal) else v for k, v in fields.items()}
        return self._command(type_, hour, minute, user=account.user, account=account.name, **plain)

    def _by_user(
        self, type_: str, account: _Account, hour: int, minute: int, **fields: Any
    ) -> dict[str, Any]:
        return self._command(type_, hour, minute, user=account.user, **fields)

    def _deposit(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield self._on(
            "transfer_in", account, hour, minute, asset=account.collateral, quantity=account.deposit
        )
        if not self._credit(account, account.collateral, account.deposit, hour) and minute < 58:
            self._schedule(hour, minute + 2, account.index, "retry")

    def _retry(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Refused by the cap (DOMAIN.md §3's message): a saver takes the quoted maximum when it
        is worth having; anyone else brings USDT instead."""
        asset = self.asset(account.collateral)
        quantity = account.deposit
        if asset.cap is not None and not account.is_isolated:
            quantity = self._cap(account, asset.symbol, account.deposit, hour).quantity_max
        if account.behaviour != "saver" or quantity * self.price(asset.symbol, hour) < 1000:
            value = min(account.deposit * self.price(asset.symbol, hour), Decimal(50_000))
            account.collateral, quantity = QUOTE_ASSET, quantize_down(value, 2)
        yield self._on(
            "transfer_in", account, hour, minute, asset=account.collateral, quantity=quantity
        )
        self._credit(account, account.collateral, quantity, hour)

    def _flag_api(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield self._on(
            "transfer_in",
            account,
            hour,
            minute,
            asset=account.collateral,
            quantity=account.deposit,
            channel="api",
            risk_flagged=True,
        )  # refused: opening_risk_check (DOMAIN.md §2)

    def _flag_client(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        command = self._on(
            "transfer_in",
            account,
            hour,
            minute,
            asset=account.collateral,
            quantity=account.deposit,
            channel="client",
            risk_flagged=True,
        )  # pending facial verification: a first transfer of USDT, which no cap refuses
        account.pending_request_id = command["request_id"]
        yield command

    def _while_pending(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        quantity = quantize_down(account.deposit / 10, 2)
        yield self._on(
            "transfer_in", account, hour, minute, asset=account.collateral, quantity=quantity
        )  # refused: verification_pending

    def _verify_pass(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield from self._verify(account, hour, minute, passed=True)

    def _verify_fail(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield from self._verify(account, hour, minute, passed=False)

    def _verify(
        self, account: _Account, hour: int, minute: int, *, passed: bool
    ) -> Iterator[dict[str, Any]]:
        assert account.pending_request_id is not None, account.account_id
        yield self._on(
            "complete_verification",
            account,
            hour,
            minute,
            transfer_request_id=account.pending_request_id,
            passed=passed,
        )
        account.pending_request_id = None
        if passed:
            self._credit(account, account.collateral, account.deposit, hour)

    def _late_flagged(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Only the first transfer is checked (DOMAIN.md §2): a later flag changes nothing."""
        quantity = quantize_down(account.deposit / 5, 2)
        yield self._on(
            "transfer_in",
            account,
            hour,
            minute,
            asset=account.collateral,
            quantity=quantity,
            risk_flagged=True,
        )
        if account.is_open:
            self._credit(account, account.collateral, quantity, hour)

    def _quota(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        quota = Decimal(20_000)
        account.quotas_usdt[account.collateral] = quota
        yield self._on(
            "set_account_quota",
            account,
            hour,
            minute,
            asset=account.collateral,
            fixed_quota_usdt=quota,
            actor=RISK_ADMIN,
        )

    def _pro_profile(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        passed = "pro_no_quiz" not in account.flags
        yield self._by_user("record_pro_quiz", account, hour, minute, passed=passed)
        if "pro_no_terms" not in account.flags:
            yield self._by_user("agree_pro_terms", account, hour, minute)
        supported = "pro_no_jurisdiction" not in account.flags
        yield self._by_user("set_pro_jurisdiction", account, hour, minute, supported=supported)

    def _switch_pro(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        # Certain either way: the account opened with USDT; "pro" users pass every check.
        yield self._by_user("switch_mode", account, hour, minute, to="pro")

    def _switch_5x(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield self._by_user("switch_mode", account, hour, minute, to="classic_5x")

    def _fiddle(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Five switches in a day are allowed, the sixth is refused (DOMAIN.md §6)."""
        for to in ("classic_5x", "classic_3x") * 3:
            yield self._by_user("switch_mode", account, hour, minute, to=to)

    def _cooling(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield self._by_user("start_cooling_off", account, hour, minute, period="1d")

    def _admin_disable(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        account.flags.add("borrowing_disabled")
        yield self._on(
            "admin_set_borrowing",
            account,
            hour,
            minute,
            enabled=False,
            note="New account under risk review",
            actor=RISK_ADMIN,
        )

    def _auto_top_up(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        account.top_up_asset = account.top_up_choice
        yield self._on(
            "set_auto_top_up", account, hour, minute, enabled=True, asset=account.top_up_asset
        )

    def _long(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Borrow USDT and buy the target with it: to the planned level, or by auto-borrow."""
        if not account.is_open or account.is_liquidated:
            return
        target = self.asset(account.target)
        price = target.prices[hour]
        usdt = account.holdings.get(QUOTE_ASSET, Decimal(0))
        value = self._value(account, hour)
        spread = Decimal(self.rng.randint(0, 15)).scaleb(-4)
        keep = (1 - FEE_RATIO) / (1 + spread)
        is_manual = "manual" in account.flags
        spent = Decimal(self.rng.randint(90, 100)) / 100 if is_manual else Decimal(1)
        # level = (value + borrowed - what the trade loses to fee and spread) / borrowed
        borrow = (value - usdt * (1 - keep)) / (account.level - 1 + spent * (1 - keep))
        borrow = quantize_down(min(borrow, FLAT_NOTIONAL_MAX_USDT - value), 2)
        if borrow < 20:
            return
        yield from self._refusals_first(account, hour, minute, value, borrow)
        if "cooling" in account.flags:
            return  # the user's own cooling-off period: no position today
        if is_manual:
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=borrow)
            self._borrow(account, QUOTE_ASSET, borrow, hour)
        sold = quantize_down(usdt + spent * borrow, 2)
        bought = target.units(sold / (price * (1 + spread)))
        fee = target.units(bought * FEE_RATIO)
        yield self._trade(
            account,
            hour,
            minute,
            (QUOTE_ASSET, sold),
            (target.symbol, bought, fee),
            auto_borrow=not is_manual,
        )
        if account.top_up_choice is not None:
            worth = {"spot_ample": 3 * borrow, "spot_limited": borrow / 20}
            spot_value = next((worth[f] for f in account.flags if f in worth), Decimal(0))
            top_up = self.asset(account.top_up_choice)
            account.spot = top_up.units(spot_value / self.price(top_up.symbol, hour))

    def _refusals_first(
        self, account: _Account, hour: int, minute: int, value: Decimal, borrow: Decimal
    ) -> Iterator[dict[str, Any]]:
        """The borrows a platform refuses every day, each for its own reason (DOMAIN.md §5)."""
        if "admin_disabled" in account.flags:
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=borrow)
            account.flags.discard("borrowing_disabled")
            yield self._on(
                "admin_set_borrowing",
                account,
                hour,
                minute,
                enabled=True,
                note="Risk review passed",
                actor=RISK_ADMIN,
            )
        if "cooling" in account.flags:
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=borrow)
        target = self.asset(account.target)
        if "borrow_capped" in account.flags and target.cap is not None:  # no borrow terms
            quantity = target.units(Decimal(100) / target.prices[hour]) or Decimal(1)
            yield self._on("borrow", account, hour, minute, asset=target.symbol, quantity=quantity)
        if "tiny_borrow" in account.flags:  # below the minimum borrow of 10 USDT
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=Decimal(5))
        if "overreach" in account.flags:  # past the initial risk ratio: margin_level
            greedy = quantize_down(value / (account.borrow_ratio_min() - 1) * 13 / 10, 2)
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=greedy)
            self._borrow(account, QUOTE_ASSET, greedy, hour)

    def _short(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Borrow BTC or ETH and sell it for USDT, to the planned level."""
        if not account.is_open or account.is_liquidated:
            return
        target = self.asset(account.target)
        price = target.prices[hour]
        usdt = account.holdings.get(QUOTE_ASSET, Decimal(0))
        spread = Decimal(self.rng.randint(0, 15)).scaleb(-4)
        keep = (1 - FEE_RATIO) * (1 - spread)
        notional = min(usdt / (account.level - keep), FLAT_NOTIONAL_MAX_USDT - usdt)
        quantity = target.units(notional / price)
        if quantity * price < 20:
            return
        yield self._on("borrow", account, hour, minute, asset=target.symbol, quantity=quantity)
        self._borrow(account, target.symbol, quantity, hour)
        proceeds = quantize_down(quantity * price * (1 - spread), MAJOR_DECIMALS)
        fee = quantize_down(proceeds * FEE_RATIO, MAJOR_DECIMALS)
        yield self._trade(
            account, hour, minute, (target.symbol, quantity), (QUOTE_ASSET, proceeds, fee)
        )

    def _reduce(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """After the crash: repay, de-risk with auto-repay, or take the liquidation's remainder."""
        if not account.is_open:
            return
        usdt = account.holdings.get(QUOTE_ASSET, Decimal(0))
        if account.is_liquidated or not account.has_debt:
            if usdt >= 1 and self.rng.randrange(2):
                quantity = quantize_down(usdt * MODEL_MARGIN, 2)
                yield self._on(
                    "transfer_out", account, hour, minute, asset=QUOTE_ASSET, quantity=quantity
                )
                self._debit(account, QUOTE_ASSET, quantity)
            return
        yield from self._mistakes(account, hour, minute)
        if account.behaviour == "short":
            yield from self._buy_back(account, hour, minute)
            return
        liability = account.liabilities.get(QUOTE_ASSET, Decimal(0))
        quantity = quantize_down(min(usdt * MODEL_MARGIN, liability / 2), 2)
        if usdt >= 20 and quantity > 0 and self.rng.randrange(10) < 4:
            yield self._on("repay", account, hour, minute, asset=QUOTE_ASSET, quantity=quantity)
            self._repay(account, QUOTE_ASSET, quantity)
            return
        target = self.asset(account.target)
        sold = target.units(
            account.holdings.get(target.symbol, Decimal(0)) * self.rng.randint(30, 70) / 100
        )
        if sold <= 0:
            return
        spread = Decimal(self.rng.randint(0, 15)).scaleb(-4)
        proceeds = quantize_down(sold * target.prices[hour] * (1 - spread), MAJOR_DECIMALS)
        fee = quantize_down(proceeds * FEE_RATIO, MAJOR_DECIMALS)
        yield self._trade(
            account,
            hour,
            minute,
            (target.symbol, sold),
            (QUOTE_ASSET, proceeds, fee),
            auto_repay=True,
        )

    def _buy_back(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        target = self.asset(account.target)
        price = target.prices[hour]
        liability = account.liabilities.get(target.symbol, Decimal(0))
        usdt = account.holdings.get(QUOTE_ASSET, Decimal(0))
        spread = Decimal(self.rng.randint(0, 15)).scaleb(-4)
        share = Decimal(self.rng.randint(40, 100)) / 100
        sold = quantize_down(min(usdt * 9 / 10, liability * price * (1 + spread) * share), 2)
        bought = target.units(sold / (price * (1 + spread)))
        fee = target.units(bought * FEE_RATIO)
        if bought <= fee:
            return
        is_auto = self.rng.randrange(10) < 6
        yield self._trade(
            account,
            hour,
            minute,
            (QUOTE_ASSET, sold),
            (target.symbol, bought, fee),
            auto_repay=is_auto,
        )
        if not is_auto:
            quantity = min(bought - fee, account.liabilities.get(target.symbol, Decimal(0)))
            if quantity > 0:
                yield self._on(
                    "repay", account, hour, minute, asset=target.symbol, quantity=quantity
                )
                self._repay(account, target.symbol, quantity)

    def _mistakes(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Requests the ledger refuses: more than is owed, more than is held, too much out."""
        target = self.asset(account.target)
        debt_asset = target.symbol if account.behaviour == "short" else QUOTE_ASSET
        if "greedy_repay" in account.flags:
            owed = account.liabilities.get(debt_asset, Decimal(0))
            quantity = self.asset(debt_asset).units(owed * 3) or Decimal(1)
            yield self._on("repay", account, hour, minute, asset=debt_asset, quantity=quantity)
        held = account.holdings.get(target.symbol, Decimal(0))
        sold = target.units(held * 2)
        proceeds = quantize_down(sold * target.prices[hour], 2)
        if "insufficient_trade" in account.flags and proceeds > 0:
            yield self._on(
                "settle_trade",
                account,
                hour,
                minute,
                sell_asset=target.symbol,
                sell_quantity=sold,
                buy_asset=QUOTE_ASSET,
                buy_quantity=proceeds,
                fee_asset=QUOTE_ASSET,
                fee_quantity=Decimal(0),
                actor=ENGINE,
            )
        if "over_withdraw" in account.flags:
            asset = QUOTE_ASSET if account.holdings.get(QUOTE_ASSET) else target.symbol
            quantity = self.asset(asset).units(account.holdings.get(asset, Decimal(0)) / 2)
            if quantity > 0:
                yield self._on(
                    "transfer_out", account, hour, minute, asset=asset, quantity=quantity
                )

    def _withdraw(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        asset = self.asset(account.collateral)
        share = Decimal(self.rng.randint(20, 70)) / 100
        quantity = asset.units(account.holdings.get(asset.symbol, Decimal(0)) * share)
        if not account.is_open or quantity <= 0:
            return
        yield self._on("transfer_out", account, hour, minute, asset=asset.symbol, quantity=quantity)
        self._debit(account, asset.symbol, quantity)

    def _dip(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """A saver buys the dip: more of a capped asset, which the cap may refuse."""
        asset = self.asset(account.collateral)
        if asset.cap is None or not account.is_open:
            return  # refused at opening, the saver came with USDT and stays with it
        value = Decimal(self.rng.randint(20, 400) * 100)
        quantity = asset.units(value / asset.prices[hour])
        yield self._on("transfer_in", account, hour, minute, asset=asset.symbol, quantity=quantity)
        self._credit(account, asset.symbol, quantity, hour)

    def _pro_exit(self, account: _Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Back to Classic 3x: certain to be a switch (the account is in Pro), maybe refused."""
        yield self._by_user("switch_mode", account, hour, minute, to="classic_3x")
        valuation = value_position(position=self._position(account), market=self.market(hour))
        if valuation.is_above(
            LevelKind.COLLATERAL_MARGIN_LEVEL,
            MARGIN_THRESHOLDS_DEFAULT["classic_3x"].borrow_level_min,
        ):
            account.mode = "classic_3x"

    def _trade(
        self,
        account: _Account,
        hour: int,
        minute: int,
        sell: tuple[str, Decimal],
        buy: tuple[str, Decimal, Decimal],
        *,
        auto_borrow: bool = False,
        auto_repay: bool = False,
    ) -> dict[str, Any]:
        """A settle_trade from the matching engine (fee in the bought asset), and its effect."""
        (sell_asset, sold), (buy_asset, bought, fee) = sell, buy
        command = self._on(
            "settle_trade",
            account,
            hour,
            minute,
            sell_asset=sell_asset,
            sell_quantity=sold,
            buy_asset=buy_asset,
            buy_quantity=bought,
            fee_asset=buy_asset,
            fee_quantity=fee,
            auto_borrow=auto_borrow,
            auto_repay=auto_repay,
            actor=ENGINE,
        )
        holdings, liabilities = dict(account.holdings), dict(account.liabilities)
        shortfall = max(Decimal(0), sold - holdings.get(sell_asset, Decimal(0)))
        if shortfall and not (auto_borrow and self._may_borrow(account, sell_asset, hour)):
            return command
        for book, asset, change in (
            (holdings, sell_asset, shortfall - sold),
            (liabilities, sell_asset, shortfall),
            (holdings, buy_asset, bought - fee),
        ):
            book[asset] = book.get(asset, Decimal(0)) + change
        if auto_repay:
            repaid = min(bought - fee, liabilities.get(buy_asset, Decimal(0)))
            holdings[buy_asset] -= repaid
            liabilities[buy_asset] = liabilities.get(buy_asset, Decimal(0)) - repaid
        if shortfall and not self._is_above_borrow_min(account, holdings, liabilities, hour):
            return command
        self._apply(account, holdings, liabilities)
        if shortfall:
            self._note_borrower(account)
        return command

    # --- the model -----------------------------------------------------------------------------

    def _position(self, account: _Account) -> Position:
        return Position(
            holdings=dict(account.holdings), liabilities=dict(account.liabilities), interest={}
        )

    def _value(self, account: _Account, hour: int) -> Decimal:
        return sum((q * self.price(a, hour) for a, q in account.holdings.items()), Decimal(0))

    def market(self, hour: int) -> Market:
        if hour not in self._markets:
            self._markets[hour] = Market(
                prices_usdt={a.symbol: self.price(a.symbol, hour) for a in self.assets},
                ladders={a.symbol: a.ladder for a in self.assets},
                maintenance_brackets={a.symbol: MAINTENANCE_BRACKETS_DEFAULT for a in self.assets},
            )
        return self._markets[hour]

    def _cap(self, account: _Account, symbol: str, quantity: Decimal, hour: int) -> CapDecision:
        asset = self.asset(symbol)
        assert asset.cap is not None, symbol
        return decide_cap_band(
            asset=symbol,
            quantity_requested=quantity,
            platform_total=self.totals[symbol],
            price_usdt=asset.prices[hour],
            params=asset.cap,
            quantity_decimals=asset.decimals,
            fixed_quota_usdt_override=account.quotas_usdt.get(symbol),
        )

    def _credit(self, account: _Account, symbol: str, quantity: Decimal, hour: int) -> bool:
        """A transfer-in as the ledger is expected to decide it (pending, cap), applied."""
        if account.pending_request_id is not None:
            return False
        counts = self.asset(symbol).cap is not None and not account.is_isolated
        if counts:
            if not self._cap(account, symbol, quantity, hour).is_accepted:
                return False
            self.totals[symbol] += quantity
        account.add(account.holdings, symbol, quantity)
        account.is_open = True
        return True

    def _debit(self, account: _Account, symbol: str, quantity: Decimal) -> None:
        if account.holdings.get(symbol, Decimal(0)) < quantity:
            return  # the ledger refuses it: insufficient_balance
        account.add(account.holdings, symbol, -quantity)
        if symbol in self.totals and not account.is_isolated:
            self.totals[symbol] -= quantity

    def _may_borrow(self, account: _Account, symbol: str, hour: int) -> bool:
        if self.asset(symbol).cap is not None:  # capped assets have no borrow terms here
            return False
        blocked = {"borrowing_disabled"} | ({"cooling"} if hour < 24 else set())
        return not account.flags & blocked

    def _borrow(self, account: _Account, symbol: str, quantity: Decimal, hour: int) -> None:
        if not self._may_borrow(account, symbol, hour) or quantity * self.price(symbol, hour) < 10:
            return
        holdings, liabilities = dict(account.holdings), dict(account.liabilities)
        holdings[symbol] = holdings.get(symbol, Decimal(0)) + quantity
        liabilities[symbol] = liabilities.get(symbol, Decimal(0)) + quantity
        if self._is_above_borrow_min(account, holdings, liabilities, hour):
            self._apply(account, holdings, liabilities)
            self._note_borrower(account)

    def _repay(self, account: _Account, symbol: str, quantity: Decimal) -> None:
        owed = account.liabilities.get(symbol, Decimal(0))
        if quantity <= min(owed, account.holdings.get(symbol, Decimal(0))):
            account.add(account.holdings, symbol, -quantity)
            account.add(account.liabilities, symbol, -quantity)

    def _is_above_borrow_min(
        self,
        account: _Account,
        holdings: dict[str, Decimal],
        liabilities: dict[str, Decimal],
        hour: int,
    ) -> bool:
        kind, thresholds = account.level_rules()
        position = Position(holdings=holdings, liabilities=liabilities, interest={})
        valuation = value_position(position=position, market=self.market(hour))
        return valuation.is_above(kind, thresholds.borrow_level_min)

    def _apply(
        self, account: _Account, holdings: dict[str, Decimal], liabilities: dict[str, Decimal]
    ) -> None:
        """New holdings and liabilities; the platform totals follow the capped holdings."""
        if not account.is_isolated:
            for symbol in self.totals:
                change = holdings.get(symbol, Decimal(0)) - account.holdings.get(symbol, Decimal(0))
                self.totals[symbol] += change
        assert all(q >= 0 for q in (*holdings.values(), *liabilities.values())), account
        account.holdings = {a: q for a, q in holdings.items() if q}
        account.liabilities = {a: q for a, q in liabilities.items() if q}

    def _note_borrower(self, account: _Account) -> None:
        if account.index not in self._borrower_indices:
            self._borrower_indices.add(account.index)
            self.borrowers.append(account)

    def _sweep(self, hour: int) -> None:
        """The risk sweep as the ledger is expected to run it (DOMAIN.md §7), on the model."""
        market = self.market(hour)
        for account in self.borrowers:
            if not account.has_debt:
                continue
            kind, thresholds = account.level_rules()
            valuation = value_position(position=self._position(account), market=market)
            if valuation.is_at_or_below(kind, thresholds.liquidation_level):
                self._liquidate(account, hour)
            elif valuation.is_at_or_below(kind, thresholds.margin_call_level) and (
                account.called_hour is None
                or hour - account.called_hour >= MARGIN_CALL_INTERVAL_HOURS
            ):
                account.called_hour = hour
                if account.top_up_asset is not None:
                    self._top_up(account, hour)

    def _liquidate(self, account: _Account, hour: int) -> None:
        proceeds = self._value(account, hour)
        debt = sum((q * self.price(a, hour) for a, q in account.liabilities.items()), Decimal(0))
        surplus = proceeds - debt
        remainder = Decimal(0)
        if surplus > 0:
            fee = min(LIQUIDATION_FEE_RATIO * proceeds, surplus)
            remainder = quantize_down(surplus - fee, MAJOR_DECIMALS)
        self._apply(account, {QUOTE_ASSET: remainder}, {})
        account.is_liquidated = True

    def _top_up(self, account: _Account, hour: int) -> None:
        """Lift the level to the mode's initial risk ratio from the spot wallet, within the cap."""
        symbol = account.top_up_asset
        assert symbol is not None
        kind, thresholds = account.level_rules()
        valuation = value_position(position=self._position(account), market=self.market(hour))
        numerator, denominator = valuation.level_terms(kind)
        needed_usdt = thresholds.borrow_level_min * denominator - numerator
        asset = self.asset(symbol)
        quantity = min(
            quantize_up(needed_usdt * Decimal("1.001") / self.price(symbol, hour), asset.decimals),
            account.spot,
        )
        if asset.cap is not None and not account.is_isolated and quantity > 0:
            quantity = min(quantity, self._cap(account, symbol, quantity, hour).quantity_max)
        if quantity > 0:
            holdings = dict(account.holdings)
            holdings[symbol] = holdings.get(symbol, Decimal(0)) + quantity
            self._apply(account, holdings, account.liabilities)
            account.spot -= quantity
