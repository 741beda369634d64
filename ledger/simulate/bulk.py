"""A fast generator of large, valid histories: for benchmarks and large tests only.

`generate_bulk_history(ledger, events=N, users=U, seed=S)` lists USDT, BTC and a capped asset
ABC (rank 8, a haircut ladder, an upper limit) through the real command path (`Ledger.execute`),
then writes at least N events straight through the domain aggregates (whose methods assert
every invariant), about a thousand per transaction. In business-time order: users open cross,
portfolio and isolated (BTCUSDT, ABCUSDT) accounts by a first transfer-in; transfers in and out;
borrows with the hour charged at the borrow; the hourly interest job (each loan, each clock
hour); repays (interest first); settled trades with a fee; price marks on the Assets, noted on
ABC's AssetPool as `mark_prices` does. Every change of ABC held in a cross or portfolio account
moves the pool by the same quantity with the same stamp (`move_platform_total`), so T stays the
sum of those holdings; transfers in obey the cap rule (a request above q_max is cut to it).
Each command's events reach the log together, in the command path's order, commands in
business-time order; snapshots are taken at the Ledger's intervals.

What it skips: no handler decides anything and nothing is refused, so there are no rejection
events and no Request aggregates (no idempotency records); no margin calls, liquidations, mode
switches, verifications or auto-borrows. Borrows keep debt under 30% of the account's value and
only debt-free accounts transfer out, so the margin rules would have accepted them. The same
seed gives the same history (apart from recorded times). Run it on an empty store, or again
with another seed on a store it wrote: new users, after the log's last event (the interest job
then charges only the new run's loans).
"""

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from random import Random
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.commands import parse_command
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import LedgerAggregate, Stamp
from ledger.money import format_plain, quantize_down, quantize_up
from ledger.params import QUOTE_ASSET
from ledger.rules.cap_band import decide_cap_band
from ledger.rules.interest import HOUR, floor_hour, hours_due

START = datetime(2026, 1, 1, tzinfo=UTC)
COIN, CAPPED = "BTC", "ABC"
SYMBOLS = (QUOTE_ASSET, COIN, CAPPED)
DECIMALS = 8  # every asset's quantity_decimals (the default)
CAP_PER_USER = 6000  # ABC's upper limit per user: deposits reach the cap during a run
DEBT_RATIO_MAX = Decimal("0.3")  # debt / value after a borrow: CML > 1.5 even at a 50% haircut
SAVE_EVERY = 1000  # events per transaction
WEIGHTS = {"trade": 40, "transfer_in": 15, "transfer_out": 10, "borrow": 15, "repay": 12, "mark": 2}
SETUP: list[dict[str, Any]] = [
    {"type": "list_asset", "asset": QUOTE_ASSET, "collateral_rank": 1},
    {"type": "list_asset", "asset": COIN, "collateral_rank": 2},
    {"type": "list_asset", "asset": CAPPED, "collateral_rank": 8, "collateral_ladder": [
        {"up_to_usdt": "100000", "ratio": "1"}, {"up_to_usdt": "250000", "ratio": "0.8"},
        {"up_to_usdt": None, "ratio": "0.5"}]},
    {"type": "set_borrow_terms", "asset": QUOTE_ASSET, "hourly_interest_rate": "0.0000041667"},
    {"type": "set_borrow_terms", "asset": COIN, "hourly_interest_rate": "0.0000020833"},
    {"type": "mark_prices", "prices": {COIN: "60000", CAPPED: "2"}},
]  # fmt: skip


class BulkSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    events: int  # events written by the bulk phase
    setup_events: int  # events of the set-up commands (0 when the store was set up before)
    commands: int  # generated commands, each one or more events
    users: int
    accounts: int
    first_at: datetime  # the business time the run started at, and the one it reached
    last_at: datetime
    elapsed_seconds: float
    events_per_second: float
    by_type: dict[str, int]  # events per event class name


def generate_bulk_history(
    ledger: Ledger,
    *,
    events: int,
    users: int = 1000,
    seed: int = 1,
    save_every: int = SAVE_EVERY,
    after_save: Callable[[int], None] | None = None,
) -> BulkSummary:
    """Write at least `events` events for `users` users; `after_save(events written so far)`
    runs after each transaction (e.g. to catch read models up part-way)."""
    assert events > 0 and users > 0 and save_every > 0, (events, users, save_every)
    return _Bulk(ledger, users, seed).run(events, save_every, after_save)


class _Bulk:
    def __init__(self, ledger: Ledger, users: int, seed: int) -> None:
        self.ledger, self.users, self.seed, self.rng = ledger, users, seed, Random(seed)
        self.setup_events = self._set_up()
        self.assets: dict[str, Asset] = {
            s: ledger.get_aggregate(Asset, Asset.create_id(s)) for s in SYMBOLS
        }
        self.pool: AssetPool = ledger.get_aggregate(AssetPool, AssetPool.create_id(CAPPED))
        self.catalog: AssetCatalog = ledger.get_aggregate(AssetCatalog, AssetCatalog.create_id())
        self.prices = {s: a.index_price_usdt or Decimal(0) for s, a in self.assets.items()}
        self.rates = {
            s: a.borrow_terms.hourly_interest_rate
            for s, a in self.assets.items()
            if a.borrow_terms is not None and a.borrow_terms.borrowable
        }
        assert all(self.prices.values()) and self.pool.cap_params is not None
        recorder = ledger.recorder
        last = recorder.select_notifications(start=recorder.max_notification_id() or 0, limit=1)
        self.now = ledger.mapper.to_domain_event(last[0]).effective_at  # type: ignore[attr-defined]
        self.now += timedelta(seconds=1)  # after every event in the log
        self.step_us = max(1, 3600 * 10**6 // (2 * users))  # ~2 commands per user and hour
        self.accounts: list[MarginAccount] = []
        self.borrowers: dict[UUID, MarginAccount] = {}  # open loans, in order of first borrow
        self.created = self.commands = 0
        self.batch: list[DomainEventProtocol[Any]] = []
        self.snapshots: list[Any] = []
        self.by_type: Counter[str] = Counter()

    def _set_up(self) -> int:
        """The parameters through the command path, once per store."""
        if self.ledger.get_aggregate(Asset, Asset.create_id(CAPPED)) is not None:
            return 0
        cap = {"type": "set_collateral_cap", "asset": CAPPED}
        cap["upper_limit"] = str(self.users * CAP_PER_USER)
        before = self.ledger.recorder.max_notification_id() or 0
        for number, command in enumerate([*SETUP[:3], cap, *SETUP[3:]]):
            extra = {"request_id": f"bulk{self.seed}-setup-{number}", "actor": "admin:bulk"}
            outcome = self.ledger.execute(
                parse_command(command | extra | {"effective_at": START.isoformat()})
            )
            assert outcome.is_accepted, outcome
        return (self.ledger.recorder.max_notification_id() or 0) - before

    def run(
        self, events: int, save_every: int, after_save: Callable[[int], None] | None
    ) -> BulkSummary:
        started, first_at, written = time.perf_counter(), self.now, 0
        while written < events:
            self._command()
            if len(self.batch) >= min(save_every, events - written):
                written += len(self.batch)
                self.ledger.events.put(self.batch)  # what save() does, minus its type checks
                if self.snapshots:
                    self.ledger.snapshots.put(self.snapshots)  # type: ignore[union-attr]
                self.batch, self.snapshots = [], []
                if after_save is not None:
                    after_save(written)
        elapsed = time.perf_counter() - started
        # fmt: off
        return BulkSummary(
            events=written, setup_events=self.setup_events, commands=self.commands,
            users=self.created, accounts=len(self.accounts), first_at=first_at, last_at=self.now,
            elapsed_seconds=round(elapsed, 3), events_per_second=round(written / elapsed, 1),
            by_type=dict(sorted(self.by_type.items())),
        )
        # fmt: on

    def _collect(self, *aggregates: LedgerAggregate | None) -> None:
        """Queue a command's events in the order the command path saves its aggregates, and a
        snapshot of each aggregate whose versions passed a multiple of its interval."""
        for aggregate in aggregates:
            new = [] if aggregate is None else aggregate.collect_events()
            if aggregate is None or not new:
                continue
            self.batch.extend(new)
            self.by_type.update(type(e).__name__ for e in new)
            interval = self.ledger.snapshotting_intervals.get(type(aggregate))
            version = aggregate.version
            if interval and version // interval > (version - len(new)) // interval:
                self.snapshots.append(type(aggregate).Snapshot.take(aggregate))

    def _stamp(self, actor: str, at: datetime | None = None, request: str | None = None) -> Stamp:
        request_id = f"bulk{self.seed}-{request or self.commands}"
        return Stamp(effective_at=at or self.now, actor=actor, request_id=request_id)

    def _command(self) -> None:
        hour = floor_hour(self.now) + HOUR
        self.now += timedelta(microseconds=self.rng.randint(1, 2 * self.step_us))
        while hour <= self.now:  # the hourly jobs: interest, then the new prices
            self._accrue(hour)
            self._mark(hour)
            hour += HOUR
        self.commands += 1
        if self.created < self.users and (not self.accounts or self.rng.random() < 0.3):
            self._onboard()
            return
        action = self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        if action == "mark":
            self._mark(self.now)
        else:
            getattr(self, f"_{action}")(self.rng.choice(self.accounts))

    # --- what users and the engine do -----------------------------------------------------------

    def _onboard(self) -> None:
        user = f"b{self.seed}u{self.created:06d}"
        self.created += 1
        names = ["portfolio" if self.rng.random() < 0.1 else "cross"]
        if self.rng.random() < 0.3:
            names.append(self.rng.choice(["isolated:BTCUSDT", "isolated:ABCUSDT"]))
        for name in names:
            pair = self.catalog.split_pair(name.split(":")[1]) if ":" in name else ()
            assert pair is not None, name
            stamp = self._stamp(f"user:{user}")
            account = MarginAccount.register(user=user, account=name, pair_assets=pair, stamp=stamp)
            account.open(transfer_request_id=stamp.request_id, stamp=stamp)
            self.accounts.append(account)
            self._transfer_in(account, QUOTE_ASSET, Decimal(self.rng.randint(500, 50_000)))
            if name != "cross" or self.rng.random() < 0.6:
                self._transfer_in(account, pair[0] if pair else CAPPED)

    def _transfer_in(
        self, account: MarginAccount, asset: str | None = None, quantity: Decimal | None = None
    ) -> None:
        asset = asset or self.rng.choice(account.pair_assets or SYMBOLS)
        value = Decimal(self.rng.randint(200, 20_000))
        quantity = quantity or quantize_down(value / self.prices[asset], DECIMALS)
        decision = {"asset": asset, "requested": format_plain(quantity)}
        pool = self._pool(account, asset)
        if pool is not None:  # the cap rule, decided as the handler does against the pool
            cap = self._cap(quantity)
            if not cap.is_accepted:  # the user asks again for what the rule allows
                quantity = cap.quantity_max
                if not quantity:
                    return
                cap = self._cap(quantity)
            decision |= cap.context()
        stamp = self._stamp(f"user:{account.user}")
        account.transfer_in(asset=asset, quantity=quantity, decision=decision, stamp=stamp)
        self._move(account, pool, "transfer_in", quantity, stamp, decision)

    def _cap(self, quantity: Decimal) -> Any:
        pool = self.pool
        assert pool.cap_params is not None and pool.price_usdt is not None
        # fmt: off
        return decide_cap_band(
            asset=CAPPED, quantity_requested=quantity, platform_total=pool.platform_total,
            price_usdt=pool.price_usdt, params=pool.cap_params, quantity_decimals=DECIMALS,
        )
        # fmt: on

    def _transfer_out(self, account: MarginAccount) -> None:
        held = [a for a, q in sorted(account.holdings.items()) if q > 0]
        if self._value(account)[1] or not held:
            return  # debt-free accounts only: no margin level to keep
        asset = self.rng.choice(held)
        quantity = self._part(account.holding(asset), 10, 100)
        if quantity:
            decision = {"asset": asset, "requested": format_plain(quantity), "debt_usdt": "0"}
            stamp = self._stamp(f"user:{account.user}")
            account.transfer_out(asset=asset, quantity=quantity, decision=decision, stamp=stamp)
            self._move(account, self._pool(account, asset), "transfer_out", -quantity, stamp)

    def _borrow(self, account: MarginAccount) -> None:
        asset = self.rng.choice([a for a in account.pair_assets or SYMBOLS if a in self.rates])
        value, debt = self._value(account)
        room = (DEBT_RATIO_MAX * value - debt) / (1 - DEBT_RATIO_MAX)  # USDT that may be lent
        lent = room * self.rng.randint(20, 100) / 100
        quantity = quantize_down(lent / self.prices[asset], DECIMALS)
        if lent < 20 or not quantity:
            return  # under the minimum borrow (10 USDT), or no room
        # fmt: off
        account.borrow(
            asset=asset, quantity=quantity, is_auto=False, first_hour=floor_hour(self.now),
            first_hour_interest=quantize_up(quantity * self.rates[asset], DECIMALS),
            decision={"asset": asset, "requested": format_plain(quantity)},
            stamp=self._stamp(f"user:{account.user}"),
        )
        # fmt: on
        self._collect(account)  # the borrowable assets (USDT, BTC) have no pool
        self.borrowers.setdefault(account.id, account)

    def _repay(self, account: MarginAccount) -> None:
        loans = sorted(account.open_loans())
        if not loans:
            return
        asset = self.rng.choice(loans)
        owed = account.liability(asset) + account.interest_owed(asset)
        quantity = min(account.holding(asset), owed)
        if self.rng.random() < 0.5:
            quantity = self._part(quantity, 10, 100)
        if not quantity:
            return
        interest = min(quantity, account.interest_owed(asset))
        # fmt: off
        account.repay(
            asset=asset, interest_paid=interest, principal_paid=quantity - interest, is_auto=False,
            decision={"asset": asset, "requested": format_plain(quantity)},
            stamp=self._stamp(f"user:{account.user}"),
        )
        # fmt: on
        self._collect(account)
        if not account.open_loans():
            del self.borrowers[account.id]

    def _trade(self, account: MarginAccount) -> None:
        allowed = account.pair_assets or SYMBOLS
        held = [a for a in allowed if account.holding(a) > 0]
        if not held:
            return
        sell = self.rng.choice(held)
        buy = self.rng.choice([a for a in allowed if a != sell])
        sold = self._part(account.holding(sell), 5, 60)
        bought = quantize_down(sold * self.prices[sell] / self.prices[buy], DECIMALS)
        fee = quantize_down(bought / 1000, DECIMALS)
        if not sold or not bought:
            return
        changes = {sell: -sold, buy: bought - fee}
        stamp = self._stamp("engine:matching")
        # fmt: off
        account.settle_trade(
            sell_asset=sell, sell_quantity=sold, buy_asset=buy, buy_quantity=bought, fee_asset=buy,
            fee_quantity=fee, stamp=stamp,
            decision={"holding_changes": {a: format_plain(q) for a, q in sorted(changes.items())}},
        )
        # fmt: on
        change = changes.get(CAPPED, Decimal(0))
        self._move(account, self._pool(account, CAPPED), "trade", change, stamp)

    # --- jobs -----------------------------------------------------------------------------------

    def _accrue(self, hour: datetime) -> None:
        """The interest job at a clock hour: each loan's due hours, as `settle_interest` does."""
        for account in self.borrowers.values():
            loans = account.open_loans()
            through = account.interest_accrued_through
            due = sorted(
                (h, a) for a in loans for h in hours_due(accrued_through=through[a], until=hour)
            )
            for due_hour, asset in due:
                # fmt: off
                account.charge_interest(
                    asset=asset, hour=due_hour, principal=loans[asset], discount_ratio=Decimal(0),
                    hourly_interest_rate=self.rates[asset],
                    quantity=quantize_up(loans[asset] * self.rates[asset], DECIMALS),
                    stamp=self._stamp("job:accrue-interest", due_hour, f"accrue-{hour:%Y%m%dT%H}"),
                )
                # fmt: on
            self._collect(account)

    def _mark(self, at: datetime) -> None:
        """New prices for ABC and BTC (a walk of up to 2%), on the assets and ABC's pool."""
        stamp = self._stamp("job:prices", at, f"mark-{at:%Y%m%dT%H%M%S%f}")
        for symbol in (CAPPED, COIN):  # in symbol order, like mark_prices
            step = 1 + Decimal(self.rng.randint(-200, 200)) / 10_000
            self.prices[symbol] = (self.prices[symbol] * step).quantize(Decimal("0.0001"))
            self.assets[symbol].mark_price(price_usdt=self.prices[symbol], stamp=stamp)
        self.pool.note_price(price_usdt=self.prices[CAPPED], stamp=stamp)
        self._collect(self.assets[CAPPED], self.assets[COIN], self.pool)

    # --- helpers --------------------------------------------------------------------------------

    def _pool(self, account: MarginAccount, asset: str) -> AssetPool | None:
        return self.pool if asset == CAPPED and account.counts_in_platform_total else None

    # fmt: off
    def _move(
        self, account: MarginAccount, pool: AssetPool | None, movement: str, change: Decimal,
        stamp: Stamp, decision: dict[str, Any] | None = None,
    ) -> None:
        """The account's events, then the pool's, as `move_platform_total` records them."""
        if pool is not None and change:
            move = pool.increase if change > 0 else pool.decrease
            move(
                account_id=account.account_id, movement=movement, quantity=abs(change),
                decision=decision, stamp=stamp,
            )
        self._collect(account, pool)
    # fmt: on

    def _part(self, quantity: Decimal, low: int, high: int) -> Decimal:
        return quantize_down(quantity * self.rng.randint(low, high) / 100, DECIMALS)

    def _value(self, account: MarginAccount) -> tuple[Decimal, Decimal]:
        """The account's holdings and its debt in USDT at the current prices (no haircuts)."""
        value = sum((q * self.prices[a] for a, q in account.holdings.items()), Decimal(0))
        owed = [(a, account.liability(a) + account.interest_owed(a)) for a in account.liabilities]
        return value, sum((q * self.prices[a] for a, q in owed), Decimal(0))
