"""`ledger explain`, `ledger history` and `ledger export` (ledger/audit, ledger/cli/records.py)
on both backends, against the write side and the raw notification log.

The scenario (minutes after T0 = 2026-03-02T09:00:00Z), built through the normal commands:
- USDT (rank 1, 2 decimals, lends at 0.01% an hour), ABC (rank 8, 2 decimals, capped:
  U = 10,000 tokens, fixed quota 500 USDT), BTC (rank 2); prices ABC 1.25, BTC 20,000.
- u1:cross: 1 ABC 1,000 in; 2 USDT 120 in; 3 USDT 20 out; 4 borrows 1,500 USDT ("borrow-1",
  0.15 interest for the 09:00 hour at once); 5 trades 1,500 USDT for 1,200 ABC with a 1 USDT
  fee (ABC only on the buy side). u1 now holds ABC 2,200 and USDT 99; T = 1,000 + 1,200 = 2,200.
- u2:cross: 6 ABC 5,800 in (band A: q_max = 0.8 U - T = 5,800 exactly, T = 8,000 = 80%);
  7, 8, 9 ABC 400 in each (band B: F = 500 / 1.25 = 400, q_max = min(400, U - T)): T = 9,200;
  10 BTC 0.01 in.
- u3:cross: 11 USDT 10 in (the account is open); 12 "refused-1": ABC 450 in. By hand:
  T = 9,200, U = 10,000, r = 0.92 (band C: 90% <= r < 100%), F = 500 / 1.25 = 400 tokens,
  q_max = min(F, U - T) = min(400, 800) = 400 < 450: rejected, collateral_cap.
- u2: 13 borrows 100 USDT ("borrow-2"); 14 trades 100 ABC for 125 USDT with a 0.0001 BTC fee
  (BTC only as the fee): T = 9,100.
- u1: 30 repays 50 USDT: interest 0.15 first, principal 49.85: owes 1,450.15, holds USDT 49.
- 180 "accrue-1" (until 12:00): u1 10:00, 11:00, 12:00 at 1,450.15 x 0.0001 = 0.145015, rounded
  up to 0.15 each; u2 three hours at 0.01: six InterestCharged events.
- 200 ABC marked at 0.7. 210 "sweep-1" (check_margins): u1's CML = (2,200 x 0.7 + 49) /
  (1,450.15 + 0.45) = 1,589 / 1,450.60 = 1.0954 <= 1.1: liquidated; repaid principal 1,450.15
  and interest 0.45; the fund takes the 2% fee of the proceeds: 0.02 x 1,589 = 31.78.
"""

import csv
import importlib
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any
from uuid import UUID

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ledger import Ledger, limits
from ledger.audit.explain import RecordNotFound, explain
from ledger.audit.export import ExportFilter, export_rows
from ledger.audit.history import HistoryLine, account_history
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.registry import event_classes
from ledger.money import format_plain
from ledger.outcomes import Outcome
from ledger.simulate.bulk import generate_bulk_history
from projections.runner import ReadModels
from tests.cli.cli_support import (
    CAP_MESSAGE,
    EXIT_CANNOT_RUN,
    EXIT_OK,
    PLAIN_NUMBER,
    invoke,
    json_lines,
)
from tests.support import T0, at, command, run

importlib.import_module("ledger.cli.records")  # registers explain, history and export on `app`

COMMON = {"originator_id", "originator_version", "timestamp", "effective_at", "actor", "request_id"}
BALANCE_FIELDS = {"holding": "holdings", "liability": "liabilities", "interest": "interest"}
PARQUET_SCHEMA = [
    ("position", pa.int64()),
    ("event_id", pa.string()),
    ("aggregate", pa.string()),
    ("originator_id", pa.string()),
    ("originator_version", pa.int64()),
    ("event_type", pa.string()),
    ("effective_at", pa.timestamp("us", tz="UTC")),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
    ("actor", pa.string()),
    ("request_id", pa.string()),
    ("payload", pa.string()),
]
COLUMNS = [name for name, _ in PARQUET_SCHEMA]
FORMATS = ("jsonl", "csv", "parquet")
U1, U2, U3 = "u1:cross", "u2:cross", "u3:cross"
REFUSED, BORROW, ACCRUE, SWEEP = "refused-1", "borrow-1", "accrue-1", "sweep-1"
U1_EVENT_TYPES = {
    "MarginAccount.TransferredIn",
    "MarginAccount.TransferredOut",
    "MarginAccount.Borrowed",
    "MarginAccount.TradeSettled",
    "MarginAccount.Repaid",
    "MarginAccount.InterestCharged",
    "MarginAccount.Liquidated",
}


# --- the scenario ------------------------------------------------------------------------------


def accepted(
    ledger: Ledger, type_: str, minute: float, request_id: str | None = None, **fields: Any
) -> Outcome:
    outcome = run(ledger, command(type_, request_id, effective_at=at(minute), **fields))
    assert outcome.is_accepted, outcome
    return outcome


def build_scenario(ledger: Ledger) -> None:
    """The history in the module docstring; every step checked on the way."""
    for asset, rank, decimals in (("USDT", 1, 2), ("ABC", 8, 2), ("BTC", 2, 8)):
        accepted(
            ledger, "list_asset", 0, asset=asset, collateral_rank=rank, quantity_decimals=decimals
        )
    accepted(
        ledger, "set_collateral_cap", 0, asset="ABC", upper_limit="10000", fixed_quota_usdt="500"
    )
    accepted(ledger, "mark_prices", 0, prices={"ABC": "1.25", "BTC": "20000"})
    accepted(ledger, "set_borrow_terms", 0, asset="USDT", hourly_interest_rate="0.0001")

    cross = {"account": "cross"}
    accepted(ledger, "transfer_in", 1, user="u1", **cross, asset="ABC", quantity="1000")
    accepted(ledger, "transfer_in", 2, user="u1", **cross, asset="USDT", quantity="120")
    accepted(ledger, "transfer_out", 3, user="u1", **cross, asset="USDT", quantity="20")
    accepted(ledger, "borrow", 4, BORROW, user="u1", **cross, asset="USDT", quantity="1500")
    accepted(
        ledger,
        "settle_trade",
        5,
        user="u1",
        **cross,
        sell_asset="USDT",
        sell_quantity="1500",
        buy_asset="ABC",
        buy_quantity="1200",
        fee_asset="USDT",
        fee_quantity="1",
    )
    accepted(ledger, "transfer_in", 6, user="u2", **cross, asset="ABC", quantity="5800")
    for minute in (7, 8, 9):
        accepted(ledger, "transfer_in", minute, user="u2", **cross, asset="ABC", quantity="400")
    accepted(ledger, "transfer_in", 10, user="u2", **cross, asset="BTC", quantity="0.01")
    accepted(ledger, "transfer_in", 11, user="u3", **cross, asset="USDT", quantity="10")
    refused = run(
        ledger,
        command(
            "transfer_in",
            REFUSED,
            effective_at=at(12),
            user="u3",
            **cross,
            asset="ABC",
            quantity="450",
        ),
    )
    assert (refused.status, refused.reason) == ("rejected", "collateral_cap"), refused
    accepted(ledger, "borrow", 13, "borrow-2", user="u2", **cross, asset="USDT", quantity="100")
    accepted(
        ledger,
        "settle_trade",
        14,
        user="u2",
        **cross,
        sell_asset="ABC",
        sell_quantity="100",
        buy_asset="USDT",
        buy_quantity="125",
        fee_asset="BTC",
        fee_quantity="0.0001",
    )
    accepted(ledger, "repay", 30, user="u1", **cross, asset="USDT", quantity="50")
    accepted(ledger, "accrue_interest", 180, ACCRUE, until=at(180))
    accepted(ledger, "mark_prices", 200, prices={"ABC": "0.7"})
    sweep = accepted(ledger, "check_margins", 210, SWEEP)
    assert sweep.context["liquidations"] == 1, sweep


@pytest.fixture
def scenario(ledger: Ledger) -> Ledger:
    build_scenario(ledger)
    return ledger


# --- reading the log by hand -------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    position: int
    event: Any


def the_log(ledger: Ledger) -> list[Logged]:
    """Every event of the notification log, in log order, decoded."""
    notifications = ledger.recorder.select_notifications(
        start=0, limit=10_000_000, inclusive_of_start=False
    )
    return [Logged(n.id, ledger.mapper.to_domain_event(n)) for n in notifications]


def positions_by_event_id(log: list[Logged]) -> dict[str, int]:
    return {f"{e.event.originator_id}:{e.event.originator_version}": e.position for e in log}


def type_name(event: Any) -> str:
    """The registry's readable name, found by the event's class (not by the exporter's code)."""
    [name] = [name for name, cls in event_classes().items() if type(event) is cls]
    return name


def own_fields(event: Any) -> dict[str, Any]:
    """The event's fields as the contract prints them: quantities without trailing zeros."""
    dumped = event.model_dump(mode="json")
    python = event.model_dump()
    return {k: _plain(python[k], dumped[k]) for k in dumped if k not in COMMON}


def _plain(value: Any, dumped: Any) -> Any:
    """`dumped` (pydantic's JSON mode), with every Decimal of `value` written plainly."""
    if isinstance(value, Decimal):
        text = "0" if value.is_zero() else format(value.normalize(), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, dict):
        return {k: _plain(v, dumped[str(k)]) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, d) for v, d in zip(value, dumped, strict=True)]
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(), dumped)
    return dumped


def account_uuid(account_id: str) -> UUID:
    user, name = account_id.split(":", 1)
    return MarginAccount.create_id(user, name)


def as_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        assert value.tzinfo is not None, value
        return value.astimezone(UTC)
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ratio(numerator: str, denominator: str) -> str:
    """A level as outcomes print it: 28 significant digits, plain."""
    with localcontext() as context:
        context.prec = limits.RATIO_DIGITS
        return format_plain(Decimal(numerator) / Decimal(denominator))


def decimals(values: dict[str, str]) -> dict[str, Decimal]:
    for text in values.values():
        assert PLAIN_NUMBER.match(text), values
    return {asset: Decimal(text) for asset, text in values.items()}


def decimals_loose(values: dict[str, str]) -> dict[str, Decimal]:
    """Quantities as numbers, whatever their trailing zeros."""
    return {asset: Decimal(text) for asset, text in values.items()}


# --- explain -----------------------------------------------------------------------------------


def test_explain_a_refused_capped_transfer_gives_the_band_figures_and_both_events(
    scenario: Ledger,
) -> None:
    explanation = explain(scenario, REFUSED)

    assert explanation.request_id == REFUSED
    assert explanation.command_type == "transfer_in"
    assert "§3" in explanation.rule and "max collateral" in explanation.rule
    assert (explanation.actor, explanation.account) == ("user:u3", U3)
    assert explanation.effective_at == "2026-03-02T09:12:00Z"
    assert (explanation.status, explanation.reason) == ("rejected", "collateral_cap")
    assert explanation.message == CAP_MESSAGE.format(asset="ABC", q_max="400")
    assert explanation.command["quantity"] == "450"
    # By hand (module docstring): T = 9,200, U = 10,000, r = 0.92 (band C), F = 500 / 1.25 = 400,
    # q_max = min(400, 10,000 - 9,200) = 400.
    figures = explanation.figures
    assert figures["band"] == "C"
    assert Decimal(figures["total"]) == Decimal(9200)
    assert Decimal(figures["upper_limit"]) == Decimal(10000)
    assert Decimal(figures["ratio"]) == Decimal("0.92")
    assert Decimal(figures["q_max"]) == Decimal(400)
    assert Decimal(figures["price_usdt"]) == Decimal("1.25")
    assert Decimal(figures["fixed_quota"]) == Decimal(500) / Decimal("1.25") == Decimal(400)
    assert Decimal(figures["requested"]) == Decimal(450)

    log = the_log(scenario)
    caused = [e for e in log if e.event.request_id == REFUSED]
    assert [ev.event_id for ev in explanation.events] == [e.event.event_id for e in caused]
    assert [ev.position for ev in explanation.events] == [e.position for e in caused]
    assert explanation.events_total == len(caused)
    positions = [ev.position for ev in explanation.events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)

    by_type = {ev.event_type: ev for ev in explanation.events}
    rejected = by_type["MarginAccount.TransferInRejected"]
    refused = by_type["AssetPool.TransferInRefused"]
    assert rejected.event_id.startswith(f"{account_uuid(U3)}:")
    assert refused.event_id.startswith(f"{AssetPool.create_id('ABC')}:")
    assert rejected.position is not None and refused.position is not None
    assert rejected.position < refused.position  # the order the log holds them in
    assert rejected.fields["reason"] == "collateral_cap"
    assert Decimal(rejected.fields["quantity_requested"]) == Decimal(450)
    assert refused.fields["account_id"] == U3
    for event in (rejected, refused):
        decision = event.fields["decision"]
        assert decision["band"] == "C"
        assert Decimal(decision["total"]) == Decimal(9200)
        assert Decimal(decision["upper_limit"]) == Decimal(10000)
        assert Decimal(decision["q_max"]) == Decimal(400)
        assert Decimal(decision["fixed_quota"]) == Decimal(400)
        assert Decimal(decision["price_usdt"]) == Decimal("1.25")
        assert event.effective_at == "2026-03-02T09:12:00Z"
        assert not set(event.fields) & COMMON
    assert explanation.focus_event_id is None

    # Asked by either event's id: the same explanation, pointing at that event.
    for event_id in (rejected.event_id, refused.event_id):
        focused = explain(scenario, event_id)
        assert focused.focus_event_id == event_id
        assert focused == explanation.model_copy(update={"focus_event_id": event_id})


def test_explain_an_accepted_borrow_shows_the_margin_levels(scenario: Ledger) -> None:
    explanation = explain(scenario, BORROW)

    assert (explanation.command_type, explanation.status, explanation.reason) == (
        "borrow",
        "accepted",
        None,
    )
    assert explanation.account == U1
    # Before: ABC 1,000 x 1.25 + USDT 100 = 1,350 (no haircut on the default ladder), no debt.
    # After: + 1,500 USDT held; owes 1,500 + the first hour's 0.15.
    figures = explanation.figures
    assert figures["level_kind"] == "collateral_margin_level"
    assert Decimal(figures["level_min"]) == Decimal("1.5")  # Classic 3x initial risk ratio
    assert Decimal(figures["collateral_value_usdt_before"]) == Decimal(1350)
    assert figures["collateral_margin_level_before"] is None  # no debt: infinite
    assert Decimal(figures["collateral_value_usdt_after"]) == Decimal(2850)
    assert Decimal(figures["debt_usdt_after"]) == Decimal("1500.15")
    assert figures["collateral_margin_level_after"] == ratio("2850", "1500.15")
    assert Decimal(figures["first_hour_interest"]) == Decimal("0.15")

    [borrowed] = [ev for ev in explanation.events if ev.event_type == "MarginAccount.Borrowed"]
    assert borrowed.event_id.startswith(f"{account_uuid(U1)}:")
    assert borrowed.fields["decision"]["collateral_margin_level_after"] == ratio("2850", "1500.15")
    assert Decimal(borrowed.fields["quantity"]) == Decimal(1500)


def test_explain_a_liquidating_sweep_shows_the_liquidation_and_the_fund(scenario: Ledger) -> None:
    explanation = explain(scenario, SWEEP)

    assert (explanation.command_type, explanation.status) == ("check_margins", "accepted")
    assert "§7" in explanation.rule
    log = the_log(scenario)
    caused = [e for e in log if e.event.request_id == SWEEP]
    assert [(ev.event_id, ev.position) for ev in explanation.events] == [
        (e.event.event_id, e.position) for e in caused
    ]
    assert explanation.events_total == len(caused)

    [liquidated] = [ev for ev in explanation.events if ev.event_type == "MarginAccount.Liquidated"]
    assert liquidated.event_id.startswith(f"{account_uuid(U1)}:")
    # Owed at 12:30: principal 1,500 - 49.85 = 1,450.15; interest 3 x 0.15 = 0.45 (the 09:00 hour
    # was paid by the repay).
    assert decimals_loose(liquidated.fields["repaid_principal"]) == {"USDT": Decimal("1450.15")}
    assert decimals_loose(liquidated.fields["repaid_interest"]) == {"USDT": Decimal("0.45")}
    assert decimals_loose(liquidated.fields["sold"]) == {"ABC": Decimal(2200), "USDT": Decimal(49)}
    assert Decimal(liquidated.fields["decision"]["proceeds_usdt"]) == Decimal(1589)

    fund_id = str(InsuranceFund.create_id())
    fund_events = [ev for ev in explanation.events if ev.event_id.startswith(f"{fund_id}:")]
    assert [ev.event_type for ev in fund_events] == [
        "InsuranceFund.Established",
        "InsuranceFund.Funded",
    ]
    funded = fund_events[-1].fields
    assert (funded["source"], funded["account_id"]) == ("liquidation_fee", U1)
    assert Decimal(funded["amount_usdt"]) == Decimal("0.02") * Decimal(1589) == Decimal("31.78")
    pool = [ev for ev in explanation.events if ev.event_type == "AssetPool.TotalDecreased"]
    assert [(ev.fields["movement"], Decimal(ev.fields["quantity"])) for ev in pool] == [
        ("liquidation", Decimal(2200))
    ]
    assert [ev.event_type for ev in explanation.events][-1] == "Request.Recorded"


def test_explain_lists_at_most_the_limit_and_reports_the_total(
    scenario: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    caused = [e for e in the_log(scenario) if e.event.request_id == ACCRUE]
    charged = [e for e in caused if isinstance(e.event, MarginAccount.InterestCharged)]
    assert len(charged) == 6  # u1 and u2, hours 10:00, 11:00 and 12:00
    monkeypatch.setattr(limits, "EXPLAIN_EVENTS_LISTED_MAX", 4)

    explanation = explain(scenario, ACCRUE)

    assert explanation.events_total == len(caused) > len(explanation.events) == 4
    assert [(ev.event_id, ev.position) for ev in explanation.events] == [
        (e.event.event_id, e.position) for e in caused[:4]
    ]
    listed = invoke("explain", ACCRUE, "--db", scenario.database_url)
    assert listed.exit_code == EXIT_OK, listed.stderr
    assert f"(4 of {len(caused)})" in listed.stdout


def test_explain_unknown_keys_are_not_found(scenario: Ledger) -> None:
    unknown_event = f"{account_uuid(U1)}:9999"
    for key in ("no-such-request", unknown_event, f"{UUID(int=7)}:1"):
        with pytest.raises(RecordNotFound):
            explain(scenario, key)
        result = invoke("explain", key, "--db", scenario.database_url, "--json")
        assert result.exit_code == EXIT_CANNOT_RUN
        assert result.stdout == ""
        assert key in result.stderr


def test_explain_cli_json_equals_the_api_and_the_table_names_rule_and_figures(
    scenario: Ledger,
) -> None:
    url = scenario.database_url
    for key in (REFUSED, BORROW, SWEEP):
        document = json_lines(invoke("explain", key, "--db", url, "--json").stdout)
        assert document == [explain(scenario, key).model_dump(mode="json")]
    event_id = explain(scenario, REFUSED).events[0].event_id
    result = invoke("explain", event_id, "--db", url, "--json")
    assert result.exit_code == EXIT_OK
    assert json_lines(result.stdout) == [explain(scenario, event_id).model_dump(mode="json")]
    assert json_lines(result.stdout)[0]["focus_event_id"] == event_id

    table = invoke("explain", REFUSED, "--db", url)
    assert table.exit_code == EXIT_OK, table.stderr
    text = " ".join(table.stdout.split())
    assert "transfer_in" in text and "rejected: collateral_cap" in text
    assert "max collateral rule" in re.sub(r"[│ ]+", " ", text)  # the rule, even when folded
    for figure, value in (
        ("band", "C"),
        ("total", "9200"),
        ("upper_limit", "10000"),
        ("q_max", "400"),
        ("price_usdt", "1.25"),
        ("fixed_quota", "400"),
    ):
        assert re.search(rf"│ {figure}\s+│ {re.escape(value)}\s+│", table.stdout), figure
    assert "MarginAccount.TransferInRejected" in table.stdout
    assert "AssetPool.TransferInRefused" in table.stdout


def test_explain_and_export_print_plain_numbers(scenario: Ledger, tmp_path: Path) -> None:
    explanation = explain(scenario, SWEEP)
    [liquidated] = [ev for ev in explanation.events if ev.event_type == "MarginAccount.Liquidated"]
    out = tmp_path / "liquidated.jsonl"
    exported = export_cli(scenario.database_url, out, "--type", "Liquidated")
    for fields in (liquidated.fields, exported[0]["payload"]):
        for mapping in ("sold", "repaid_principal", "repaid_interest"):
            for text in fields[mapping].values():
                assert PLAIN_NUMBER.match(text), (mapping, text)


# --- history -----------------------------------------------------------------------------------


def event_index_positions(ledger: Ledger, originator_id: UUID) -> dict[int, int]:
    with ReadModels(ledger) as read_models:
        read_models.catch_up(["event_index"])
        with read_models.store.transaction(commit=False) as db:
            rows = db.query(
                "SELECT originator_version, position FROM {event_index} WHERE originator_id = ?",
                (str(originator_id),),
            )
    return {int(version): int(position) for version, position in rows}


def balances_of(account: Any) -> dict[str, dict[str, Decimal]]:
    if account is None:
        return {"holding": {}, "liability": {}, "interest": {}}
    return {
        "holding": {a: q for a, q in account.holdings.items() if q},
        "liability": {a: q for a, q in account.liabilities.items() if q},
        "interest": {a: q for a, q in account.interest.items() if q},
    }


def balances_on(line: HistoryLine) -> dict[str, dict[str, Decimal]]:
    return {field: decimals(getattr(line, name)) for field, name in BALANCE_FIELDS.items()}


def difference(
    before: dict[str, dict[str, Decimal]], after: dict[str, dict[str, Decimal]]
) -> dict[str, dict[str, Decimal]]:
    moved: dict[str, dict[str, Decimal]] = {}
    for field in BALANCE_FIELDS:
        for asset in set(before[field]) | set(after[field]):
            delta = after[field].get(asset, Decimal(0)) - before[field].get(asset, Decimal(0))
            if delta:
                moved.setdefault(field, {})[asset] = delta
    return moved


def check_history(ledger: Ledger, account_id: str, lines: list[HistoryLine]) -> None:
    """Every line against the write side at its version; changes against the line before (or
    the state before the first line); positions against the log and the event index."""
    originator_id = account_uuid(account_id)
    log_positions = positions_by_event_id(the_log(ledger))
    index_positions = event_index_positions(ledger, originator_id)
    assert lines
    versions = [line.version for line in lines]
    assert versions == list(range(versions[0], versions[0] + len(lines)))  # no gaps
    first = versions[0]
    before = balances_of(
        None if first == 1 else ledger.repository.get(originator_id, version=first - 1)
    )
    for line in lines:
        account = ledger.repository.get(originator_id, version=line.version)
        assert account.version == line.version
        after = balances_on(line)
        assert after == balances_of(account), line
        assert (line.status, line.mode) == (
            account.status.value,
            None if account.mode is None else account.mode.value,
        )
        assert {f: decimals(m) for f, m in line.changes.items()} == difference(before, after)
        assert line.event_id == f"{originator_id}:{line.version}"
        assert line.position == log_positions[line.event_id] == index_positions[line.version]
        before = after
    positions = [line.position for line in lines]
    assert all(a < b for a, b in itertools.pairwise(positions))


def test_history_running_balances_equal_the_write_side_at_every_version(
    scenario: Ledger,
) -> None:
    lines = list(account_history(scenario, U1))

    check_history(scenario, U1, lines)
    every_version = scenario.recorder.select_events(account_uuid(U1))
    assert [line.version for line in lines] == [e.originator_version for e in every_version]
    assert {line.event_type for line in lines} >= U1_EVENT_TYPES
    by_type = Counter(line.event_type for line in lines)
    assert by_type["MarginAccount.InterestCharged"] == 3
    assert by_type["MarginAccount.TransferredIn"] == 2
    # Hand figures: after the trade ABC 2,200 and USDT 120 - 20 + 1,500 - 1,500 - 1 = 99; after
    # the liquidation only the remainder 1,589 - 1,450.60 - 31.78 = 106.62 USDT.
    [trade] = [line for line in lines if line.event_type == "MarginAccount.TradeSettled"]
    assert balances_on(trade)["holding"] == {"ABC": Decimal(2200), "USDT": Decimal(99)}
    assert balances_on(lines[-1]) == {
        "holding": {"USDT": Decimal("106.62")},
        "liability": {},
        "interest": {},
    }
    assert lines[-1].event_type == "MarginAccount.Liquidated"
    assert lines[-1].request_id == SWEEP


def test_history_between_two_business_times_starts_from_the_earlier_balances(
    scenario: Ledger,
) -> None:
    since, until = T0 + timedelta(minutes=4), datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    lines = list(account_history(scenario, U1, since=since, until=until))

    everything = list(account_history(scenario, U1))
    expected = [line for line in everything if since <= as_time(line.effective_at) <= until]
    assert lines == expected
    assert [line.event_type.split(".")[1] for line in lines] == [
        "Borrowed",  # 09:04, the bound itself
        "TradeSettled",
        "Repaid",
        "InterestCharged",  # 10:00
        "InterestCharged",  # 11:00, the other bound
    ]
    check_history(scenario, U1, lines)
    # The first line's balances include the transfers before --from: ABC 1,000, USDT 100 + 1,500.
    assert balances_on(lines[0])["holding"] == {"ABC": Decimal(1000), "USDT": Decimal(1600)}
    assert decimals(lines[0].changes["holding"]) == {"USDT": Decimal(1500)}

    url = scenario.database_url
    result = invoke(
        "history", U1, "--db", url, "--from", at(4), "--to", "2026-03-02T11:00:00Z", "--json"
    )
    assert result.exit_code == EXIT_OK, result.stderr
    assert json_lines(result.stdout) == [line.model_dump(mode="json") for line in lines]
    whole = invoke("history", U1, "--db", url, "--json")
    assert json_lines(whole.stdout) == [line.model_dump(mode="json") for line in everything]
    table = invoke("history", U1, "--db", url, "--from", at(4), "--to", at(120))
    assert table.exit_code == EXIT_OK and "Borrowed" in table.stdout
    late = invoke("history", U1, "--db", url, "--from", at(24 * 60), "--json")
    assert (late.exit_code, late.stdout) == (EXIT_OK, "")


def test_history_of_an_account_past_its_snapshots_works_from_the_middle(ledger: Ledger) -> None:
    """One loan charged for 130 hours: 134 account versions, a snapshot at 100."""
    for asset, rank in (("USDT", 1), ("BTC", 2)):
        accepted(ledger, "list_asset", 0, asset=asset, collateral_rank=rank)
    accepted(ledger, "mark_prices", 0, prices={"BTC": "20000"})
    accepted(ledger, "set_borrow_terms", 0, asset="USDT", hourly_interest_rate="0.0001")
    accepted(ledger, "transfer_in", 1, user="w", account="cross", asset="BTC", quantity="1")
    accepted(ledger, "borrow", 2, user="w", account="cross", asset="USDT", quantity="1000")
    accepted(ledger, "accrue_interest", 130 * 60, until=at(130 * 60))
    originator_id = account_uuid("w:cross")
    assert ledger.snapshots is not None
    assert 100 in [s.originator_version for s in ledger.snapshots.get(originator_id)]
    head = ledger.repository.get(originator_id).version
    assert head > 130

    everything = list(account_history(ledger, "w:cross"))
    assert [line.version for line in everything] == list(range(1, head + 1))
    for since_hour, until_hour in ((50, 120), (110, None)):  # across the snapshot, and after it
        since = T0 + timedelta(hours=since_hour)
        until = None if until_hour is None else T0 + timedelta(hours=until_hour)
        lines = list(account_history(ledger, "w:cross", since=since, until=until))
        assert lines == [
            line
            for line in everything
            if since <= as_time(line.effective_at)
            and (until is None or as_time(line.effective_at) <= until)
        ]
        assert lines[0].version > 50 and lines[-1].version > 100
        check_history(ledger, "w:cross", lines)
        assert lines[0].event_type == "MarginAccount.InterestCharged"
        # 1,000 x 0.0001 = 0.1 an hour; the borrow's hour (09:00) and every hour to `since`.
        assert decimals(lines[0].interest) == {"USDT": Decimal("0.1") * (since_hour + 1)}
    result = invoke(
        "history", "w:cross", "--db", ledger.database_url, "--from", at(110 * 60), "--json"
    )
    after_110 = T0 + timedelta(hours=110)
    assert json_lines(result.stdout) == [
        line.model_dump(mode="json")
        for line in everything
        if as_time(line.effective_at) >= after_110
    ]


def test_history_of_unknown_and_invalid_accounts(scenario: Ledger) -> None:
    url = scenario.database_url
    assert list(account_history(scenario, "nobody:cross")) == []
    for args in (("nobody:cross", "--json"), ("u1:isolated:BTCUSDT", "--json")):
        result = invoke("history", *args, "--db", url)
        assert (result.exit_code, result.stdout) == (EXIT_OK, "")
    for bad in ("u1", "u1:savings", "u 1:cross", "u1:isolated:"):
        result = invoke("history", bad, "--db", url, "--json")
        assert result.exit_code == EXIT_CANNOT_RUN, (bad, result.stdout)
        assert result.stdout == "" and result.stderr
    result = invoke("history", U1, "--db", url, "--from", "yesterday")
    assert result.exit_code == EXIT_CANNOT_RUN and "--from" in result.stderr


# --- export ------------------------------------------------------------------------------------


def export_cli(url: str, out: Path, *flags: str, form: str = "jsonl") -> list[dict[str, Any]]:
    """`ledger export` into `out`, read back and normalised: ints, datetimes, payload objects."""
    result = invoke("export", "--db", url, "--out", str(out), "--format", form, "--quiet", *flags)
    assert result.exit_code == EXIT_OK, (result.stdout, result.stderr)
    return read_export(out, form)


def read_export(out: Path, form: str) -> list[dict[str, Any]]:
    if form == "jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        for row in rows:
            assert isinstance(row["payload"], dict), row
            assert isinstance(row["position"], int), row
        return [normalised(row) for row in rows]
    if form == "csv":
        with out.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == COLUMNS
            rows = list(reader)
        return [normalised(row | {"payload": json.loads(row["payload"])}) for row in rows]
    table = pq.read_table(out)
    assert table.schema.names == COLUMNS
    rows = table.to_pylist()
    for row in rows:
        assert isinstance(row["effective_at"], datetime), row
        assert isinstance(row["recorded_at"], datetime), row
    return [normalised(row | {"payload": json.loads(row["payload"])}) for row in rows]


def normalised(row: dict[str, Any]) -> dict[str, Any]:
    assert set(row) == set(COLUMNS), row
    return row | {
        "position": int(row["position"]),
        "originator_version": int(row["originator_version"]),
        "effective_at": as_time(row["effective_at"]),
        "recorded_at": as_time(row["recorded_at"]),
    }


def expected_row(logged: Logged) -> dict[str, Any]:
    event = logged.event
    name = type_name(event)
    return {
        "position": logged.position,
        "event_id": f"{event.originator_id}:{event.originator_version}",
        "aggregate": name.split(".")[0],
        "originator_id": str(event.originator_id),
        "originator_version": event.originator_version,
        "event_type": name,
        "effective_at": event.effective_at.astimezone(UTC),
        "recorded_at": event.timestamp.astimezone(UTC),
        "actor": event.actor,
        "request_id": event.request_id,
        "payload": own_fields(event),
    }


def concerns(event: Any, asset: str) -> bool:
    """An event concerns an asset when it belongs to the asset's Asset or AssetPool aggregate,
    when one of its own asset fields (`asset`, `sell_asset`, `buy_asset`, `fee_asset`, a
    listing's `symbol`) names it, or when one of its per-asset maps (a liquidation's `sold`,
    `repaid_principal`, `repaid_interest`) has it as a key. A decision's figures (prices of
    every asset valued) and a Request's recorded command do not count."""
    if event.originator_id in (Asset.create_id(asset), AssetPool.create_id(asset)):
        return True
    for name, value in own_fields(event).items():
        if name in ("decision", "command", "outcome"):
            continue
        if (name == "symbol" or name.endswith("asset")) and value == asset:
            return True
        if isinstance(value, dict) and asset in value:
            return True
    return False


def positions(rows: list[dict[str, Any]]) -> list[int]:
    return [row["position"] for row in rows]


def test_export_formats_hold_the_same_rows_every_event_once_in_log_order(
    scenario: Ledger, tmp_path: Path
) -> None:
    url = scenario.database_url
    by_format = {form: export_cli(url, tmp_path / f"all.{form}", form=form) for form in FORMATS}

    log = the_log(scenario)
    expected = [expected_row(logged) for logged in log]
    assert len(expected) == (scenario.recorder.max_notification_id() or 0)
    for form, rows in by_format.items():
        assert rows == expected, form
    found = positions(by_format["jsonl"])
    assert all(a < b for a, b in itertools.pairwise(found))
    assert len({row["event_id"] for row in by_format["csv"]}) == len(log)
    # The raw text forms: RFC 3339 UTC times; CSV carries the payload as JSON text.
    raw = json.loads((tmp_path / "all.jsonl").read_text().splitlines()[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", raw["effective_at"])
    with (tmp_path / "all.csv").open(newline="") as handle:
        first = next(csv.DictReader(handle))
    assert isinstance(json.loads(first["payload"]), dict)


def test_export_parquet_schema_is_the_documented_one(scenario: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "log.parquet"
    export_cli(scenario.database_url, out, form="parquet")
    schema = pq.read_schema(out)
    assert [(field.name, field.type) for field in schema] == PARQUET_SCHEMA
    # An empty selection still writes a readable file with the schema.
    empty = tmp_path / "empty.parquet"
    assert export_cli(scenario.database_url, empty, "--type", "NoSuchEvent", form="parquet") == []
    assert [(field.name, field.type) for field in pq.read_schema(empty)] == PARQUET_SCHEMA


def test_export_filters_select_exactly_the_expected_events(
    scenario: Ledger, tmp_path: Path
) -> None:
    url = scenario.database_url
    log = the_log(scenario)
    since, until = T0 + timedelta(minutes=6), T0 + timedelta(minutes=30)
    effective = {logged.position: logged.event.effective_at for logged in log}
    assert since in effective.values() and until in effective.values()  # bounds hit events

    def expect(keep: Any) -> list[int]:
        return [logged.position for logged in log if keep(logged.event)]

    cases: list[tuple[tuple[str, ...], list[int]]] = [
        (("--from", at(6), "--to", at(30)), expect(lambda e: since <= e.effective_at <= until)),
        (("--from", at(30)), expect(lambda e: e.effective_at >= until)),
        (("--to", at(6)), expect(lambda e: e.effective_at <= since)),
        (("--account", U2), expect(lambda e: e.originator_id == account_uuid(U2))),
        (("--asset", "ABC"), expect(lambda e: concerns(e, "ABC"))),
        (("--asset", "BTC"), expect(lambda e: concerns(e, "BTC"))),
        (("--type", "Borrowed"), expect(lambda e: type(e) is MarginAccount.Borrowed)),
        (("--type", "MarginAccount.Borrowed"), expect(lambda e: type(e) is MarginAccount.Borrowed)),
        (("--type", "Opened"), expect(lambda e: type(e).__name__ == "Opened")),
        (("--type", "AssetPool.Opened"), expect(lambda e: type(e) is AssetPool.Opened)),
        (
            ("--account", U1, "--from", at(4), "--to", at(30), "--type", "Repaid"),
            expect(
                lambda e: e.originator_id == account_uuid(U1) and type(e) is MarginAccount.Repaid
            ),
        ),
        (("--asset", "NOPE"), []),
        (("--account", "nobody:cross"), []),
    ]
    for number, (flags, wanted) in enumerate(cases):
        rows = export_cli(url, tmp_path / f"case{number}.jsonl", *flags)
        assert positions(rows) == wanted, flags
        by_position = {logged.position: logged for logged in log}
        assert rows == [expected_row(by_position[p]) for p in wanted], flags

    # The expectations are not vacuous: each names the events the brief is about.
    by_id = {logged.position: logged.event for logged in log}
    borrowed = expect(lambda e: type(e) is MarginAccount.Borrowed)
    assert len(borrowed) == 2
    abc = {p: by_id[p] for p in expect(lambda e: concerns(e, "ABC"))}
    btc = {p: by_id[p] for p in expect(lambda e: concerns(e, "BTC"))}
    trades = [e for e in abc.values() if isinstance(e, MarginAccount.TradeSettled)]
    assert [(t.sell_asset, t.buy_asset) for t in trades] == [("USDT", "ABC"), ("ABC", "USDT")]
    assert [
        (t.sell_asset, t.buy_asset, t.fee_asset)
        for t in btc.values()
        if isinstance(t, MarginAccount.TradeSettled)
    ] == [("ABC", "USDT", "BTC")]  # BTC only as the fee
    abc_types = {type_name(e) for e in abc.values()}
    assert {
        "Asset.PriceMarked",
        "AssetPool.PriceNoted",
        "AssetPool.TransferInRefused",
        "AssetPool.TotalIncreased",
        "AssetPool.TotalDecreased",
        "MarginAccount.TransferInRejected",
        "MarginAccount.Liquidated",
    } <= abc_types
    assert "Asset.PriceMarked" in {type_name(e) for e in btc.values()}
    assert not any(isinstance(e, MarginAccount.Borrowed) for e in abc.values())  # USDT loans


def test_export_of_a_bulk_log_of_5000_events(ledger: Ledger, tmp_path: Path) -> None:
    summary = generate_bulk_history(ledger, events=5000, users=40, seed=7)
    log = the_log(ledger)
    assert len(log) == summary.events + summary.setup_events >= 5000
    url = ledger.database_url

    rows = export_cli(url, tmp_path / "bulk.jsonl")
    assert rows == [expected_row(logged) for logged in log]
    assert export_cli(url, tmp_path / "bulk.parquet", form="parquet") == rows
    assert pq.ParquetFile(tmp_path / "bulk.parquet").metadata.num_rows == len(log)

    wanted = [logged.position for logged in log if concerns(logged.event, "ABC")]
    assert positions(export_cli(url, tmp_path / "abc.csv", "--asset", "ABC", form="csv")) == (
        wanted
    )
    api = list(export_rows(ledger, ExportFilter(event_type="InterestCharged")))
    assert [row["position"] for row in api] == [
        logged.position for logged in log if isinstance(logged.event, MarginAccount.InterestCharged)
    ]
    assert api


def test_export_refuses_bad_flags_and_unwritable_paths(ledger: Ledger, tmp_path: Path) -> None:
    accepted(ledger, "list_asset", 0, asset="USDT", collateral_rank=1)
    url = ledger.database_url
    out = str(tmp_path / "out.jsonl")
    for flags in (
        ("--format", "xml"),
        ("--from", "yesterday"),
        ("--to", "2026-13-40T00:00:00Z"),
        ("--account", "u1"),
        ("--account", "u1:savings"),
    ):
        result = invoke("export", "--db", url, "--out", out, "--quiet", *flags)
        assert result.exit_code == EXIT_CANNOT_RUN, (flags, result.stdout)
        assert result.stderr, flags
    assert not Path(out).exists()

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    for target in (blocker / "out.jsonl", directory):
        for form in FORMATS:
            result = invoke("export", "--db", url, "--out", str(target), "--format", form)
            assert result.exit_code == EXIT_CANNOT_RUN, (target, form, result.stdout)
            assert "cannot write" in result.stderr, (target, form, result.stderr)
    assert blocker.read_text() == "not a directory\n"
