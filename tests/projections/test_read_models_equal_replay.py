"""The read models are right: they equal the write side, add up, balance, and equal a fresh replay.

Back-office reconciliation (DOMAIN.md §9) checks that read models equal a fresh replay and that
the invariants hold (per-asset sum of accounts = platform totals, debits = credits). Here, on
both backends:

1. random command sequences (hypothesis state machine, a fresh store per example) over a capped
   asset with a small upper limit (ABC), USDT and an uncapped asset (ETH), four users with cross,
   portfolio and isolated accounts: transfers, borrows, repays, interest, trades, leveraged longs
   and shorts, price crashes swept by `check_margins` (margin calls, top-ups, liquidations,
   deficits), insurance funding, cap changes, mode switches; the read models are caught up at
   random points (in batches of random size, some models only, one model rebuilt mid-run);
2. a `ledger simulate` history (pending verifications, margin calls, top-ups, liquidations,
   mode switches), the read models built from it in many small batches;
3. several runners catching up the same store at the same time (threads in the same small
   batches; two `ledger project` processes with two runners in other batch sizes): each event
   applied exactly once.

Each time, `assert_read_models_right` checks, after a final catch-up:
- every account of the accounts model equals `ledger.queries.account_view` (the aggregates), and
  the accounts are exactly the registered ones;
- per asset: `total` = Σ cross + portfolio holdings, `isolated_total` = Σ isolated holdings,
  `borrowed_total` = Σ liabilities, `interest_total` = Σ interest; capped: `total` = the
  AssetPool's T, band and ratio = the cap rule's `band_of` / `ratio_for_record` of it;
- the trial balance is zero for every asset, and the journal's account books equal the accounts
  (`/holdings` = holding, `/loan` = -liability, `/interest` = -interest), the insurance fund's
  book its balance;
- the band timeline chains (band_after = the next band_before) and ends at the current band;
- after `ReadModels.rebuild()` every answer and every row of every read model's tables is the same.

Bugs found on the way are reproduced on their own at the end: a pool opened at the end of a
batch (band timeline), and runners whose batches end at different positions (exactly once), both
and runners on SQLite failing with "database is locked" while valuing accounts; all fixed since.
"""

import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql

from ledger import Ledger, limits
from ledger.cli.simulate import run_commands
from ledger.commands import parse_command
from ledger.domain.account import AccountKind, MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.money import format_plain
from ledger.outcomes import Outcome
from ledger.queries import AccountView, account_view
from ledger.rules.cap_band import band_of, ratio_for_record
from ledger.simulate import generate
from projections.asset_totals import TOTAL_FIELDS
from projections.band_timeline import BandChange
from projections.journal import INSURANCE_FUND, TrialBalanceLine, book_balances
from projections.queries import AssetView, ReadSide
from projections.runner import MODELS, ReadModels
from projections.sql import Db
from tests.cli.cli_support import ledger_script
from tests.concurrency.store import events_of_type
from tests.conftest import POSTGRES_URL, postgres_required
from tests.support import at, command, run, transfer_in

ACCOUNT_BOOKS = ("/holdings", "/loan", "/interest")

# --- stores ----------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_store(base_url: str) -> Iterator[str]:
    """A new empty store on the backend of `base_url` (the database_url fixture's): a SQLite file
    beside it, or a PostgreSQL schema named after it, dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    if base_url.startswith("sqlite:///"):
        path = Path(base_url.removeprefix("sqlite:///"))
        yield f"sqlite:///{path.with_name(f'example-{suffix}.sqlite3')}"
        return
    base, _, schema = base_url.partition("?schema=")
    assert schema, base_url
    name = f"{schema}_{suffix}"
    try:
        yield f"{base}?schema={name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def batch_size(size: int) -> Iterator[None]:
    """Catch up in batches of `size` events (the limit is read at every catch-up)."""
    saved = limits.PROJECTION_BATCH_SIZE
    limits.PROJECTION_BATCH_SIZE = size
    try:
        yield
    finally:
        limits.PROJECTION_BATCH_SIZE = saved


def reset_read_models(ledger: Ledger) -> None:
    """Empty every read model and forget its position (what a rebuild does before catching up),
    so that a test builds them from the first event itself."""
    with ReadModels(ledger) as read_models, read_models.store.transaction() as db:
        for name, model in read_models.models.items():
            read_models.store.drop_tables(db, model.tables)
            read_models.store.forget(db, read_models.key(name))
            read_models.store.create_tables(db, model.tables)
    with ReadModels(ledger) as read_models:  # opening sets up whatever else a model needs
        assert set(read_models.positions().values()) == {0}


Steps = list[tuple[str, dict[str, Any]]]  # (command type, fields)


def run_all(ledger: Ledger, steps: Steps, **common: Any) -> None:
    """Run commands that must all be accepted."""
    for type_, fields in steps:
        outcome = run(ledger, command(type_, **common, **fields))
        assert outcome.is_accepted, outcome


# --- what the read models answer ---------------------------------------------------------------


@dataclass(frozen=True)
class Answers:
    """Everything the read models answer, and every row they hold."""

    accounts: list[AccountView]
    assets: list[AssetView]
    bands: list[BandChange]
    trial_balance: list[TrialBalanceLine]
    books: dict[tuple[str, str], Decimal]
    rows: dict[str, list[tuple[Any, ...]]]  # table -> rows in primary key order


def answers_of(read_models: ReadModels) -> Answers:
    side = ReadSide(read_models, catch_up=False)
    rows = {}
    with read_models.store.transaction(commit=False) as db:
        books = book_balances(db)
        for model in read_models.models.values():
            for table in model.tables:
                rows[table.name] = db.query(
                    f"SELECT {', '.join(table.column_names)} FROM {{{table.name}}} "
                    f"ORDER BY {', '.join(table.primary_key)}"
                )
    return Answers(
        accounts=side.accounts(),
        assets=side.assets(),
        bands=side.bands(),
        trial_balance=side.trial_balance(),
        books=books,
        rows=rows,
    )


def assert_same_answers(before: Answers, after: Answers) -> None:
    assert after.accounts == before.accounts
    assert after.assets == before.assets
    assert after.bands == before.bands
    assert after.trial_balance == before.trial_balance
    assert after.books == before.books
    assert after.rows.keys() == before.rows.keys()
    for table, rows in before.rows.items():
        assert len(after.rows[table]) == len(rows), (table, len(rows), len(after.rows[table]))
        for row_before, row_after in zip(rows, after.rows[table], strict=True):
            assert row_after == row_before, (table, row_before, row_after)


# --- the write side ------------------------------------------------------------------------------


def registered_accounts(ledger: Ledger) -> dict[str, MarginAccount]:
    """Every account the write side registered, as its aggregate now."""
    accounts = {}
    for registered in events_of_type(ledger, MarginAccount.Registered):
        account = ledger.get_aggregate(MarginAccount, registered.originator_id)
        assert isinstance(account, MarginAccount)
        accounts[account.account_id] = account
    return accounts


def nonzero(figures: dict[Any, Decimal]) -> dict[Any, Decimal]:
    return {key: value for key, value in figures.items() if value != 0}


# --- the checks ------------------------------------------------------------------------------


def assert_read_models_right(ledger: Ledger) -> Answers:
    """Catch up, check the read models against the write side and their own invariants, rebuild
    them from the first event, and check that every answer and row is the same."""
    with ReadModels(ledger) as read_models:
        read_models.catch_up()
        statuses = read_models.status()
        assert {s.name for s in statuses} == {m.name for m in MODELS}
        assert all(s.lag == 0 and s.position == s.head for s in statuses), statuses
        before = answers_of(read_models)
        accounts = registered_accounts(ledger)
        assert_accounts_equal_write_side(ledger, accounts, before)
        assert_assets_add_up(ledger, accounts, before)
        assert_books_balance(ledger, accounts, before)
        assert_band_timeline_chains(before)
        read_models.rebuild()
        after = answers_of(read_models)
    assert_same_answers(before, after)
    return before


def assert_accounts_equal_write_side(
    ledger: Ledger, accounts: dict[str, MarginAccount], answers: Answers
) -> None:
    read = {view.account: view for view in answers.accounts}
    assert sorted(read) == sorted(accounts), (sorted(read), sorted(accounts))
    for account_id in sorted(accounts):
        written = account_view(ledger, account_id)
        assert read[account_id] == written, (account_id, read[account_id], written)


def assert_assets_add_up(
    ledger: Ledger, accounts: dict[str, MarginAccount], answers: Answers
) -> None:
    catalog = ledger.get_aggregate(AssetCatalog, AssetCatalog.create_id())
    views = {view.asset: view for view in answers.assets}
    assert sorted(views) == sorted(catalog.symbols if catalog else [])
    sums: dict[str, dict[str, Decimal]] = defaultdict(
        lambda: dict.fromkeys(TOTAL_FIELDS, Decimal(0))
    )
    for account in accounts.values():
        bucket = "isolated_total" if account.kind is AccountKind.ISOLATED else "capped_total"
        for asset, quantity in account.holdings.items():
            sums[asset][bucket] += quantity
        for asset, quantity in account.liabilities.items():
            sums[asset]["borrowed_total"] += quantity
        for asset, quantity in account.interest.items():
            sums[asset]["interest_total"] += quantity
    assert set(sums) <= set(views), (sorted(sums), sorted(views))
    for symbol, view in views.items():
        expected = sums[symbol]
        assert Decimal(view.total) == expected["capped_total"], (view, expected)
        assert Decimal(view.isolated_total) == expected["isolated_total"], (view, expected)
        assert Decimal(view.borrowed_total) == expected["borrowed_total"], (view, expected)
        assert Decimal(view.interest_total) == expected["interest_total"], (view, expected)
        asset = ledger.get_aggregate(Asset, Asset.create_id(symbol))
        assert view.collateral_rank == asset.collateral_rank, (view, asset.collateral_rank)
        price = asset.index_price_usdt
        assert view.price_usdt == (None if price is None else format_plain(price)), view
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(symbol))
        if pool is not None:  # a cap-eligible asset: the pool keeps T, capped or not yet
            assert Decimal(view.total) == pool.platform_total, (view, pool.platform_total)
        params = None if pool is None else pool.cap_params
        assert view.capped == (params is not None), (view, params)
        if params is None:
            assert (view.band, view.ratio, view.upper_limit) == (None, None, None), view
            continue
        assert pool is not None
        assert view.upper_limit and view.fixed_quota_usdt and view.ratio, view
        assert Decimal(view.upper_limit) == params.upper_limit, (view, params)
        assert Decimal(view.fixed_quota_usdt) == params.fixed_quota_usdt, (view, params)
        band = band_of(platform_total=pool.platform_total, params=params).value
        assert view.band == band, (view, band)
        ratio = ratio_for_record(pool.platform_total, params.upper_limit)
        assert Decimal(view.ratio) == ratio, (view, ratio)


def assert_books_balance(
    ledger: Ledger, accounts: dict[str, MarginAccount], answers: Answers
) -> None:
    for line in answers.trial_balance:
        assert line.is_balanced and line.difference == "0", line
        assert line.debit_total == line.credit_total, line
    per_asset: dict[str, Decimal] = defaultdict(Decimal)
    for (_book, asset), balance in answers.books.items():
        per_asset[asset] += balance
    assert nonzero(per_asset) == {}, per_asset
    expected: dict[tuple[str, str], Decimal] = {}
    for account_id, account in accounts.items():
        for asset, quantity in nonzero(account.holdings).items():
            expected[(f"{account_id}/holdings", asset)] = quantity
        for asset, quantity in nonzero(account.liabilities).items():
            expected[(f"{account_id}/loan", asset)] = -quantity
        for asset, quantity in nonzero(account.interest).items():
            expected[(f"{account_id}/interest", asset)] = -quantity
    fund = ledger.get_aggregate(InsuranceFund, InsuranceFund.create_id())
    if fund is not None and fund.balance_usdt:
        expected[(INSURANCE_FUND, "USDT")] = fund.balance_usdt
    journal = {
        key: balance
        for key, balance in nonzero(answers.books).items()
        if key[0].endswith(ACCOUNT_BOOKS) or key[0] == INSURANCE_FUND
    }
    assert journal == expected, (
        {k: v for k, v in journal.items() if expected.get(k) != v},
        {k: v for k, v in expected.items() if journal.get(k) != v},
    )
    assert all(asset == "USDT" for book, asset in answers.books if book == INSURANCE_FUND)


def assert_band_timeline_chains(answers: Answers) -> None:
    by_asset: dict[str, list[BandChange]] = defaultdict(list)
    for change in answers.bands:
        by_asset[change.asset].append(change)
    views = {view.asset: view for view in answers.assets}
    assert set(by_asset) <= set(views), sorted(by_asset)
    for symbol, view in views.items():
        changes = by_asset.get(symbol, [])
        if not view.capped:
            assert all(c.band_after is None for c in changes[-1:]), (symbol, changes)
            continue
        assert changes, f"{symbol} is capped (band {view.band}) but no band change is recorded"
        assert changes[0].band_before is None, changes[0]  # the first cap gave it a band
        positions = [c.position for c in changes]
        assert positions == sorted(set(positions)), positions
        for earlier, later in itertools.pairwise(changes):
            assert later.band_before == earlier.band_after, (earlier, later)
        for change in changes:
            assert change.band_before != change.band_after, change
            if change.upper_limit is not None:
                ratio = ratio_for_record(
                    Decimal(change.platform_total_after), Decimal(change.upper_limit)
                )
                assert change.ratio_after is not None, change
                assert Decimal(change.ratio_after) == ratio, change
        assert changes[-1].band_after == view.band, (changes[-1], view)


# --- 1. random command sequences -------------------------------------------------------------

USERS = ("u1", "u2", "u3", "u4")
PRO_USERS = ("u1", "u2")  # quiz passed, terms agreed, jurisdiction supported
ACCOUNTS = ("cross", "portfolio", "isolated:ABCUSDT")
PAIR = ("ABC", "USDT")
DECIMALS = {"USDT": 2, "ABC": 2, "ETH": 4}
UPPER_LIMIT = "1000"  # ABC tokens; the fixed quota F = 300 USDT = 300 ABC at price 1
MODEL_NAMES = tuple(m.name for m in MODELS)

users = st.sampled_from(USERS)
accounts = st.sampled_from(ACCOUNTS)
any_asset = st.sampled_from(("USDT", "ABC", "ETH"))
values_usdt = st.sampled_from(["400", "150", "900", "20", "2500", "3"]).map(Decimal)
deposits_usdt = st.sampled_from(["400", "20", "150", "900", "2500", "6000"]).map(Decimal)
fractions = st.sampled_from(["1", "1.5", "0.5", "0.1"]).map(Decimal)
# Crashes and jumps first (the simplest examples hypothesis tries are the first choices): at
# 0.6 a long borrowed 1:1 is in the margin-call zone and one borrowed 1.5:1 is liquidated.
abc_prices = st.sampled_from(["0.6", "0.45", "0.75", "0.2", "1.6", "3", "1", "1.1", "0.85"])
eth_prices = st.sampled_from(["60", "250", "30", "130", "100", "70", "85"])


def quantity(value: Decimal, asset: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-DECIMALS[asset]), rounding=ROUND_DOWN)


class ReadModelMachine(RuleBasedStateMachine):
    """Random lifecycles; the read models caught up at random points; checked at the end."""

    base_url = ""  # set by the test: the database_url fixture's store names the backend

    def __init__(self) -> None:
        super().__init__()
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(fresh_store(self.base_url))
        self.ledger = self._stack.enter_context(Ledger(self.url))
        self.numbers = itertools.count(1)
        self.minute = 0
        self.prices = {"USDT": Decimal(1), "ABC": Decimal(1), "ETH": Decimal(100)}
        self.opened: list[tuple[str, str]] = []  # (user, account) in order of opening

    @initialize(
        positions=st.lists(
            st.tuples(
                st.sampled_from(["long", "short", "pro"]),
                users,
                accounts,
                st.sampled_from(["ABC", "ETH"]),
                values_usdt,
                fractions,
            ),
            min_size=2,
            max_size=4,
        ),
        first_catch_up=st.sampled_from([None, 1, 5, 1000]),
        crash=st.tuples(abc_prices, eth_prices),
    )
    def market(
        self,
        positions: list[tuple[str, str, str, str, Decimal, Decimal]],
        first_catch_up: int | None,
        crash: tuple[str, str],
    ) -> None:
        """The market, Pro qualifications, a few leveraged positions, maybe a catch-up, and a
        first move of the prices with its risk sweep; the rules then go on from there."""
        market: Steps = [
            ("list_asset", {"asset": "USDT", "collateral_rank": 1, "quantity_decimals": 2}),
            ("list_asset", {"asset": "ABC", "collateral_rank": 8, "quantity_decimals": 2}),
            ("list_asset", {"asset": "ETH", "collateral_rank": 2, "quantity_decimals": 4}),
            (
                "set_collateral_cap",
                {"asset": "ABC", "upper_limit": UPPER_LIMIT, "fixed_quota_usdt": "300"},
            ),
            ("mark_prices", {"prices": {"ABC": "1", "ETH": "100"}}),
            ("set_borrow_terms", {"asset": "USDT", "hourly_interest_rate": "0.001"}),
            ("set_borrow_terms", {"asset": "ABC", "hourly_interest_rate": "0.002"}),
            ("set_borrow_terms", {"asset": "ETH", "hourly_interest_rate": "0.0005"}),
        ]
        for user in PRO_USERS:
            market += [
                ("record_pro_quiz", {"user": user, "passed": True}),
                ("agree_pro_terms", {"user": user}),
                ("set_pro_jurisdiction", {"user": user, "supported": True}),
            ]
        for type_, fields in market:
            outcome = self._run(type_, **fields)
            assert outcome.is_accepted, outcome
        for kind, user, account, asset, value, leverage in positions:
            if kind == "long":
                self.open_long(user, account, asset, value, leverage, top_up=user in PRO_USERS)
            elif kind == "short":
                self.open_short(user, account, asset, value, leverage)
            else:
                self.go_pro(user)
        if first_catch_up is not None:
            self.catch_up(first_catch_up, None)
        self.mark_prices(*crash, with_spot=True)

    def teardown(self) -> None:
        try:
            assert_read_models_right(self.ledger)
        finally:
            self._stack.close()

    # --- collateral and debt ------------------------------------------------------------------

    @rule(user=users, account=accounts, asset=any_asset, value=deposits_usdt)
    def transfer_in(self, user: str, account: str, asset: str, value: Decimal) -> None:
        asset = self._allowed(account, asset)
        self._run_quantity("transfer_in", user, account, asset, value / self.prices[asset])

    @precondition(lambda self: self.opened)
    @rule(data=st.data(), asset=any_asset, fraction=fractions)
    def transfer_out(self, data: st.DataObject, asset: str, fraction: Decimal) -> None:
        user, account = data.draw(st.sampled_from(self.opened))
        asset = self._allowed(account, asset)
        held = self._figures(user, account, "holdings").get(asset, Decimal(0))
        self._run_quantity("transfer_out", user, account, asset, held * fraction)

    @precondition(lambda self: self.opened)
    @rule(data=st.data(), asset=any_asset, value=values_usdt)
    def borrow(self, data: st.DataObject, asset: str, value: Decimal) -> None:
        user, account = data.draw(st.sampled_from(self.opened))
        asset = self._allowed(account, asset)
        self._run_quantity("borrow", user, account, asset, value / self.prices[asset])

    @precondition(lambda self: self.opened)
    @rule(data=st.data(), asset=any_asset, fraction=fractions)
    def repay(self, data: st.DataObject, asset: str, fraction: Decimal) -> None:
        """A part or all of what is owed, as far as the holding goes (interest first, then
        principal), or more than is owed (refused)."""
        user, account = data.draw(st.sampled_from(self.opened))
        debts = sorted(self._figures(user, account, "liabilities"))
        asset = data.draw(st.sampled_from(debts)) if debts else self._allowed(account, asset)
        owed = self._figures(user, account, "liabilities").get(asset, Decimal(0))
        owed += self._figures(user, account, "interest").get(asset, Decimal(0))
        held = self._figures(user, account, "holdings").get(asset, Decimal(0))
        amount = owed * fraction if fraction > 1 else min(owed * fraction, held)
        self._run_quantity("repay", user, account, asset, amount)

    @rule(hours=st.integers(min_value=1, max_value=3))
    def accrue_interest(self, hours: int) -> None:
        self.minute += 60 * hours
        assert self._run("accrue_interest", until=at(self.minute)).is_accepted

    # --- trading ----------------------------------------------------------------------------

    @precondition(lambda self: self.opened)
    @rule(
        data=st.data(),
        sell=any_asset,
        buy=any_asset,
        value=values_usdt,
        fee=st.sampled_from(["0", "0.001"]).map(Decimal),
        auto_borrow=st.booleans(),
        auto_repay=st.booleans(),
    )
    def settle_trade(
        self,
        data: st.DataObject,
        sell: str,
        buy: str,
        value: Decimal,
        fee: Decimal,
        auto_borrow: bool,
        auto_repay: bool,
    ) -> None:
        user, account = data.draw(st.sampled_from(self.opened))
        sell, buy = self._allowed(account, sell), self._allowed(account, buy)
        if sell == buy:
            buy = next(a for a in (*PAIR, "ETH") if a != sell and self._allowed(account, a) == a)
        self._trade(user, account, sell, buy, value, fee, auto_borrow, auto_repay)

    @rule(
        user=users,
        account=accounts,
        asset=st.sampled_from(["ABC", "ETH"]),
        value=values_usdt,
        leverage=fractions,
        top_up=st.booleans(),
    )
    def open_long(
        self, user: str, account: str, asset: str, value: Decimal, leverage: Decimal, top_up: bool
    ) -> None:
        """USDT in, more USDT borrowed, all of it spent on ABC (or ETH): a margin call or a
        liquidation when that falls; maybe an automatic top-up from the spot wallet first."""
        asset = self._allowed(account, asset)
        self._run_quantity("transfer_in", user, account, "USDT", value)
        self._run_quantity("borrow", user, account, "USDT", value * leverage)
        spend = value * (1 + leverage)
        self._trade(user, account, "USDT", asset, spend, Decimal("0.001"), False, False)
        if top_up:
            where = {"user": user, "account": account}
            self._run(
                "set_auto_top_up", **where, enabled=True, asset=PAIR[0] if asset == "ETH" else asset
            )

    @rule(
        user=users,
        account=accounts,
        asset=st.sampled_from(["ABC", "ETH"]),
        value=values_usdt,
        leverage=fractions,
    )
    def open_short(
        self, user: str, account: str, asset: str, value: Decimal, leverage: Decimal
    ) -> None:
        """USDT in, ABC (or ETH) borrowed and sold (auto-repay on): liquidated, maybe with a
        deficit for the insurance fund, when it jumps."""
        asset = self._allowed(account, asset)
        self._run_quantity("transfer_in", user, account, "USDT", value)
        self._run_quantity("borrow", user, account, asset, value * leverage / self.prices[asset])
        self._trade(user, account, asset, "USDT", value * leverage, Decimal(0), False, True)

    @rule(user=st.sampled_from(("u1", "u2", "u3")))
    def go_pro(self, user: str) -> None:
        """Over 5,000 USDT into the cross account, then to Pro (u3 never qualified)."""
        self._run_quantity("transfer_in", user, "cross", "USDT", Decimal(6000))
        self.switch_mode(user, "pro")

    @rule(
        user=st.sampled_from(("u1", "u2", "u3")),
        to=st.sampled_from(["pro", "classic_3x", "classic_5x"]),
    )
    def switch_mode(self, user: str, to: str) -> None:
        """Never to the mode the account is in (that is invalid input)."""
        cross = self.ledger.get_aggregate(MarginAccount, MarginAccount.create_id(user, "cross"))
        if cross is not None and cross.mode is not None and cross.mode.value == to:
            to = "pro" if to != "pro" else "classic_3x"
        self._run("switch_mode", user=user, to=to)

    # --- prices and the risk sweep ----------------------------------------------------------

    @rule(abc=abc_prices, eth=eth_prices, with_spot=st.booleans())
    def mark_prices(self, abc: str, eth: str, with_spot: bool) -> None:
        """A new mark (a crash, a jump, a recovery) and the risk sweep after it."""
        assert self._run("mark_prices", prices={"ABC": abc, "ETH": eth}).is_accepted
        self.prices |= {"ABC": Decimal(abc), "ETH": Decimal(eth)}
        self.check_margins(with_spot)

    @rule(with_spot=st.booleans())
    def check_margins(self, with_spot: bool) -> None:
        """Margin calls, top-ups from the spot wallets and liquidations at the prices in force."""
        spot = {}
        if with_spot:
            spot = {f"{u}:{a}": {"ABC": "400", "USDT": "500"} for u, a in self.opened}
        outcome = self._run("check_margins", spot_available=spot)
        assert outcome.is_accepted, outcome

    @rule(amount=st.sampled_from(["5", "100", "1000"]))
    def fund_insurance(self, amount: str) -> None:
        assert self._run("fund_insurance", amount_usdt=amount).is_accepted

    @rule(
        upper_limit=st.sampled_from(["150", "400", "1000", "2500"]),
        quota=st.sampled_from(["100", "300"]),
    )
    def set_collateral_cap(self, upper_limit: str, quota: str) -> None:
        """A new upper limit moves the band without any holding moving."""
        outcome = self._run(
            "set_collateral_cap", asset="ABC", upper_limit=upper_limit, fixed_quota_usdt=quota
        )
        assert outcome.is_accepted, outcome

    # --- the read side ----------------------------------------------------------------------

    @rule(
        size=st.sampled_from([1, 3, 10, 1000]),
        names=st.one_of(st.none(), st.sets(st.sampled_from(MODEL_NAMES), min_size=1)),
    )
    def catch_up(self, size: int, names: set[str] | None) -> None:
        """Some or all models, in batches of `size`; the other models stay behind."""
        with batch_size(size), ReadModels(self.ledger) as read_models:
            position = read_models.catch_up(None if names is None else sorted(names))
            positions = read_models.positions()
        head = self.ledger.recorder.max_notification_id() or 0
        assert position == head, (position, head)
        for name in names or MODEL_NAMES:
            assert positions[name] == head, (name, positions, head)

    @rule(name=st.sampled_from(MODEL_NAMES), size=st.sampled_from([2, 7, 1000]))
    def rebuild_one(self, name: str, size: int) -> None:
        """`ledger projections rebuild NAME` mid-run: that model starts again from event one."""
        with batch_size(size), ReadModels(self.ledger) as read_models:
            read_models.rebuild([name])

    # --- helpers ------------------------------------------------------------------------------

    def _run(self, type_: str, **fields: Any) -> Outcome:
        """Execute a command a minute after the previous one; invalid input fails the test."""
        self.minute += 1
        data = {
            "type": type_,
            "request_id": f"r{next(self.numbers)}",
            "effective_at": at(self.minute),
            **{key: value for key, value in fields.items() if value is not None},
        }
        outcome = self.ledger.execute(parse_command(json.loads(json.dumps(data))))
        assert outcome.status != "invalid", outcome
        key = (fields.get("user"), fields.get("account"))
        if type_ == "transfer_in" and outcome.is_accepted and key not in self.opened:
            self.opened.append(key)  # type: ignore[arg-type]
        return outcome

    def _run_quantity(
        self, type_: str, user: str, account: str, asset: str, amount: Decimal
    ) -> Outcome | None:
        amount = quantity(amount, asset)
        if amount <= 0:
            return None
        return self._run(
            type_, user=user, account=account, asset=asset, quantity=format_plain(amount)
        )

    def _trade(
        self,
        user: str,
        account: str,
        sell: str,
        buy: str,
        value: Decimal,
        fee: Decimal,
        auto_borrow: bool,
        auto_repay: bool,
    ) -> None:
        sell_quantity = quantity(value / self.prices[sell], sell)
        buy_quantity = quantity(value / self.prices[buy], buy)
        if sell_quantity <= 0 or buy_quantity <= 0:
            return
        self._run(
            "settle_trade",
            user=user,
            account=account,
            sell_asset=sell,
            sell_quantity=format_plain(sell_quantity),
            buy_asset=buy,
            buy_quantity=format_plain(buy_quantity),
            fee_asset=buy,
            fee_quantity=format_plain(quantity(buy_quantity * fee, buy)),
            auto_borrow=auto_borrow,
            auto_repay=auto_repay,
        )

    @staticmethod
    def _allowed(account: str, asset: str) -> str:
        """An isolated ABCUSDT account holds only ABC and USDT."""
        if account.startswith("isolated:") and asset not in PAIR:
            return "ABC"
        return asset

    def _figures(self, user: str, account: str, figures: str) -> dict[str, Decimal]:
        aggregate = self.ledger.get_aggregate(MarginAccount, MarginAccount.create_id(user, account))
        return {} if aggregate is None else dict(getattr(aggregate, figures))


def test_random_histories_read_models_equal_write_side_and_replay(database_url: str) -> None:
    is_sqlite = database_url.startswith("sqlite")

    class Machine(ReadModelMachine):
        base_url = database_url

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=15 if is_sqlite else 8,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            # Shrinking on PostgreSQL takes minutes; the SQLite run shrinks the same failures.
            phases=[p for p in Phase if is_sqlite or p is not Phase.shrink],
        ),
    )


# --- 2. a simulated platform history ---------------------------------------------------------

SIMULATION = {"seed": 3, "accounts": 40, "hours": 12}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def simulated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A store holding `ledger simulate`'s history (run as the CLI runs it); once per backend
    for the module. Each test builds the read models on it from scratch."""
    if request.param == "sqlite":
        base = f"sqlite:///{tmp_path_factory.mktemp('simulated') / 'ledger.sqlite3'}"
    else:
        if not postgres_required():
            pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
        base = f"{POSTGRES_URL}?schema=test_{uuid.uuid4().hex[:16]}"
    commands = list(
        generate(
            SIMULATION["seed"],
            accounts=SIMULATION["accounts"],
            hours=SIMULATION["hours"],
            start=datetime(2026, 3, 2, tzinfo=UTC),
        )
    )
    with fresh_store(base) as url:
        with Ledger(url) as ledger:
            outcomes = run_commands(ledger, commands, show_progress=False)
        statuses = {outcome["status"] for outcome in outcomes}
        assert statuses == {"accepted", "rejected", "pending"}, statuses  # none invalid
        yield url


def test_simulated_history_read_models_equal_write_side_and_replay(simulated: str) -> None:
    with Ledger(simulated) as ledger:
        # The history has what the random test may miss: liquidations (their remainders in
        # USDT), top-ups, fund events, verifications pending then completed, isolated accounts.
        for event_class in (
            MarginAccount.Liquidated,
            MarginAccount.ToppedUp,
            MarginAccount.MarginCalled,
            MarginAccount.TransferPending,
            MarginAccount.VerificationCompleted,
            MarginAccount.ModeSwitched,
            InsuranceFund.Funded,
        ):
            assert events_of_type(ledger, event_class), event_class.__name__
        reset_read_models(ledger)
        # Built in many small transactions: two models first, then all of them (the others
        # start from the first event, those two from where they stand).
        with ReadModels(ledger) as read_models:
            with batch_size(17):
                read_models.catch_up(["journal", "accounts"])
            with batch_size(40):
                read_models.catch_up()
        answers = assert_read_models_right(ledger)
    assert any(view.kind == "isolated" and view.holdings for view in answers.accounts)
    assert any(view.mode == "pro" for view in answers.accounts)
    assert any(view.liabilities and view.interest for view in answers.accounts)
    assert {change.band_after for change in answers.bands} >= {"A", "B"}


# --- 3. exactly once under concurrency -------------------------------------------------------

WORKER = """
import sys
from ledger import Ledger, limits
from projections.runner import ReadModels

limits.PROJECTION_BATCH_SIZE = int(sys.argv[2])
with Ledger(sys.argv[1]) as ledger, ReadModels(ledger) as read_models:
    print(read_models.catch_up())
"""


def test_concurrent_catch_ups_in_threads_apply_each_event_once(simulated: str) -> None:
    """Three runners in threads, each with its own connections, in batches of 13 events,
    started together on empty read models."""
    with Ledger(simulated) as ledger:
        reset_read_models(ledger)
        head = ledger.recorder.max_notification_id()
    barrier = threading.Barrier(3)
    reached: list[int] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            with Ledger(simulated) as ledger, ReadModels(ledger) as read_models:
                barrier.wait(timeout=60)
                reached.append(read_models.catch_up())
        except BaseException as error:  # reported by the test below, never swallowed
            errors.append(error)

    with batch_size(13):
        threads = [threading.Thread(target=runner) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    assert not errors, errors
    assert reached == [head] * 3, (reached, head)
    with Ledger(simulated) as ledger:
        assert_read_models_right(ledger)


def test_concurrent_processes_apply_each_event_once(simulated: str) -> None:
    """Two `ledger project` processes and two runners in batches of 11 and 29 events, started
    together on empty read models."""
    with Ledger(simulated) as ledger:
        reset_read_models(ledger)
        head = ledger.recorder.max_notification_id()
    cli = [str(ledger_script()), "project", "--db", simulated, "--quiet", "--json"]
    commands = [cli, cli, *([sys.executable, "-c", WORKER, simulated, n] for n in ("11", "29"))]
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    for command_line, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, (command_line, process.returncode, out, err)
        if command_line is cli:
            [statuses] = [json.loads(line) for line in out.splitlines()]
            assert all(s["position"] == head and s["lag"] == 0 for s in statuses), statuses
        else:
            assert int(out) == head, (out, head)
    with Ledger(simulated) as ledger:
        assert_read_models_right(ledger)


# --- bugs found, each reproduced on its own ------------------------------------------------


def test_band_timeline_keeps_a_pool_opened_at_the_end_of_a_batch(ledger: Ledger) -> None:
    """`ledger project` run between listing a capped-rank asset and setting its cap (the next
    catch-up raised KeyError before the band timeline saved pools opened without a change)."""
    run_all(
        ledger,
        [
            ("list_asset", {"asset": "USDT", "collateral_rank": 1}),
            ("list_asset", {"asset": "ABC", "collateral_rank": 8}),
        ],
    )
    with ReadModels(ledger) as read_models:
        read_models.catch_up()
    run_all(
        ledger,
        [
            ("set_collateral_cap", {"asset": "ABC", "upper_limit": "1000"}),
            ("mark_prices", {"prices": {"ABC": "1"}}),
        ],
        effective_at=at(1),
    )
    assert transfer_in(ledger, "u1", "800", effective_at=at(2)).is_accepted  # T = 0.8 U
    answers = assert_read_models_right(ledger)
    assert [(c.band_before, c.band_after) for c in answers.bands] == [(None, "A"), ("A", "B")]


def test_runners_whose_batches_end_at_different_positions_apply_each_event_once(
    database_url: str,
) -> None:
    """Two followers of a growing log: runner B reads its positions, runner A catches up and a
    new command commits, then B reads the log (one event more than A applied) and applies it.
    The overlap is one insurance funding: the journal must count it once (it counted it twice
    before the runner read positions under the lock)."""
    with Ledger(database_url) as ledger:
        run_all(
            ledger,
            [
                ("list_asset", {"asset": "USDT", "collateral_rank": 1}),
                ("fund_insurance", {"amount_usdt": "100"}),
            ],
        )
        with ReadModels(ledger) as read_models:
            read_models.catch_up()
        assert run(ledger, command("fund_insurance", amount_usdt="10")).is_accepted
        with (
            Ledger(database_url) as other,
            ReadModels(ledger) as runner_a,
            ReadModels(other) as runner_b,
        ):
            read_log = other.recorder.select_notifications
            pending = [True]

            def read_after_runner_a(*args: Any, **kwargs: Any) -> Any:
                """B has read its positions; A catches up before B reads the log."""
                if pending:
                    pending.clear()
                    runner_a.catch_up()
                    assert run(ledger, command("fund_insurance", amount_usdt="1")).is_accepted
                return read_log(*args, **kwargs)

            other.recorder.select_notifications = read_after_runner_a  # type: ignore[method-assign]
            runner_b.catch_up()
        assert not pending
        assert_read_models_right(ledger)


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        "postgres",
    ],
)
def test_two_runners_valuing_the_same_accounts_at_once_both_finish(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Runner B applies a price mark and reads the accounts it made stale; runner A starts
    valuing the same accounts meanwhile (another thread, its own connection). B holds the write
    lock from the start of its valuation transaction, so A waits for B's commit instead of
    failing ("database is locked" on SQLite), and both finish."""
    url = str(request.getfixturevalue(f"{backend}_url"))
    with Ledger(url) as ledger:
        run_all(
            ledger,
            [
                ("list_asset", {"asset": "USDT", "collateral_rank": 1}),
                ("list_asset", {"asset": "ETH", "collateral_rank": 2}),
                ("mark_prices", {"prices": {"ETH": "100"}}),
            ],
        )
        for user in ("u1", "u2"):
            assert transfer_in(ledger, user, "3", asset="ETH", effective_at=at(1)).is_accepted
        with (
            Ledger(url) as other,
            ReadModels(other) as runner_a,
            ReadModels(ledger) as runner_b,
        ):
            runner_a.catch_up()
            mark = command("mark_prices", prices={"ETH": "90"}, effective_at=at(2))
            assert run(ledger, mark).is_accepted
            accounts_b = runner_b.models["accounts"]
            finish = accounts_b.finish
            started: list[threading.Thread] = []
            results: list[Any] = []

            def catch_up_a() -> None:
                try:
                    results.append(runner_a.catch_up())
                except Exception as error:  # reported below, not lost in the thread
                    results.append(error)

            class ThenRunnerA(Db):
                def query(self, text: str, params: Any = ()) -> list[tuple[Any, ...]]:
                    rows = super().query(text, params)
                    if not started:  # B has read the stale accounts: A starts valuing too
                        thread = threading.Thread(target=catch_up_a)
                        started.append(thread)
                        thread.start()
                        time.sleep(0.3)  # long enough for A to reach B's lock
                    return rows

            def finish_after_runner_a(db: Db) -> bool:
                return finish(ThenRunnerA(db.cursor, is_postgres=db.is_postgres, names=db.names))

            accounts_b.finish = finish_after_runner_a  # type: ignore[method-assign]
            assert runner_b.catch_up() == ledger.recorder.max_notification_id()
            started[0].join(timeout=60)
            assert results == [ledger.recorder.max_notification_id()], results
        answers = assert_read_models_right(ledger)
    assert {view.total_value_usdt for view in answers.accounts} == {"270"}
