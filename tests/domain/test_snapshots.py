"""Aggregate snapshots (ledger/domain/snapshots.py), on both backends.

Goal: an aggregate loaded from a snapshot, at its latest version or any older one, is the
aggregate its events alone give: the same attributes in the same order, each of the same type
(Decimals with the same digits, enums, tuples, parameter models, tz-aware datetimes, dicts in
the same key order). Method: a history that puts every kind of state into every aggregate type,
recorded by a Ledger that snapshots every 3 events (and at the end, every aggregate at its
latest version); then a fresh Ledger (no cache) on the same store loads each aggregate from its
snapshots, and one with snapshots disabled replays it from its events, and the two are compared.
"""

import ast
import contextlib
import inspect
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import psycopg
import pytest
from eventsourcing.domain import BaseAggregate, MutableOrImmutableAggregate
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from pydantic import BaseModel, ValidationError

from ledger import Ledger, limits
from ledger.commands import CommandInvalid
from ledger.domain import (
    account_state,
    asset,
    asset_pool,
    base,
    insurance_fund,
    request,
    risk_parameters,
    user_profile,
)
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import LedgerAggregate, Stamp
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.request import Request
from ledger.domain.risk_parameters import RiskParameters
from ledger.domain.snapshots import AggregateState, InOrder, Snapshot
from ledger.domain.user_profile import UserProfile
from ledger.errors import LedgerInputError
from ledger.outcomes import Outcome
from tests.conftest import POSTGRES_URL, postgres_required
from tests.support import T0, at, command, run, setup_capped_asset, transfer_in

ALL_TYPES: set[type[LedgerAggregate]] = {
    MarginAccount,
    AssetPool,
    Asset,
    AssetCatalog,
    RiskParameters,
    UserProfile,
    InsuranceFund,
    Request,
}
SMALL_INTERVAL = 3


class SnapshotEvery3(Ledger):
    """The Ledger, snapshotting every aggregate type every 3 events."""

    name = "ledger"  # the same tables (PostgreSQL names them after the application)
    snapshotting_intervals: ClassVar[dict[type[MutableOrImmutableAggregate[Any]], int]] = {
        cls: SMALL_INTERVAL for cls in ALL_TYPES
    }


def replay_only(url: str) -> Ledger:
    """A Ledger that neither reads nor takes snapshots: every load replays every event."""
    opened = Ledger(url, env={"IS_SNAPSHOTTING_ENABLED": "n"})
    assert opened.snapshots is None
    return opened


# --- comparing aggregates exactly ------------------------------------------------------------


def assert_same(loaded: Any, replayed: Any, path: str = "") -> None:
    """Equal values of the same types, dicts in the same key order, Decimals with the same
    digits, datetimes with the same kind of tzinfo: what `==` alone would let through."""
    assert type(loaded) is type(replayed), (path, type(loaded), type(replayed))
    if isinstance(loaded, dict):
        assert list(loaded) == list(replayed), (path, list(loaded), list(replayed))
        for key in loaded:
            assert_same(loaded[key], replayed[key], f"{path}[{key!r}]")
    elif isinstance(loaded, list | tuple):
        assert len(loaded) == len(replayed), (path, loaded, replayed)
        for index, (item, other) in enumerate(zip(loaded, replayed, strict=True)):
            assert_same(item, other, f"{path}[{index}]")
    elif isinstance(loaded, BaseModel):
        assert_same(vars(loaded), vars(replayed), path)
    elif isinstance(loaded, Decimal):
        assert str(loaded) == str(replayed), (path, loaded, replayed)
    elif isinstance(loaded, datetime):
        assert loaded == replayed, (path, loaded, replayed)
        assert type(loaded.tzinfo) is type(replayed.tzinfo), (path, loaded, replayed)
        assert loaded.utcoffset() == replayed.utcoffset(), (path, loaded, replayed)
    else:
        assert loaded == replayed, (path, loaded, replayed)


def assert_same_aggregate(loaded: BaseAggregate[UUID], replayed: BaseAggregate[UUID]) -> None:
    assert_same(vars(loaded), vars(replayed), type(replayed).__name__)
    assert loaded == replayed  # the library's own equality: type and __dict__


# --- the store -------------------------------------------------------------------------------


def aggregate_versions(ledger: Ledger) -> dict[UUID, int]:
    """Every aggregate in the store and its latest version."""
    latest: dict[UUID, int] = {}
    for notification in ledger.recorder.select_notifications(start=1, limit=1_000_000):
        assert isinstance(notification.originator_id, UUID)
        latest[notification.originator_id] = notification.originator_version
    return latest


def snapshot_versions(ledger: Ledger, aggregate_id: UUID) -> list[int]:
    assert ledger.snapshots is not None
    return [s.originator_version for s in ledger.snapshots.get(aggregate_id)]


def snapshot_all(ledger: Ledger) -> None:
    """A snapshot of every aggregate at its latest version (where there is none yet)."""
    for aggregate_id, version in aggregate_versions(ledger).items():
        if version not in snapshot_versions(ledger, aggregate_id):
            ledger.take_snapshot(aggregate_id)


def assert_loads_as_replayed(url: str, *, every_version: bool) -> set[type[Any]]:
    """Load every aggregate (and, if asked, every version of it) from snapshots on a fresh
    Ledger and by replay only, and compare them. Returns the aggregate types seen."""
    seen: set[type[Any]] = set()
    with SnapshotEvery3(url) as snapshotted, replay_only(url) as replaying:
        for aggregate_id, latest in aggregate_versions(snapshotted).items():
            loaded: LedgerAggregate = snapshotted.repository.get(aggregate_id)
            replayed: LedgerAggregate = replaying.repository.get(aggregate_id)
            assert_same_aggregate(loaded, replayed)
            seen.add(type(loaded))
            for version in range(1, latest + 1) if every_version else ():
                assert_same_aggregate(
                    snapshotted.repository.get(aggregate_id, version=version),
                    replaying.repository.get(aggregate_id, version=version),
                )
    return seen


# --- a history with every kind of state --------------------------------------------------------


def accepted(ledger: Ledger, type_: str, minute: float, **fields: Any) -> Outcome:
    outcome = run(ledger, command(type_, effective_at=at(minute), **fields))
    assert outcome.is_accepted, outcome
    return outcome


def rich_history(ledger: Ledger) -> None:
    """Every aggregate type, and in them every attribute away from its initial value: prices,
    caps, terms and brackets; accounts with holdings in arrival order (USDT before ABC), loans,
    interest, quota overrides, a pending first transfer, mode switches, a disabled borrowing,
    an isolated pair, auto top-up, margin calls and a liquidation with its fee to the fund."""
    for symbol, rank, decimals in (("USDT", 1, 2), ("ABC", 8, 2), ("BTC", 2, 8)):
        listing = command(
            "list_asset", asset=symbol, collateral_rank=rank, quantity_decimals=decimals
        )
        assert run(ledger, listing).is_accepted
    accepted(ledger, "set_collateral_cap", 0, asset="ABC", upper_limit="1000000")
    accepted(ledger, "mark_prices", 0, prices={"ABC": "1", "BTC": "20000"})
    accepted(ledger, "set_borrow_terms", 0, asset="USDT", hourly_interest_rate="0.0001")
    accepted(ledger, "set_borrow_terms", 0, asset="BTC", hourly_interest_rate="0.00001")
    brackets = [{"up_to_usdt": "100000", "rate": "0.02"}, {"up_to_usdt": None, "rate": "0.05"}]
    accepted(ledger, "set_maintenance_brackets", 0, asset="BTC", brackets=brackets)
    accepted(ledger, "set_maintenance_brackets", 0, brackets=brackets)
    accepted(ledger, "set_margin_thresholds", 0, mode="classic_5x", margin_call_level="1.2")
    accepted(ledger, "set_platform_rules", 0, mode_switches_per_day_max=6)
    accepted(ledger, "fund_insurance", 0, amount_usdt="100.50")

    # u1: USDT then ABC (holdings not in key order), a loan sold for ABC, auto top-up.
    where = {"user": "u1", "account": "cross"}
    accepted(ledger, "transfer_in", 1, **where, asset="USDT", quantity="0.50")
    accepted(ledger, "transfer_in", 1, **where, asset="ABC", quantity="1000")
    accepted(ledger, "borrow", 2, **where, asset="USDT", quantity="1500")
    trade = {"sell_asset": "USDT", "buy_asset": "ABC", "fee_asset": "USDT", "fee_quantity": "0"}
    accepted(ledger, "settle_trade", 3, **where, **trade, sell_quantity="1500", buy_quantity="1500")
    accepted(ledger, "set_auto_top_up", 4, **where, enabled=True, asset="ABC")
    accepted(ledger, "set_account_quota", 4, **where, asset="ABC", fixed_quota_usdt="20000")

    # u2: mode switches there and back, then borrowing disabled by an administrator.
    accepted(ledger, "transfer_in", 5, user="u2", account="cross", asset="USDT", quantity="9000")
    accepted(ledger, "switch_mode", 6, user="u2", to="classic_5x")
    accepted(ledger, "switch_mode", 7, user="u2", to="classic_3x")
    for data in (
        command("record_pro_quiz", user="u2", passed=True, effective_at=at(8)),
        command("agree_pro_terms", user="u2", effective_at=at(8)),
        command("set_pro_jurisdiction", user="u2", supported=True, effective_at=at(8)),
        command("set_bnb_discount", user="u2", enabled=True, effective_at=at(8)),
    ):
        assert run(ledger, data).is_accepted
    accepted(ledger, "switch_mode", 9, user="u2", to="pro")
    disable = {"enabled": False, "note": "under review", "actor": "admin:ops1"}
    accepted(ledger, "admin_set_borrowing", 9, user="u2", account="cross", **disable)
    accepted(ledger, "start_cooling_off", 9, user="u4", period="1d")

    # u3: a flagged first transfer through the client, waiting for verification.
    pending = transfer_in(
        ledger, "u3", "7", asset="USDT", channel="client", risk_flagged=True, effective_at=at(10)
    )
    assert pending.status == "pending", pending

    # u5: an isolated pair with a loan; u6: a long that the fall of ABC liquidates.
    pair = {"user": "u5", "account": "isolated:BTCUSDT"}
    accepted(ledger, "transfer_in", 11, **pair, asset="BTC", quantity="0.1")
    accepted(ledger, "borrow", 12, **pair, asset="USDT", quantity="100")
    six = {"user": "u6", "account": "cross"}
    accepted(ledger, "transfer_in", 13, **six, asset="ABC", quantity="1000")
    accepted(ledger, "borrow", 13, **six, asset="USDT", quantity="1500")
    accepted(ledger, "settle_trade", 14, **six, **trade, sell_quantity="1500", buy_quantity="1500")

    accepted(ledger, "accrue_interest", 150, until=at(150))
    accepted(ledger, "mark_prices", 160, prices={"ABC": "0.75"})
    accepted(ledger, "check_margins", 170, spot_available={"u1:cross": {"ABC": "100"}})
    accepted(ledger, "mark_prices", 180, prices={"ABC": "0.6543", "BTC": "19000.5"})
    accepted(ledger, "check_margins", 190)
    accepted(
        ledger, "repay", 200, user="u5", account="isolated:BTCUSDT", asset="USDT", quantity="0.01"
    )


def assert_every_kind_of_state(ledger: Ledger) -> None:
    """The history reached what it promises (otherwise the comparison proves less)."""
    accounts = {
        key: ledger.get_aggregate(MarginAccount, MarginAccount.create_id(*key.split(":", 1)))
        for key in ("u1:cross", "u2:cross", "u3:cross", "u5:isolated:BTCUSDT", "u6:cross")
    }
    u1, u2, u3, u5, u6 = accounts.values()
    assert list(u1.holdings.items()) == [("USDT", Decimal("0.50")), ("ABC", Decimal("2600.00"))]
    assert u1.last_margin_call_at is not None and u1.auto_top_up_asset == "ABC"  # topped up
    assert u1.fixed_quota_usdt_overrides and u1.interest_accrued_through
    assert len(u2.mode_switched_at) == 3 and not u2.is_borrowing_enabled
    assert u3.pending_transfer is not None
    assert u5.pair_assets == ("BTC", "USDT") and u5.liabilities
    assert (u6.holdings, u6.liabilities) == ({"USDT": Decimal("102.43")}, {})  # liquidated
    fund = ledger.get_aggregate(InsuranceFund, InsuranceFund.create_id())
    assert fund.balance_usdt == Decimal("100.50") + Decimal("32.72")  # the liquidation fee
    btc = ledger.get_aggregate(Asset, Asset.create_id("BTC"))
    assert btc.borrow_terms is not None and btc.maintenance_brackets is not None
    profile = ledger.get_aggregate(UserProfile, UserProfile.create_id("u4"))
    assert profile.cooling_off_until is not None


@pytest.fixture
def history(database_url: str) -> str:
    """The rich history on a Ledger snapshotting every 3 events, then every aggregate at its
    latest version too; returns the store's URL."""
    with SnapshotEvery3(database_url) as ledger:
        rich_history(ledger)
        assert_every_kind_of_state(ledger)
        snapshot_all(ledger)
    return database_url


# --- tests -------------------------------------------------------------------------------------


def test_the_ledger_snapshots_accounts_pools_and_assets_every_interval(ledger: Ledger) -> None:
    """The shipped interval, not a test one: 101 transfers of ABC in and 101 price marks."""
    interval = limits.SNAPSHOT_INTERVAL
    setup_capped_asset(ledger, asset="ABC", price="1")
    for _ in range(interval + 1):
        assert transfer_in(ledger, "u1", "1").is_accepted
    for n in range(interval + 1):
        assert run(ledger, command("mark_prices", prices={"ABC": str(2 + n)})).is_accepted

    account_id = MarginAccount.create_id("u1", "cross")
    pool_id, asset_id = AssetPool.create_id("ABC"), Asset.create_id("ABC")
    versions = aggregate_versions(ledger)
    for aggregate_id in (account_id, pool_id, asset_id):
        assert versions[aggregate_id] > interval
        expected = list(range(interval, versions[aggregate_id] + 1, interval))
        assert snapshot_versions(ledger, aggregate_id) == expected
    snapshotted = {i for i in versions if snapshot_versions(ledger, i)}
    assert snapshotted == {account_id, pool_id, asset_id}  # the others have few events

    with Ledger(ledger.database_url) as fresh, replay_only(ledger.database_url) as replaying:
        for aggregate_id in (account_id, pool_id, asset_id):
            loaded: LedgerAggregate = fresh.repository.get(aggregate_id)
            assert_same_aggregate(loaded, replaying.repository.get(aggregate_id))
        account = fresh.get_aggregate(MarginAccount, account_id)
        assert account.holdings == {"ABC": Decimal(interval + 1)}
        assert fresh.get_aggregate(Asset, asset_id).price_usdt == Decimal(interval + 2)


def test_the_ledger_snapshots_what_grows_without_bound() -> None:
    assert Ledger.snapshotting_intervals == {
        cls: limits.SNAPSHOT_INTERVAL
        for cls in (MarginAccount, AssetPool, Asset, InsuranceFund, AssetCatalog)
    }


def test_every_aggregate_type_loads_from_its_snapshot_as_replayed(history: str) -> None:
    with SnapshotEvery3(history) as ledger:
        versions = aggregate_versions(ledger)
        for aggregate_id, version in versions.items():
            assert snapshot_versions(ledger, aggregate_id)[-1] == version  # loads use them
        mid_way = [i for i, v in versions.items() if len(snapshot_versions(ledger, i)) > 2]
        assert len(mid_way) >= 5, mid_way

    assert assert_loads_as_replayed(history, every_version=False) == ALL_TYPES


def test_every_old_version_loads_from_snapshots_as_replayed(history: str) -> None:
    assert assert_loads_as_replayed(history, every_version=True) == ALL_TYPES


def test_a_snapshot_survives_the_mapper_for_every_aggregate_type(history: str) -> None:
    """Snapshot.take -> stored JSON -> Snapshot.mutate, without the repository."""
    with replay_only(history) as ledger:
        for aggregate_id in aggregate_versions(ledger):
            aggregate: LedgerAggregate = ledger.repository.get(aggregate_id)
            stored = ledger.mapper.to_stored_event(Snapshot.take(aggregate))
            snapshot = ledger.mapper.to_domain_event(stored)
            assert isinstance(snapshot, Snapshot)
            assert_same_aggregate(snapshot.mutate(None), aggregate)


def test_commands_on_aggregates_loaded_from_snapshots(history: str) -> None:
    """A fresh Ledger decides on snapshot-loaded aggregates and appends their next versions."""
    with SnapshotEvery3(history) as ledger:
        u1 = {"user": "u1", "account": "cross"}
        accepted(ledger, "transfer_in", 300, **u1, asset="ABC", quantity="5")
        accepted(ledger, "repay", 301, **u1, asset="USDT", quantity="0.5")
        accepted(ledger, "mark_prices", 302, prices={"ABC": "0.8"})
        accepted(ledger, "list_asset", 303, asset="ETH", collateral_rank=2)
        accepted(ledger, "fund_insurance", 304, amount_usdt="1")
        account = ledger.get_aggregate(MarginAccount, MarginAccount.create_id("u1", "cross"))
        assert list(account.holdings) == ["USDT", "ABC"]
    assert assert_loads_as_replayed(history, every_version=False) == ALL_TYPES


# --- the snapshot model guards its declarations ------------------------------------------------


def _stamp() -> Stamp:
    return Stamp(effective_at=T0, actor="test", request_id="r-1")


def _profile() -> UserProfile:
    profile = UserProfile.register(user="u1", stamp=_stamp())
    profile.collect_events()
    return profile


def test_take_refuses_an_attribute_the_snapshot_state_does_not_declare() -> None:
    profile = _profile()
    profile.nickname = "x"  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="SnapshotState does not match"):
        Snapshot.take(profile)


def test_take_refuses_a_declared_attribute_that_is_missing() -> None:
    profile = _profile()
    del profile.bnb_discount_enabled
    with pytest.raises(AssertionError, match="bnb_discount_enabled"):
        Snapshot.take(profile)


def test_take_refuses_a_value_of_another_type_than_declared() -> None:
    pool = AssetPool.open(asset="ABC", stamp=_stamp())
    pool.collect_events()
    pool.platform_total = "5"  # type: ignore[assignment]  # a string where a Decimal belongs
    with pytest.raises(ValidationError, match="platform_total"):
        Snapshot.take(pool)


def test_take_refuses_an_aggregate_with_pending_events() -> None:
    with pytest.raises(AssertionError, match="recorded version"):
        Snapshot.take(UserProfile.register(user="u1", stamp=_stamp()))


def test_a_dict_field_must_keep_its_order() -> None:
    with pytest.raises(AssertionError, match="InOrder"):

        class Unordered(AggregateState):
            quantities: dict[str, Decimal]

    with pytest.raises(AssertionError, match="InOrder"):

        class Nested(AggregateState):
            ladders: InOrder[dict[str, list[dict[str, Decimal]]]]

    class Ordered(AggregateState):
        quantities: InOrder[dict[str, Decimal]]

    assert Ordered.attribute_names() == {"_created_on", "_modified_on", "quantities"}


def _declared_state(cls: type) -> list[str]:
    """The names annotated in the class's own `if TYPE_CHECKING:` block."""
    [tree] = ast.parse(inspect.getsource(cls)).body
    assert isinstance(tree, ast.ClassDef)
    return [
        node.target.id
        for block in tree.body
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in block.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    ]


STATE_CLASSES = [
    base.LedgerAggregate,
    account_state.AccountState,
    asset_pool.AssetPool,
    asset.Asset,
    asset.AssetCatalog,
    risk_parameters.RiskParameters,
    user_profile.UserProfile,
    insurance_fund.InsuranceFund,
    request.Request,
]


@pytest.mark.parametrize("cls", STATE_CLASSES, ids=lambda cls: cls.__name__)
def test_each_snapshot_state_declares_exactly_its_type_checking_block(cls: type) -> None:
    """Adding state under `if TYPE_CHECKING:` without its SnapshotState field fails here,
    before any snapshot is taken."""
    state = cls.SnapshotState  # type: ignore[attr-defined]
    assert "SnapshotState" in vars(cls), cls
    parent = state.__mro__[1]
    own = [name for name in state.model_fields if name not in parent.model_fields]
    assert own == _declared_state(cls)


def test_every_aggregate_class_with_state_is_checked() -> None:
    def subclasses(cls: type) -> set[type]:
        found: set[type] = set()
        subs: list[type] = cls.__subclasses__()
        for sub in subs:
            found |= {sub, *subclasses(sub)}
        return found

    domain = {c for c in subclasses(LedgerAggregate) if c.__module__.startswith("ledger.domain")}
    with_state = {c for c in domain | {LedgerAggregate} if _declared_state(c)}
    assert with_state == set(STATE_CLASSES)
    assert domain >= ALL_TYPES


# --- property: random histories ------------------------------------------------------------------

USERS = ("p1", "p2")
MOVES = st.one_of(
    st.tuples(
        st.just("transfer_in"),
        st.sampled_from(USERS),
        st.sampled_from(["USDT", "ABC"]),
        st.integers(1, 3000),
    ),
    st.tuples(
        st.just("transfer_out"),
        st.sampled_from(USERS),
        st.sampled_from(["USDT", "ABC"]),
        st.integers(1, 3000),
    ),
    st.tuples(st.just("borrow"), st.sampled_from(USERS), st.just("USDT"), st.integers(1, 3000)),
    st.tuples(st.just("repay"), st.sampled_from(USERS), st.just("USDT"), st.integers(1, 3000)),
    st.tuples(
        st.just("settle_trade"),
        st.sampled_from(USERS),
        st.sampled_from(["USDT", "ABC"]),
        st.integers(1, 3000),
    ),
    st.tuples(st.just("mark_prices"), st.just(""), st.just("ABC"), st.integers(50, 200)),
    st.tuples(st.just("accrue_interest"), st.just(""), st.just(""), st.just(0)),
)


def _move(ledger: Ledger, move: tuple[str, str, str, int], minute: int) -> None:
    type_, user, symbol, n = move
    quantity = str(Decimal(n) / 10)
    fields: dict[str, Any] = {"effective_at": at(minute)}
    if type_ == "mark_prices":
        fields["prices"] = {symbol: str(Decimal(n) / 100)}
    elif type_ == "accrue_interest":
        fields["until"] = at(minute)
    elif type_ == "settle_trade":
        other = "ABC" if symbol == "USDT" else "USDT"
        fields |= {"user": user, "account": "cross", "sell_asset": symbol, "buy_asset": other}
        fields |= {"sell_quantity": quantity, "buy_quantity": quantity}
        fields |= {"fee_asset": other, "fee_quantity": "0.01", "auto_borrow": n % 2 == 0}
    else:
        fields |= {"user": user, "account": "cross", "asset": symbol, "quantity": quantity}
    with contextlib.suppress(CommandInvalid, LedgerInputError):
        run(ledger, command(type_, **fields))


@contextlib.contextmanager
def fresh_store(backend: str) -> Iterator[str]:
    """A new, empty store per example (function-scoped fixtures would be shared by them)."""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="snapshots-")
        try:
            yield f"sqlite:///{folder}/ledger.sqlite3"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    schema = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            connection.execute(drop)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@settings(max_examples=8, deadline=None)
@given(moves=st.lists(MOVES, min_size=5, max_size=40))
def test_random_histories_load_from_snapshots_as_replayed(
    backend: str, moves: list[tuple[str, str, str, int]]
) -> None:
    if backend == "postgres" and not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    with fresh_store(backend) as url:
        with SnapshotEvery3(url) as ledger:
            setup_capped_asset(ledger, asset="ABC", price="1")
            accepted(ledger, "set_borrow_terms", 0, asset="USDT", hourly_interest_rate="0.0001")
            for index, move in enumerate(moves):
                _move(ledger, move, minute=7 * (index + 1))
            assert any(snapshot_versions(ledger, i) for i in aggregate_versions(ledger))
        assert_loads_as_replayed(url, every_version=True)
