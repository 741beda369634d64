"""Time travel on the read side (DOMAIN.md §8, §9): an account or the asset totals as they stood
at a past business time (`PointInTime(at=T)`) or right after a log position
(`PointInTime(position=N)`), through the Python API and the CLI, on both backends.

Method: a scenario of commands with strictly increasing business times; after every command we
record what the write side says now (`account_view`, valued at the latest prices) and what the
read side says now (`ReadSide.assets()`), with the command's effective_at and the log position
after it. At the end, every past query must give back exactly what was recorded at that moment.
"""

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger, limits
from ledger.commands import CommandInvalid
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.money import format_plain
from ledger.queries import AccountIdInvalid, AccountView, account_view, unknown_account_view
from ledger.times import format_time
from projections.queries import AssetView, PointInTime, ReadSide
from projections.runner import ReadModels
from tests.cli.cli_support import EXIT_CANNOT_RUN, invoke, ledger_script, query, set_up_market
from tests.support import T0, at, command, run

# --- the scenario -------------------------------------------------------------------------------
# (minute after T0, command type, expected status, fields). Minutes strictly increase, and an
# accrue_interest job runs at every hour boundary the scenario crosses while loans are open, so
# each account's interest is settled up to every recorded moment (see
# test_interest_settled_later_is_in_the_business_time_view for what happens otherwise).

ABC_LADDER = [{"up_to_usdt": "10000", "ratio": "1"}, {"up_to_usdt": None, "ratio": "0.5"}]
SWAP = {"fee_quantity": "0"}

SCENARIO: list[tuple[float, str, str, dict[str, Any]]] = [
    (0, "list_asset", "accepted", {"asset": "USDT", "collateral_rank": 1, "quantity_decimals": 2}),
    (
        1,
        "list_asset",
        "accepted",
        {
            "asset": "ABC",
            "collateral_rank": 8,
            "quantity_decimals": 2,
            "collateral_ladder": ABC_LADDER,
        },
    ),
    (2, "list_asset", "accepted", {"asset": "BTC", "collateral_rank": 2}),
    (
        3,
        "set_collateral_cap",
        "accepted",
        {"asset": "ABC", "upper_limit": "50000", "fixed_quota_usdt": "5000"},
    ),
    (4, "mark_prices", "accepted", {"prices": {"ABC": "1", "BTC": "20000"}}),
    (5, "set_borrow_terms", "accepted", {"asset": "USDT", "hourly_interest_rate": "0.0001"}),
    (6, "set_borrow_terms", "accepted", {"asset": "ABC", "hourly_interest_rate": "0.0002"}),
    (7, "set_borrow_terms", "accepted", {"asset": "BTC", "hourly_interest_rate": "0.00001"}),
    # two leveraged ABC longs: u1 (2,500 ABC against 1,500 USDT) and u7 (2,000 against 1,000)
    (
        8,
        "transfer_in",
        "accepted",
        {"user": "u1", "account": "cross", "asset": "ABC", "quantity": "1000"},
    ),
    (
        9,
        "transfer_in",
        "accepted",
        {"user": "u2", "account": "cross", "asset": "ABC", "quantity": "12000"},
    ),
    (
        10,
        "transfer_in",
        "accepted",
        {"user": "u3", "account": "isolated:BTCUSDT", "asset": "BTC", "quantity": "0.1"},
    ),
    (
        11,
        "borrow",
        "accepted",
        {"user": "u1", "account": "cross", "asset": "USDT", "quantity": "1500"},
    ),
    (
        12,
        "settle_trade",
        "accepted",
        {
            "user": "u1",
            "account": "cross",
            "sell_asset": "USDT",
            "sell_quantity": "1500",
            "buy_asset": "ABC",
            "buy_quantity": "1500",
            "fee_asset": "USDT",
            **SWAP,
        },
    ),
    (
        13,
        "transfer_in",
        "accepted",
        {"user": "u7", "account": "cross", "asset": "ABC", "quantity": "1000"},
    ),
    (
        14,
        "borrow",
        "accepted",
        {"user": "u7", "account": "cross", "asset": "USDT", "quantity": "1000"},
    ),
    (
        15,
        "settle_trade",
        "accepted",
        {
            "user": "u7",
            "account": "cross",
            "sell_asset": "USDT",
            "sell_quantity": "1000",
            "buy_asset": "ABC",
            "buy_quantity": "1000",
            "fee_asset": "USDT",
            **SWAP,
        },
    ),
    (16, "mark_prices", "accepted", {"prices": {"ABC": "1.05", "BTC": "20500"}}),
    # a portfolio account shorts ABC; an isolated pair goes long BTC
    (
        17,
        "transfer_in",
        "accepted",
        {"user": "u4", "account": "portfolio", "asset": "USDT", "quantity": "10000"},
    ),
    (
        18,
        "borrow",
        "accepted",
        {"user": "u4", "account": "portfolio", "asset": "ABC", "quantity": "1000"},
    ),
    (
        19,
        "settle_trade",
        "accepted",
        {
            "user": "u4",
            "account": "portfolio",
            "sell_asset": "ABC",
            "sell_quantity": "1000",
            "buy_asset": "USDT",
            "buy_quantity": "1050",
            "fee_asset": "USDT",
            "fee_quantity": "1.05",
        },
    ),
    (
        20,
        "borrow",
        "accepted",
        {"user": "u3", "account": "isolated:BTCUSDT", "asset": "USDT", "quantity": "800"},
    ),
    (
        21,
        "settle_trade",
        "accepted",
        {
            "user": "u3",
            "account": "isolated:BTCUSDT",
            "sell_asset": "USDT",
            "sell_quantity": "800",
            "buy_asset": "BTC",
            "buy_quantity": "0.039",
            "fee_asset": "BTC",
            "fee_quantity": "0.0001",
        },
    ),
    (
        22,
        "transfer_out",
        "accepted",
        {"user": "u2", "account": "cross", "asset": "ABC", "quantity": "500"},
    ),
    # a Pro account borrowing BTC; then the default maintenance brackets change under it
    (23, "record_pro_quiz", "accepted", {"user": "u5", "passed": True}),
    (24, "agree_pro_terms", "accepted", {"user": "u5"}),
    (25, "set_pro_jurisdiction", "accepted", {"user": "u5", "supported": True}),
    (
        26,
        "transfer_in",
        "accepted",
        {"user": "u5", "account": "cross", "asset": "USDT", "quantity": "8000"},
    ),
    (27, "switch_mode", "accepted", {"user": "u5", "to": "pro"}),
    (
        28,
        "borrow",
        "accepted",
        {"user": "u5", "account": "cross", "asset": "BTC", "quantity": "0.2"},
    ),
    (
        29,
        "set_maintenance_brackets",
        "accepted",
        {"brackets": [{"up_to_usdt": "1000", "rate": "0.05"}, {"up_to_usdt": None, "rate": "0.1"}]},
    ),
    # the cap: band A's room is 0.8 x 50,000 - 16,000 = 24,000; then band B's quota 5,000 USDT
    (
        30,
        "transfer_in",
        "rejected",
        {"user": "u6", "account": "cross", "asset": "ABC", "quantity": "28000"},
    ),
    (
        31,
        "transfer_in",
        "accepted",
        {"user": "u6", "account": "cross", "asset": "ABC", "quantity": "24000"},
    ),
    (
        32,
        "transfer_in",
        "rejected",
        {"user": "u6", "account": "cross", "asset": "ABC", "quantity": "6000"},
    ),
    (
        33,
        "transfer_in",
        "accepted",
        {"user": "u6", "account": "cross", "asset": "ABC", "quantity": "4000"},
    ),
    (60, "accrue_interest", "accepted", {"until": "HOUR"}),
    (61, "mark_prices", "accepted", {"prices": {"BTC": "21000"}}),
    (
        62,
        "settle_trade",
        "accepted",
        {
            "user": "u4",
            "account": "portfolio",
            "sell_asset": "USDT",
            "sell_quantity": "315",
            "buy_asset": "ABC",
            "buy_quantity": "300",
            "fee_asset": "USDT",
            **SWAP,
        },
    ),
    (
        63,
        "repay",
        "accepted",
        {"user": "u4", "account": "portfolio", "asset": "ABC", "quantity": "300"},
    ),
    (64, "set_borrow_terms", "accepted", {"asset": "USDT", "hourly_interest_rate": "0.0002"}),
    (
        65,
        "transfer_out",
        "accepted",
        {"user": "u5", "account": "cross", "asset": "USDT", "quantity": "1000"},
    ),
    (66, "fund_insurance", "accepted", {"amount_usdt": "100"}),
    # the crash: u1 (2,500 x 0.64 = 1,600 against ~1,500.3) is liquidated, u7 (1,280 against
    # ~1,000.2) is called
    (70, "mark_prices", "accepted", {"prices": {"ABC": "0.64"}}),
    (71, "check_margins", "accepted", {}),
    (
        72,
        "transfer_in",
        "accepted",
        {"user": "u7", "account": "cross", "asset": "USDT", "quantity": "500"},
    ),
    (
        73,
        "repay",
        "accepted",
        {"user": "u7", "account": "cross", "asset": "USDT", "quantity": "500"},
    ),
    (74, "mark_prices", "accepted", {"prices": {"ABC": "0.7"}}),
    (
        75,
        "transfer_out",
        "accepted",
        {"user": "u6", "account": "cross", "asset": "ABC", "quantity": "1000"},
    ),
    (
        76,
        "settle_trade",
        "accepted",
        {
            "user": "u2",
            "account": "cross",
            "sell_asset": "ABC",
            "sell_quantity": "1000",
            "buy_asset": "USDT",
            "buy_quantity": "700",
            "fee_asset": "USDT",
            "fee_quantity": "0.7",
        },
    ),
    (120, "accrue_interest", "accepted", {"until": "HOUR"}),
    (
        121,
        "transfer_out",
        "accepted",
        {"user": "u1", "account": "cross", "asset": "USDT", "quantity": "20"},
    ),
    (
        122,
        "transfer_in",
        "accepted",
        {"user": "u3", "account": "isolated:BTCUSDT", "asset": "USDT", "quantity": "500"},
    ),
    (
        123,
        "repay",
        "accepted",
        {"user": "u3", "account": "isolated:BTCUSDT", "asset": "USDT", "quantity": "400"},
    ),
    (
        124,
        "set_collateral_cap",
        "accepted",
        {"asset": "ABC", "upper_limit": "40000", "fixed_quota_usdt": "5000"},
    ),
    (125, "switch_mode", "accepted", {"user": "u5", "to": "classic_5x"}),
    (
        126,
        "borrow",
        "accepted",
        {"user": "u2", "account": "cross", "asset": "USDT", "quantity": "300"},
    ),
    (180, "accrue_interest", "accepted", {"until": "HOUR"}),
    (181, "mark_prices", "accepted", {"prices": {"ABC": "0.9", "BTC": "19000"}}),
    (182, "check_margins", "accepted", {}),
    (
        183,
        "transfer_out",
        "rejected",
        {"user": "u2", "account": "cross", "asset": "USDT", "quantity": "2000"},
    ),
    (
        184,
        "repay",
        "accepted",
        {"user": "u2", "account": "cross", "asset": "USDT", "quantity": "100"},
    ),
]

ACCOUNTS = (
    "u1:cross",
    "u2:cross",
    "u3:isolated:BTCUSDT",
    "u4:portfolio",
    "u5:cross",
    "u6:cross",
    "u7:cross",
    "u8:cross",  # never opened
)


SECONDS_59 = timedelta(seconds=59)


def moment(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def scenario_command(step: tuple[float, str, str, dict[str, Any]]) -> dict[str, Any]:
    minute, type_, _status, fields = step
    fields = dict(fields)
    if fields.get("until") == "HOUR":
        fields["until"] = at(minute)
    return command(type_, effective_at=at(minute), **fields)


@dataclass(frozen=True)
class Recorded:
    """What the ledger said right after one command."""

    minute: float
    effective_at: datetime
    position: int  # the log's last notification id after the command
    accounts: dict[str, AccountView]  # write side, valued at the latest prices
    assets: list[AssetView]  # read side, now
    pool_total: str | None  # the write side's T of ABC


@pytest.fixture
def read_models(ledger: Ledger) -> Iterator[ReadModels]:
    with ReadModels(ledger) as opened:
        yield opened


def reader(read_models: ReadModels) -> ReadSide:
    """The read side, every model caught up with every event committed so far."""
    return ReadSide(read_models)


def head(ledger: Ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


def record(
    ledger: Ledger,
    read_models: ReadModels | None,
    minute: float,
    accounts: tuple[str, ...],
) -> Recorded:
    """The ledger now (the read side's assets too, unless no read models are given)."""
    pool = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
    return Recorded(
        minute=minute,
        effective_at=moment(minute),
        position=head(ledger),
        accounts={a: account_view(ledger, a) for a in accounts},
        assets=[] if read_models is None else reader(read_models).assets(),
        pool_total=None if pool is None else format_plain(pool.platform_total),
    )


def differences(expected: Any, actual: Any, where: str) -> list[str]:
    """Field by field, so that a failure names what differs where (not a wall of models)."""
    if expected == actual:
        return []
    if isinstance(expected, AccountView) and isinstance(actual, AccountView):
        want, got = expected.model_dump(), actual.model_dump()
        return [
            f"{where} {k}: recorded {want[k]!r}, got {got[k]!r}" for k in want if want[k] != got[k]
        ]
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        found = []
        for want, got in zip(expected, actual, strict=True):
            if want != got:
                w, g = want.model_dump(), got.model_dump()
                found += [
                    f"{where} {w['asset']}.{k}: recorded {w[k]!r}, got {g[k]!r}"
                    for k in w
                    if w[k] != g[k]
                ]
        return found
    return [f"{where}: recorded {expected!r}, got {actual!r}"]


# --- 1. every recorded moment is given back ------------------------------------------------------


def test_every_past_moment_of_a_rich_scenario_is_given_back(
    ledger: Ledger, read_models: ReadModels, database_url: str
) -> None:
    """After each of the scenario's commands the write side's accounts and the read side's
    asset totals were recorded; afterwards, the account as of that business time, the account at
    that log position and the assets as of that time are exactly what was recorded (every field:
    balances, status, mode, version, last_effective_at, and the valuation at the prices and
    maintenance brackets in force then)."""
    assert 40 <= len(SCENARIO) <= 80
    minutes = [step[0] for step in SCENARIO]
    assert minutes == sorted(set(minutes)), "business times strictly increase"
    history = [record(ledger, read_models, -1, ACCOUNTS)]  # before the first event
    sweeps, event_ids = [], []
    for step in SCENARIO:
        outcome = run(ledger, scenario_command(step))
        assert outcome.status.value == step[2], (step, outcome)
        if step[1] == "check_margins":
            sweeps.append(outcome)
        event_ids.append(outcome.events)
        history.append(record(ledger, read_models, step[0], ACCOUNTS))
    # Each command's events sit in the event index between the positions recorded around it,
    # its last one at the position recorded after it.
    with read_models.store.transaction(commit=False) as db:
        indexed = dict(db.query("SELECT event_id, position FROM {event_index}"))
    for before, after, ids in zip(history[:-1], history[1:], event_ids, strict=True):
        positions = [int(indexed[i]) for i in ids]
        assert positions and before.position < min(positions)
        assert max(positions) == after.position, after.minute
    # The scenario did what it is meant to: a liquidation, a margin call, a changing band.
    assert [(o.context["liquidations"], o.context["margin_calls"]) for o in sweeps] == [
        (1, 1),
        (0, 0),
    ]
    u1_holdings = [r.accounts["u1:cross"].holdings for r in history]
    assert {"ABC": "2500"} in u1_holdings
    assert u1_holdings[-1] == {"USDT": "47.7"}  # what the liquidation left, less 20 out
    bands = {a.band for r in history for a in r.assets if a.asset == "ABC"}
    assert {None, "A", "B"} <= bands
    assert history[-1].accounts["u8:cross"] == unknown_account_view("u8:cross")
    # u5's Pro level moved with the default maintenance brackets at 29, prices unchanged.
    pro_levels = {r.minute: r.accounts["u5:cross"].pro_margin_level for r in history}
    assert None is not pro_levels[28] != pro_levels[29] is not None

    side = reader(read_models)
    mismatches: list[str] = []
    for index, then in enumerate(history):
        for account_id, recorded in then.accounts.items():
            where = f"{account_id} @{then.minute}"
            as_of = side.account(account_id, PointInTime(at=then.effective_at))
            mismatches += differences(recorded, as_of, f"{where} at")
            at_position = side.account(account_id, PointInTime(position=then.position))
            mismatches += differences(recorded, at_position, f"{where} position")
            if index % 4 == 0:  # a time strictly before the next command: the same state
                later = side.account(account_id, PointInTime(at=then.effective_at + SECONDS_59))
                mismatches += differences(recorded, later, f"{where} +59s")
        assets_then = side.assets(PointInTime(at=then.effective_at))
        mismatches += differences(then.assets, assets_then, f"assets @{then.minute}")
        abc = [a for a in assets_then if a.asset == "ABC"]
        if then.pool_total is not None:  # the read model's T agrees with the pool's T then
            assert [a.total for a in abc] == [then.pool_total], then.minute
    assert mismatches == []

    # The CLI answers the same at a few moments (both flags, and the assets).
    for then in (history[len(history) // 3], history[2 * len(history) // 3], history[-1]):
        for account_id in ("u1:cross", "u5:cross"):
            want = then.accounts[account_id].model_dump(mode="json")
            by_time = query(
                "account",
                account_id,
                "--db",
                database_url,
                "--as-of",
                format_time(then.effective_at),
            )
            by_position = query(
                "account", account_id, "--db", database_url, "--at-position", str(then.position)
            )
            assert (by_time, by_position) == (want, want), (account_id, then.minute)
        assets_json = query(
            "assets", "--db", database_url, "--as-of", format_time(then.effective_at)
        )
        assert assets_json == [a.model_dump(mode="json") for a in then.assets], then.minute


# --- 2. business time out of log order across accounts --------------------------------------------


def accepted(ledger: Ledger, type_: str, minute: float, **fields: Any) -> int:
    """Run a command that must be accepted; the log position after it."""
    outcome = run(ledger, command(type_, effective_at=at(minute), **fields))
    assert outcome.is_accepted, outcome
    return head(ledger)


def usdt_totals(side: ReadSide, minute: float) -> tuple[str, str, str, str] | None:
    """USDT's (total, isolated, borrowed, interest) as of T0 + minute, None before its listing."""
    found = [a for a in side.assets(PointInTime(at=moment(minute))) if a.asset == "USDT"]
    if not found:
        return None
    [usdt] = found
    return (usdt.total, usdt.isolated_total, usdt.borrowed_total, usdt.interest_total)


def test_asset_totals_as_of_count_events_recorded_out_of_business_time_order(
    ledger: Ledger, read_models: ReadModels
) -> None:
    """DOMAIN.md §8: business time never goes backwards within one aggregate, but two accounts
    may record an earlier time after a later one. USDT and BTC are uncapped (no pool to move),
    so u2's and u3's transfers dated 09:15-09:30 are valid after u1's at 10:00; the totals as of
    any time count every account event dated up to then, and the history rows already written
    for later times are corrected."""
    accepted(ledger, "list_asset", -10, asset="USDT", collateral_rank=1, quantity_decimals=2)
    accepted(ledger, "list_asset", -9, asset="BTC", collateral_rank=2)
    accepted(ledger, "mark_prices", -8, prices={"BTC": "20000"})
    accepted(ledger, "set_borrow_terms", -7, asset="USDT", hourly_interest_rate="0.001")
    u1 = {"user": "u1", "account": "cross"}
    u2 = {"user": "u2", "account": "cross"}
    u3 = {"user": "u3", "account": "isolated:BTCUSDT"}

    # The log order is A (10:00), B (09:30), C (09:15, 09:20), D (10:05); the read models catch
    # up after A, then B and C in one batch, then D in a later one.
    position_a = accepted(ledger, "transfer_in", 60, **u1, asset="USDT", quantity="100")
    reader(read_models)
    position_b = accepted(ledger, "transfer_in", 30, **u2, asset="USDT", quantity="7")
    accepted(ledger, "transfer_in", 15, **u3, asset="BTC", quantity="0.01")
    position_c = accepted(ledger, "borrow", 20, **u3, asset="USDT", quantity="50")
    reader(read_models)  # B and C in one batch
    accepted(ledger, "transfer_in", 65, **u1, asset="USDT", quantity="1")
    # What may not be recorded out of order: an earlier time on the same account, or on a
    # capped asset's pool that a later transfer already moved (the error names effective_at).
    accepted(ledger, "list_asset", 66, asset="ABC", collateral_rank=8)
    accepted(ledger, "set_collateral_cap", 67, asset="ABC", upper_limit="1000")
    accepted(ledger, "mark_prices", 68, prices={"ABC": "1"})
    accepted(ledger, "transfer_in", 70, user="u3", account="cross", asset="ABC", quantity="5")
    for invalid in (
        command("transfer_in", effective_at=at(50), **u1, asset="USDT", quantity="1"),
        command(
            "transfer_in",
            effective_at=at(69),
            user="u4",
            account="cross",
            asset="ABC",
            quantity="1",
        ),
    ):
        with pytest.raises(CommandInvalid) as raised:
            run(ledger, invalid)
        assert [e.field for e in raised.value.errors] == ["effective_at"]

    side = reader(read_models)
    # (total, isolated, borrowed, interest): u3's 50 USDT borrowed in the 09:00 hour, one hour
    # of interest (0.05) charged at once; u2's 7 at 09:30; u1's 100 at 10:00 and 1 at 10:05.
    expected = {
        -10: ("0", "0", "0", "0"),  # listed, nothing held
        14: ("0", "0", "0", "0"),
        15: ("0", "0", "0", "0"),  # BTC only
        20: ("0", "50", "50", "0.05"),
        29.5: ("0", "50", "50", "0.05"),
        30: ("7", "50", "50", "0.05"),
        45: ("7", "50", "50", "0.05"),
        59.99: ("7", "50", "50", "0.05"),
        60: ("107", "50", "50", "0.05"),
        64: ("107", "50", "50", "0.05"),
        65: ("108", "50", "50", "0.05"),
        600: ("108", "50", "50", "0.05"),
    }
    assert {m: usdt_totals(side, m) for m in expected} == expected
    assert usdt_totals(side, -11) is None  # before USDT was listed
    btc = {
        m: [
            (a.total, a.isolated_total)
            for a in side.assets(PointInTime(at=moment(m)))
            if a.asset == "BTC"
        ]
        for m in (14, 15, 600)
    }
    assert btc == {14: [("0", "0")], 15: [("0", "0.01")], 600: [("0", "0.01")]}
    now = {a.asset: a for a in side.assets()}
    assert (now["USDT"].total, now["USDT"].isolated_total) == ("108", "50")

    # The history rows themselves: running totals in business-time order, the 10:00 row (written
    # first, with 100) corrected to 107.
    with read_models.store.transaction(commit=False) as db:
        rows = db.query(
            "SELECT effective_at, capped_total, isolated_total FROM {asset_totals_history} "
            "WHERE asset = ? ORDER BY effective_at, position",
            ("USDT",),
        )
    assert [(t[11:16], Decimal(c), Decimal(i)) for t, c, i in rows] == [
        ("09:20", 0, 50),
        ("09:30", 7, 50),
        ("10:00", 107, 50),
        ("10:05", 108, 50),
    ]

    # The accounts as of 09:45 and at the log positions in between.
    as_of = {a: side.account(a, PointInTime(at=moment(45))) for a in ("u1:cross", "u2:cross")}
    assert (as_of["u1:cross"].status, as_of["u1:cross"].version) == ("not_open", 0)
    assert as_of["u2:cross"].holdings == {"USDT": "7"}
    assert side.account("u2:cross", PointInTime(position=position_a)).status == "not_open"
    assert side.account("u2:cross", PointInTime(position=position_b)).holdings == {"USDT": "7"}
    at_c = side.account("u3:isolated:BTCUSDT", PointInTime(position=position_c))
    assert (at_c.holdings, at_c.liabilities) == ({"BTC": "0.01", "USDT": "50"}, {"USDT": "50"})

    # A rebuild (every event in one batch) gives the same history.
    read_models.rebuild(["asset_totals"])
    rebuilt = ReadSide(read_models, catch_up=False)
    assert {m: usdt_totals(rebuilt, m) for m in expected} == expected


# --- 3. long histories (aggregate snapshots every 100 versions) -----------------------------------

HOUR_CHUNKS = (1, 3, 6, 9, 2, 5, 8, 4)  # hours of interest charged by each accrual


def is_checked_version(version: int, last: int) -> bool:
    """Versions next to the snapshot boundaries, the ends, and a sample of the rest."""
    interval = limits.SNAPSHOT_INTERVAL
    near_boundary = min(version % interval, interval - version % interval) <= 2
    return near_boundary or version <= 3 or version >= last - 2 or version % 17 == 0


def test_an_account_with_hundreds_of_events_is_given_back_at_every_point(
    ledger: Ledger, read_models: ReadModels, database_url: str
) -> None:
    """u1's cross account gains more than 250 events (hours of interest charged in chunks,
    small transfers in between, BTC marked now and then). Its state at every recorded position
    and time is what the write side said then, whether or not the store holds snapshots of it
    (the Ledger snapshots accounts every limits.SNAPSHOT_INTERVAL versions); and at the position
    of its versions (around each snapshot boundary, and a sample of the others) the read side
    answers exactly as one that replays every event from the first (snapshots disabled) does."""
    accepted(ledger, "list_asset", 0, asset="USDT", collateral_rank=1, quantity_decimals=2)
    accepted(ledger, "list_asset", 1, asset="BTC", collateral_rank=2)
    accepted(ledger, "mark_prices", 2, prices={"BTC": "20000"})
    accepted(ledger, "set_borrow_terms", 3, asset="USDT", hourly_interest_rate="0.0001")
    u1 = {"user": "u1", "account": "cross"}
    accepted(ledger, "transfer_in", 5, **u1, asset="BTC", quantity="1")
    accepted(ledger, "borrow", 6, **u1, asset="USDT", quantity="1000")
    history = [record(ledger, None, 6, ("u1:cross",))]
    hour = 0
    for index in range(1000):
        if history[-1].accounts["u1:cross"].version > 260:
            break
        hour += HOUR_CHUNKS[index % len(HOUR_CHUNKS)]
        accrual = command("accrue_interest", effective_at=at(60 * hour), until=at(60 * hour))
        assert run(ledger, accrual).is_accepted
        history.append(record(ledger, None, 60 * hour, ("u1:cross",)))
        movement = "transfer_out" if index % 3 == 2 else "transfer_in"
        accepted(ledger, movement, 60 * hour + 10, **u1, asset="USDT", quantity="0.5")
        history.append(record(ledger, None, 60 * hour + 10, ("u1:cross",)))
        if index % 10 == 0:
            accepted(ledger, "mark_prices", 60 * hour + 20, prices={"BTC": str(20000 + index)})
            history.append(record(ledger, None, 60 * hour + 20, ("u1:cross",)))
    final = history[-1].accounts["u1:cross"]
    assert final.version > 250
    assert final.interest == {"USDT": format_plain(Decimal("0.1") * (hour + 1))}

    side = reader(read_models)
    mismatches: list[str] = []
    for then in history:
        recorded = then.accounts["u1:cross"]
        by_position = side.account("u1:cross", PointInTime(position=then.position))
        mismatches += differences(recorded, by_position, f"@{then.minute} position")
        by_time = side.account("u1:cross", PointInTime(at=then.effective_at))
        mismatches += differences(recorded, by_time, f"@{then.minute} at")
    assert mismatches == []

    # Versions around the snapshot boundaries (and a sample), against a read side that replays
    # every event from the first.
    account_key = str(MarginAccount.create_id("u1", "cross"))
    with read_models.store.transaction(commit=False) as db:
        positions = db.query(
            "SELECT originator_version, position FROM {event_index} "
            "WHERE originator_id = ? ORDER BY position",
            (account_key,),
        )
    assert [int(v) for v, _p in positions] == list(range(1, final.version + 1))
    with (
        Ledger(database_url, env={"IS_SNAPSHOTTING_ENABLED": "n"}) as replaying,
        ReadModels(replaying) as replay_models,
    ):
        assert replaying.snapshots is None
        replay_side = ReadSide(replay_models, catch_up=False)
        for version, position in positions:
            if not is_checked_version(int(version), final.version):
                continue
            when = PointInTime(position=int(position))
            loaded = side.account("u1:cross", when)
            assert loaded.version == int(version)
            mismatches += differences(
                replay_side.account("u1:cross", when), loaded, f"version {version}"
            )
    assert mismatches == []


def test_interest_settled_later_is_in_the_business_time_view(
    ledger: Ledger, read_models: ReadModels
) -> None:
    """Interest is settled lazily: the hours 10:00-12:00 of u1's loan are charged (dated at each
    hour) only when the account is next touched at 13:10. As of 12:30 the account therefore
    shows them (they are events of its history dated before 12:30: DOMAIN.md §8's prefix),
    while at the log position recorded at 12:30 it is what the write side said then. This is
    why the big scenario runs accrue_interest at each hour before recording anything."""
    accepted(ledger, "list_asset", 0, asset="USDT", collateral_rank=1, quantity_decimals=2)
    accepted(ledger, "list_asset", 0, asset="BTC", collateral_rank=2)
    accepted(ledger, "mark_prices", 0, prices={"BTC": "20000"})
    accepted(ledger, "set_borrow_terms", 0, asset="USDT", hourly_interest_rate="0.0001")
    u1 = {"user": "u1", "account": "cross"}
    accepted(ledger, "transfer_in", 1, **u1, asset="BTC", quantity="1")
    accepted(ledger, "borrow", 2, **u1, asset="USDT", quantity="1000")  # 0.10 for 09:00
    accepted(ledger, "mark_prices", 210, prices={"BTC": "21000"})  # 12:30, not u1's event
    then = record(ledger, read_models, 210, ("u1:cross",))
    accepted(ledger, "transfer_in", 250, **u1, asset="USDT", quantity="5")  # 13:10

    side = reader(read_models)
    recorded = then.accounts["u1:cross"]
    assert recorded.interest == {"USDT": "0.1"}
    assert side.account("u1:cross", PointInTime(position=then.position)) == recorded
    as_of = side.account("u1:cross", PointInTime(at=then.effective_at))
    assert as_of.interest == {"USDT": "0.4"}  # 09:00, 10:00, 11:00 and 12:00
    assert (as_of.version, as_of.last_effective_at) == (
        recorded.version + 3,
        "2026-03-02T12:00:00Z",
    )
    assert (as_of.holdings, as_of.liabilities) == (recorded.holdings, recorded.liabilities)
    assert as_of.debt_usdt == "1000.4"
    # valued at 12:30's prices: 22,000 / 1,000.4
    assert Decimal(as_of.margin_level or 0).quantize(Decimal("0.0001")) == Decimal("21.9912")
    assert as_of.total_value_usdt == recorded.total_value_usdt == "22000"
    [usdt] = [a for a in side.assets(PointInTime(at=then.effective_at)) if a.asset == "USDT"]
    assert (usdt.borrowed_total, usdt.interest_total) == ("1000", "0.4")
    [usdt_then] = [a for a in then.assets if a.asset == "USDT"]
    assert usdt_then.interest_total == "0.1"


# --- 4. edge cases --------------------------------------------------------------------------------


@pytest.fixture
def small_history(ledger: Ledger) -> dict[str, int]:
    """USDT and ABC (capped) listed at 09:00; u1's cross account opens at 09:10 and gains more
    at 09:20; u2's first transfer (client channel, flagged) waits for verification at 09:30 and
    passes at 09:40. The log positions after each step, by name."""
    positions = {
        "listed": accepted(ledger, "list_asset", 0, asset="USDT", collateral_rank=1),
        "abc": accepted(ledger, "list_asset", 0, asset="ABC", collateral_rank=8),
        "cap": accepted(ledger, "set_collateral_cap", 0, asset="ABC", upper_limit="1000"),
        "priced": accepted(ledger, "mark_prices", 0, prices={"ABC": "2"}),
        "opened": accepted(
            ledger, "transfer_in", 10, user="u1", account="cross", asset="ABC", quantity="100"
        ),
        "more": accepted(
            ledger, "transfer_in", 20, user="u1", account="cross", asset="USDT", quantity="7"
        ),
    }
    pending = command(
        "transfer_in",
        "first-u2",
        effective_at=at(30),
        user="u2",
        account="cross",
        asset="ABC",
        quantity="5",
        channel="client",
        risk_flagged=True,
    )
    assert run(ledger, pending).status.value == "pending"
    positions["pending"] = head(ledger)
    positions["verified"] = accepted(
        ledger,
        "complete_verification",
        40,
        user="u2",
        account="cross",
        transfer_request_id="first-u2",
        passed=True,
    )
    return positions


def test_edge_points_in_time(
    ledger: Ledger, read_models: ReadModels, small_history: dict[str, int]
) -> None:
    side = reader(read_models)
    nothing = unknown_account_view("u1:cross")
    assert (nothing.status, nothing.version, nothing.holdings) == ("not_open", 0, {})

    def as_of(minute: float, account_id: str = "u1:cross") -> AccountView:
        return side.account(account_id, PointInTime(at=moment(minute)))

    def at_position(position: int, account_id: str = "u1:cross") -> AccountView:
        return side.account(account_id, PointInTime(position=position))

    # Before any event, and before the account existed (after the listings).
    assert as_of(-60 * 24) == nothing
    assert side.assets(PointInTime(at=moment(-1))) == []
    assert as_of(9.99) == nothing
    assert at_position(0) == at_position(small_history["priced"]) == nothing
    # At exactly an event's effective_at: included; a microsecond before: not.
    opened = as_of(10)
    assert (opened.status, opened.holdings) == ("open", {"ABC": "100"})
    assert opened.version > 0 and opened.last_effective_at == "2026-03-02T09:10:00Z"
    just_before = moment(10) - timedelta(microseconds=1)
    assert side.account("u1:cross", PointInTime(at=just_before)) == nothing
    assert at_position(small_history["opened"]) == opened
    assert as_of(19.99) == opened
    assert as_of(20).holdings == {"ABC": "100", "USDT": "7"}
    assert opened.total_value_usdt == "200"  # 100 ABC at 2
    # The same instant written with another offset.
    ten_past = datetime.fromisoformat("2026-03-02T10:10:00+01:00")
    assert side.account("u1:cross", PointInTime(at=ten_past)) == opened
    # A pending first transfer, then the account opened by the verification.
    assert as_of(29, "u2:cross") == unknown_account_view("u2:cross")
    pending = as_of(35, "u2:cross")
    assert (pending.status, pending.holdings) == ("pending_verification", {})
    assert at_position(small_history["pending"], "u2:cross") == pending
    verified = as_of(40, "u2:cross")
    assert (verified.status, verified.holdings) == ("open", {"ABC": "5"})
    # A position beyond the head, and a time far ahead: the state now.
    far = small_history["verified"] + 10_000
    for account_id in ("u1:cross", "u2:cross", "u9:cross"):
        now = account_view(ledger, account_id)
        assert side.account(account_id) == now
        assert at_position(far, account_id) == now
        assert as_of(60 * 24 * 365, account_id) == now
    assert side.assets(PointInTime(at=moment(60 * 24 * 365))) == side.assets()
    abc = {
        m: [a for a in side.assets(PointInTime(at=moment(m))) if a.asset == "ABC"]
        for m in (0, 10, 40)
    }
    assert [(a.total, a.band, a.ratio) for a in abc[0]] == [("0", "A", "0")]
    assert [(a.total, a.ratio) for a in abc[10]] == [("100", "0.1")]
    assert [(a.total, a.ratio) for a in abc[40]] == [("105", "0.105")]
    # An account id that is not one, at a past point too.
    for when in (PointInTime(at=moment(10)), PointInTime(position=1), PointInTime()):
        with pytest.raises(AccountIdInvalid):
            side.account("u1:spot", when)


def test_cli_time_travel_answers_as_the_api_does(
    ledger: Ledger, read_models: ReadModels, small_history: dict[str, int], database_url: str
) -> None:
    """`ledger account ID --as-of T --json`, `... --at-position N --json` and
    `ledger assets --as-of T --json` print exactly the API's model_dump(mode="json")."""
    side = reader(read_models)
    for minute in (-1, 10, 35):  # before anything; u1 open, u2 pending
        when = format_time(moment(minute))
        for account_id in ("u1:cross", "u2:cross"):
            api = side.account(account_id, PointInTime(at=moment(minute)))
            cli = query("account", account_id, "--db", database_url, "--as-of", when)
            assert cli == api.model_dump(mode="json"), (account_id, minute)
        assets = query("assets", "--db", database_url, "--as-of", when)
        assert assets == [
            a.model_dump(mode="json") for a in side.assets(PointInTime(at=moment(minute)))
        ]
    for name in ("priced", "pending", "verified"):
        position = small_history[name]
        api = side.account("u2:cross", PointInTime(position=position))
        cli = query("account", "u2:cross", "--db", database_url, "--at-position", str(position))
        assert cli == api.model_dump(mode="json"), name
    # Any RFC 3339 offset names the same instant.
    offset = query(
        "account", "u1:cross", "--db", database_url, "--as-of", "2026-03-02T10:15:00+01:00"
    )
    assert offset == side.account("u1:cross", PointInTime(at=moment(15))).model_dump(mode="json")
    # The installed console script too (a real process).
    completed = subprocess.run(
        [
            str(ledger_script()),
            "account",
            "u1:cross",
            "--db",
            database_url,
            "--as-of",
            format_time(moment(10)),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == side.account(
        "u1:cross", PointInTime(at=moment(10))
    ).model_dump(mode="json")


@pytest.mark.parametrize(
    "args",
    [
        ["account", "u1:cross", "--as-of", "yesterday"],
        ["account", "u1:cross", "--as-of", "2026-03-02T09:00:00"],  # no timezone
        ["account", "u1:cross", "--as-of", "2026-13-02T09:00:00Z"],
        ["assets", "--as-of", "not-a-time"],
        ["assets", "--as-of", "2026-03-02"],
    ],
    ids=["words", "no-timezone", "month-13", "assets-words", "assets-date-only"],
)
def test_cli_bad_as_of_exits_2_naming_the_option(sqlite_url: str, args: list[str]) -> None:
    result = invoke(*args, "--db", sqlite_url, "--json")
    assert result.exit_code == EXIT_CANNOT_RUN, result.stdout
    assert "--as-of" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["account", "u1:cross", "--as-of", "2026-03-02T09:00:00Z", "--at-position", "3"],
        ["account", "u1:cross", "--at-position", "-1"],
        ["account", "u1:cross", "--at-position", "three"],
        ["account", "u1:spot", "--as-of", "2026-03-02T09:00:00Z"],
        ["account", "u1:spot", "--at-position", "3"],
        ["account", "nobody"],
        ["account", "u1:isolated:btcusdt", "--at-position", "3"],
    ],
    ids=[
        "both-flags",
        "negative-position",
        "position-not-a-number",
        "bad-id-as-of",
        "bad-id-position",
        "bad-id",
        "bad-pair",
    ],
)
def test_cli_bad_time_travel_flags_exit_2(database_url: str, args: list[str]) -> None:
    set_up_market(database_url)
    result = invoke(*args, "--db", database_url, "--json")
    assert result.exit_code == EXIT_CANNOT_RUN, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.strip()


# --- regressions found on the way ------------------------------------------------------------


def test_band_timeline_catches_up_after_a_pool_opened_in_an_earlier_batch(
    ledger: Ledger, read_models: ReadModels
) -> None:
    """Catching up after every command (as these tests and `ledger project --follow` do) once
    failed: a pool opened in a batch that did not also change it was never saved, so the next
    batch's CapSet raised KeyError in BandTimeline.apply, and every later catch-up with it."""
    accepted(ledger, "list_asset", 0, asset="ABC", collateral_rank=8)  # opens ABC's pool
    read_models.catch_up()
    accepted(ledger, "set_collateral_cap", 1, asset="ABC", upper_limit="100")

    read_models.catch_up()

    [change] = ReadSide(read_models, catch_up=False).bands(asset="ABC")
    assert (change.band_before, change.band_after) == (None, "A")
