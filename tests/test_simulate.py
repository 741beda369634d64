"""`ledger simulate`: a deterministic scenario generator whose histories the ledger runs without
an invalid command, and whose aftermath keeps the ledger's invariants (DOMAIN.md §3, §7, §9).

Method: one module-scoped run (60 accounts, 12 hours, a SQLite file) through the same path as
the CLI; the invariants are then read back from the store: the pools against every account, the
margin levels at the last prices, the insurance fund against its own events. The CLI tests run a
smaller history and replay its --out file with `ledger submit` into a fresh store.
"""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import get_topic
from psycopg import sql

from ledger import Ledger
from ledger.cli.simulate import run_commands
from ledger.commands import parse_command
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.request import Request
from ledger.params import MARGIN_THRESHOLDS_DEFAULT
from ledger.queries import AccountView, account_view, parse_account_id
from ledger.simulate import generate, summarize
from tests.cli.cli_support import EXIT_CANNOT_RUN, EXIT_OK, invoke, json_lines
from tests.conftest import POSTGRES_URL, postgres_required

START = datetime(2026, 3, 2, tzinfo=UTC)
SEED, ACCOUNTS, HOURS = 7, 60, 12
INTEGER_FIELDS = {"collateral_rank", "quantity_decimals"}  # every other number is a string


def commands_for(seed: int = SEED, accounts: int = ACCOUNTS, hours: int = HOURS) -> list[Any]:
    return list(generate(seed, accounts=accounts, hours=hours, start=START))


@dataclass(frozen=True)
class Run:
    url: str
    commands: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]

    def account_ids(self) -> list[str]:
        return sorted({f"{c['user']}:{c['account']}" for c in self.commands if "account" in c})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The crash scenario once per backend (issue #5: both backends)."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('simulate') / 'ledger.sqlite3'}"
    else:
        if not postgres_required():
            pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
        schema = f"test_{uuid.uuid4().hex[:16]}"
        url = f"{POSTGRES_URL}?schema={schema}"
    commands = commands_for()
    with Ledger(url) as ledger:
        outcomes = run_commands(ledger, commands, show_progress=False)
    yield Run(url=url, commands=commands, outcomes=outcomes)
    if schema is not None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            connection.execute(drop)


@pytest.fixture
def ledger(run: Run) -> Iterator[Ledger]:
    with Ledger(run.url) as opened:
        yield opened


# --- the generator ----------------------------------------------------------------------------


def test_the_same_seed_and_sizes_give_the_same_command_stream() -> None:
    assert commands_for() == commands_for()


def test_a_different_seed_gives_a_different_command_stream() -> None:
    assert commands_for(SEED + 1) != commands_for()


def test_the_stream_is_json_ready_in_business_time_order_with_seeded_unique_ids() -> None:
    commands = commands_for()

    assert json.loads(json.dumps(commands)) == commands
    assert all(_numbers_are_strings(c) for c in commands)
    times = [parse_command(c).effective_at for c in commands]
    assert times == sorted(times)
    request_ids = [c["request_id"] for c in commands]
    assert len(set(request_ids)) == len(request_ids)
    assert all(r.startswith(f"s{SEED}-") for r in request_ids)


def test_every_hour_has_its_interest_accrual_price_mark_and_risk_sweep() -> None:
    commands = commands_for()
    hourly = [c for c in commands if c["type"] in ("accrue_interest", "check_margins")]

    assert len(hourly) == 2 * HOURS
    assert [c["until"] for c in hourly if c["type"] == "accrue_interest"] == [
        f"2026-03-02T{hour:02d}:00:00Z" for hour in range(1, HOURS + 1)
    ]
    marks = [c for c in commands if c["type"] == "mark_prices"]
    assert len(marks) == HOURS + 1  # the opening prices, then every hour
    sweeps = [i for i, c in enumerate(commands) if c["type"] == "check_margins"]
    assert all(commands[i - 1]["type"] == "mark_prices" for i in sweeps)


# --- one run through the ledger ---------------------------------------------------------------


def test_a_small_run_has_no_invalid_outcome_and_reaches_every_risk_event(run: Run) -> None:
    summary = summarize(run.commands, run.outcomes)

    assert summary["invalid"] == 0, [o for o in run.outcomes if o["status"] == "invalid"]
    assert set(summary["statuses"]) <= {"accepted", "rejected", "pending"}
    assert summary["rejection_reasons"]["collateral_cap"] >= 1
    assert summary["rejection_reasons"]["opening_risk_check"] >= 1
    assert summary["margin_calls"] >= 1
    assert summary["liquidations"] >= 1
    assert summary["top_ups"]["topped_up"] + summary["top_ups"]["limited"] >= 1


def test_cap_rejections_asked_for_more_than_q_max(run: Run) -> None:
    refused = [o for o in run.outcomes if o.get("reason") == "collateral_cap"]

    assert refused
    for outcome in refused:
        context = outcome["context"]
        assert Decimal(context["requested"]) > Decimal(context["q_max"]), outcome


def test_platform_totals_equal_the_cross_and_portfolio_holdings(run: Run, ledger: Ledger) -> None:
    views = [account_view(ledger, account_id) for account_id in run.account_ids()]
    capped = [c["asset"] for c in run.commands if c["type"] == "set_collateral_cap"]

    assert capped
    for asset in capped:
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(asset))
        held = sum(
            (Decimal(v.holdings.get(asset, "0")) for v in views if v.kind != "isolated"),
            Decimal(0),
        )
        assert pool.platform_total == held, asset


def test_every_indebted_account_is_above_its_liquidation_level_or_was_liquidated(
    run: Run, ledger: Ledger
) -> None:
    liquidated = {event.originator_id for event in _events(ledger, MarginAccount.Liquidated)}
    views = [account_view(ledger, account_id) for account_id in run.account_ids()]
    indebted = [v for v in views if v.debt_usdt is not None and Decimal(v.debt_usdt) > 0]

    assert indebted and liquidated
    for view in indebted:
        user, account = parse_account_id(view.account)
        assert (
            _is_above_liquidation_level(view)
            or MarginAccount.create_id(user, account) in liquidated
        ), view


def test_the_insurance_fund_balance_equals_its_recorded_flows(ledger: Ledger) -> None:
    fund = ledger.get_aggregate(InsuranceFund, InsuranceFund.create_id())
    funded = list(_events(ledger, InsuranceFund.Funded))
    covered = list(_events(ledger, InsuranceFund.DeficitCovered))

    assert {event.source for event in funded} >= {"admin"}  # type: ignore[attr-defined]
    inflow = sum((e.amount_usdt for e in funded), Decimal(0))  # type: ignore[attr-defined]
    outflow = sum((e.covered_usdt for e in covered), Decimal(0))  # type: ignore[attr-defined]
    assert fund.balance_usdt == inflow - outflow >= 0


# --- the command line -------------------------------------------------------------------------


def test_the_out_file_replayed_with_submit_gives_the_same_outcomes(tmp_path: Path) -> None:
    simulated, replayed = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    out = tmp_path / "history.jsonl"

    result = invoke(
        "simulate",
        "--seed",
        "3",
        "--accounts",
        "40",
        "--hours",
        "8",
        "--db",
        simulated,
        "--out",
        str(out),
        "--json",
    )

    assert result.exit_code == EXIT_OK, result.stderr
    [summary] = json_lines(result.stdout)
    assert summary["invalid"] == 0
    assert summary["commands"] == len(out.read_text().splitlines())
    assert {a["asset"] for a in summary["assets"]} >= {"USDT", "BTC", "ETH"}
    submitted = invoke("submit", str(out), "--db", replayed)
    assert submitted.exit_code == EXIT_OK, submitted.stderr
    outcomes = json_lines(submitted.stdout)
    assert len(outcomes) == summary["commands"]
    with Ledger(simulated) as ledger:
        for outcome in outcomes:
            first = ledger.get_aggregate(Request, Request.create_id(outcome["request_id"]))
            assert (first.outcome["status"], first.outcome["reason"]) == (
                outcome["status"],
                outcome.get("reason"),
            ), outcome["request_id"]


def test_simulate_refuses_a_store_that_already_holds_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    arguments = ("simulate", "--accounts", "30", "--hours", "6", "--db", url, "--json")
    assert invoke(*arguments).exit_code == EXIT_OK

    result = invoke(*arguments)

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {url} already holds events; the simulation needs an empty store"
    ]


def test_simulate_refuses_sizes_below_the_minimum() -> None:
    assert invoke("simulate", "--accounts", "5").exit_code == EXIT_CANNOT_RUN
    assert invoke("simulate", "--hours", "2").exit_code == EXIT_CANNOT_RUN


# --- helpers ----------------------------------------------------------------------------------


def _numbers_are_strings(value: Any, key: str = "") -> bool:
    """Amounts, prices and rates are decimal strings; only ranks and decimals are integers."""
    if isinstance(value, dict):
        return all(_numbers_are_strings(v, k) for k, v in value.items())
    if isinstance(value, list):
        return all(_numbers_are_strings(v, key) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    return isinstance(value, int) and key in INTEGER_FIELDS


def _events(ledger: Ledger, *classes: type) -> Iterator[DomainEventProtocol[Any]]:
    """Every event of these classes, read back from the notification log in pages."""
    topics = [get_topic(cls) for cls in classes]
    position = 0
    while True:
        page = ledger.recorder.select_notifications(
            start=position, limit=500, topics=topics, inclusive_of_start=False
        )
        yield from (ledger.mapper.to_domain_event(n) for n in page)
        if len(page) < 500:
            return
        position = page[-1].id


def _is_above_liquidation_level(view: AccountView) -> bool:
    """The level that decides liquidation for this account, above its threshold (DOMAIN.md §4).

    The account view shows a collateral margin level for cross accounts only; a portfolio
    account is governed by it too (README: levels), so it is computed from the view's values.
    """
    if view.kind == "portfolio":
        assert view.collateral_value_usdt is not None and view.debt_usdt is not None, view
        liquidation_level = MARGIN_THRESHOLDS_DEFAULT["classic_3x"].liquidation_level
        return Decimal(view.collateral_value_usdt) > liquidation_level * Decimal(view.debt_usdt)
    if view.kind == "isolated":
        level, mode = view.margin_level, "isolated"
    elif view.mode == "pro":
        level, mode = view.pro_margin_level, "pro"
    else:
        level, mode = view.collateral_margin_level, str(view.mode)
    assert level is not None, view
    return Decimal(level) > MARGIN_THRESHOLDS_DEFAULT[mode].liquidation_level
