"""`ledger whatif` (ledger/incident/whatif.py) on both backends: a window decided again under
changed parameters, against a hand-computed incident.

The incident (minutes after T0 = 09:00; USDT and ABC with 2 decimals; ABC rank 8, U = 6,000,
F = 500 USDT, price 1; the fund holds 100 USDT). Before the window (T1 = minute 10):
u1 brings 1,000 ABC, borrows 1,500 USDT and buys 1,500 ABC (2,500 ABC, owes 1,500.15 with the
hour charged at the borrow); u2 brings 1,000, borrows 1,000 and buys 1,000 (2,000 ABC, owes
1,000.10), auto top-up from ABC on. T = 4,500 (75%).
In the window (T2 = minute 60):
- 11 t-a: u4 brings 200 (band A, q_max 0.8·6,000 − 4,500 = 300): accepted, T 4,700;
- 12 t-b: u5 asks 500 (q_max 4,800 − 4,700 = 100): refused by the cap;
- 13 t-c: u5 brings 100 (q_max 100): accepted, T 4,800 (80%);
- 20 ABC marked at 0.65; 21 sweep-1 (u2's spot wallet: 200 ABC): u1's CML is
  2,500·0.65 / 1,500.15 = 1.0832 <= 1.1: liquidated (fee 32.5 to the fund), T 2,300; u2's is
  1,300 / 1,000.10 = 1.2999: margin call, topped up 200 (all the spot wallet: limited), T 2,500;
- 30 cap-up: U set to 7,000 (F 500);
- 31 t-d: u6 brings 1,500 (q_max 0.8·7,000 − 2,500 = 3,100): accepted, T 4,000.
After the window: 90 t-late: u7 brings 10 ABC (never decided by the replay).

With ABC.upper_limit=4,600 from T1 (hand-computed): t-a is refused (T 4,500 is 97.8% of U,
band C, q_max min(500, 4,600 − 4,500) = 100); t-b is refused as recorded (q_max 100); t-c is
accepted (T 4,600); the sweep liquidates u1 (T 2,100) and tops u2 up 200 (band A, q_max
0.8·4,600 − 2,100 = 1,580; T 2,300); cap-up is rewritten to keep U = 4,600 (the override
holds); t-d is refused (q_max 0.8·4,600 − 2,300 = 1,380). T at T2: 4,000 recorded, 2,300.
"""

import importlib
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger
from ledger.incident.overrides import OverrideInvalid, parse_overrides
from ledger.incident.whatif import what_if
from ledger.incident.whatif_report import WhatIfReport
from ledger.persistence import raw_position_column, raw_rows, raw_table
from ledger.times import parse_time
from tests.cli.cli_support import EXIT_CANNOT_RUN, EXIT_OK, invoke
from tests.conftest import POSTGRES_URL, postgres_required
from tests.incident.scenarios import crash_store
from tests.support import at, command, run

SINCE, UNTIL = at(10), at(60)

importlib.import_module("ledger.cli.whatif")  # `whatif` and `bundle` register on the app


def build_incident(ledger: Ledger) -> dict[str, Any]:
    """The incident of the module docstring; returns the recorded outcomes by request id."""
    outcomes = {}

    def do(type_: str, minute: float, request_id: str | None = None, **fields: Any) -> Any:
        data = command(type_, request_id, effective_at=at(minute), **fields)
        outcome = run(ledger, data)
        outcomes[data["request_id"]] = outcome
        return outcome

    for asset, rank in (("USDT", 1), ("ABC", 8)):
        do("list_asset", 0, asset=asset, collateral_rank=rank, quantity_decimals=2)
    do("set_collateral_cap", 0, asset="ABC", upper_limit="6000", fixed_quota_usdt="500")
    do("mark_prices", 0, prices={"ABC": "1"})
    do("set_borrow_terms", 0, asset="USDT", hourly_interest_rate="0.0001")
    do("fund_insurance", 1, amount_usdt="100", actor="admin:treasury")
    for user, minute, borrowed in (("u1", 2, "1500"), ("u2", 5, "1000")):
        where = {"user": user, "account": "cross"}
        do("transfer_in", minute, **where, asset="ABC", quantity="1000")
        do("borrow", minute + 1, **where, asset="USDT", quantity=borrowed)
        trade = {"sell_asset": "USDT", "sell_quantity": borrowed, "buy_asset": "ABC"}
        trade |= {"buy_quantity": borrowed, "fee_asset": "USDT", "fee_quantity": "0"}
        do("settle_trade", minute + 2, **where, **trade)
    do("set_auto_top_up", 8, user="u2", account="cross", enabled=True, asset="ABC")
    for request_id, user, quantity, minute in (
        ("t-a", "u4", "200", 11),
        ("t-b", "u5", "500", 12),
        ("t-c", "u5", "100", 13),
    ):
        abc = {"user": user, "account": "cross", "asset": "ABC", "quantity": quantity}
        do("transfer_in", minute, request_id, **abc)
    do("mark_prices", 20, prices={"ABC": "0.65"})
    do("check_margins", 21, "sweep-1", spot_available={"u2:cross": {"ABC": "200"}})
    do("set_collateral_cap", 30, "cap-up", asset="ABC", upper_limit="7000", fixed_quota_usdt="500")
    do("transfer_in", 31, "t-d", user="u6", account="cross", asset="ABC", quantity="1500")
    do("transfer_in", 90, "t-late", user="u7", account="cross", asset="ABC", quantity="10")
    return outcomes


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def incident_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One store with the incident per backend, shared by the module's tests (whatif and
    bundle only read it; the tests that could write check the log is unchanged)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('incident')}/ledger.sqlite3"
        schema = None
    else:
        if not postgres_required():
            pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
        schema = f"test_{uuid.uuid4().hex[:16]}"
        url = f"{POSTGRES_URL}?schema={schema}"
    try:
        with Ledger(url) as ledger:
            outcomes = build_incident(ledger)
        assert outcomes["t-b"].reason == "collateral_cap", outcomes["t-b"]
        sweep = outcomes["sweep-1"].context
        assert (sweep["margin_calls"], sweep["liquidations"]) == (1, 1), sweep
        assert outcomes["t-d"].is_accepted and outcomes["t-d"].context["q_max"] == "3100"
        yield url
    finally:
        if schema is not None:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def stored_log(ledger: Ledger) -> list[tuple[Any, ...]]:
    """The events table and the chain as stored, byte for byte, in log order."""
    recorder: Any = ledger.recorder
    column = raw_position_column(recorder)
    events = raw_rows(
        recorder,
        f"SELECT {column}, originator_id, originator_version, topic, state "
        f"FROM {raw_table(recorder)} ORDER BY {column}",
    )
    chain = raw_rows(
        recorder, f"SELECT position, hash FROM {raw_table(recorder, 'event_chain')} ORDER BY 1"
    )
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in events + chain]


def replay(url: str, *settings: str) -> WhatIfReport:
    with Ledger(url) as ledger:
        return what_if(
            ledger,
            since=parse_time(SINCE),
            until=parse_time(UNTIL),
            overrides=parse_overrides(list(settings)),
        )


def test_unchanged_parameters_reproduce_every_decision(incident_url: str) -> None:
    """The window has a cap refusal, a margin call with a limited top-up and a liquidation:
    decided again with no override, every decision is the recorded one."""
    report = replay(incident_url)
    assert report.differences == []
    assert report.prefix_mismatches == 0
    assert report.requests_replayed == 7  # t-a, t-b, t-c, the mark, sweep-1, cap-up, t-d
    assert report.overridden_requests == []
    assert set(report.summary.values()) == {0}
    abc = report.totals.assets["ABC"].platform_total
    assert (abc.recorded, abc.counterfactual, abc.difference) == ("4000", "4000", "0")
    fees = report.totals.insurance_fund["fees_usdt"]
    assert (fees.recorded, fees.counterfactual) == ("32.5", "32.5")


def test_lower_upper_limit_refuses_the_hand_computed_transfers(incident_url: str) -> None:
    with Ledger(incident_url) as ledger:
        before = stored_log(ledger)
    report = replay(incident_url, "ABC.upper_limit=4600")
    with Ledger(incident_url) as ledger:
        assert stored_log(ledger) == before  # the real log, byte for byte
    found = {d.request_id: d for d in report.differences}
    assert list(found) == ["t-a", "t-d"]
    t_a = found["t-a"]
    assert (t_a.recorded.status, t_a.recorded.q_max) == ("accepted", "300")
    assert (t_a.counterfactual.status, t_a.counterfactual.reason) == ("rejected", "collateral_cap")
    assert (t_a.counterfactual.band, t_a.counterfactual.q_max) == ("C", "100")
    t_d = found["t-d"]
    assert (t_d.recorded.status, t_d.recorded.q_max) == ("accepted", "3100")
    assert (t_d.counterfactual.status, t_d.counterfactual.q_max) == ("rejected", "1380")
    assert report.overridden_requests == ["cap-up"]  # U stays 4,600 over the recorded change
    assert report.summary["accepted_to_rejected"] == 2
    totals = report.totals.assets["ABC"]
    assert (totals.platform_total.recorded, totals.platform_total.counterfactual) == (
        "4000",
        "2300",
    )
    assert (totals.upper_limit.recorded, totals.upper_limit.counterfactual) == ("7000", "4600")


def test_lower_liquidation_level_avoids_the_liquidation(incident_url: str) -> None:
    """u1's CML 1.0832 is above 1.05: a margin call instead of the liquidation, no fee for the
    fund; T stays 4,800 + 200 (u2's top-up, band B's quota 769.23 allows it), so t-d (q_max
    0.8·7,000 − 5,000 = 600) is refused."""
    report = replay(incident_url, "classic_3x.liquidation_level=1.05")
    found = {d.request_id: d for d in report.differences}
    assert list(found) == ["sweep-1", "t-d"]
    (u1,) = found["sweep-1"].accounts
    assert u1.account == "u1:cross"
    assert [a["event"] for a in u1.recorded] == ["Liquidated", "Funded"]
    assert u1.counterfactual == [{"event": "MarginCalled"}]
    assert found["t-d"].counterfactual.q_max == "600"
    assert report.summary["liquidations_avoided"] == 1
    fees = report.totals.insurance_fund["fees_usdt"]
    assert (fees.recorded, fees.counterfactual, fees.difference) == ("32.5", "0", "-32.5")


def test_ladder_override_liquidates_the_margin_call(incident_url: str) -> None:
    """ABC at half its value as collateral: u2's CML 650 / 1,000.10 is below 1.1, so the
    sweep liquidates u2 too (no top-up); the log has no ladder change, so the override is read
    into the listing from T1 on."""
    ladder = json.dumps([{"up_to_usdt": None, "ratio": "0.5"}])
    report = replay(incident_url, f"ABC.collateral_ladder={ladder}")
    sweep = next(d for d in report.differences if d.request_id == "sweep-1")
    u2 = next(p for p in sweep.accounts if p.account == "u2:cross")
    assert [a["event"] for a in u2.recorded] == ["MarginCalled", "ToppedUp"]
    assert [a["event"] for a in u2.counterfactual] == ["Liquidated", "Funded"]
    assert report.summary["liquidations_added"] == 1


def test_whatif_cli_json_lists_differences(incident_url: str, tmp_path: Path) -> None:
    chart = tmp_path / "whatif.png"
    result = invoke(
        "whatif", "--db", incident_url, "--from", SINCE, "--to", UNTIL,
        "--set", "ABC.upper_limit=4600", "--json", "--chart", str(chart),
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    assert [d["request_id"] for d in report["differences"]] == ["t-a", "t-d"]
    first = report["differences"][0]
    assert first["recorded"]["status"] == "accepted"
    assert first["counterfactual"]["q_max"] == "100"
    assert report["totals"]["assets"]["ABC"]["platform_total"]["difference"] == "-1700"
    assert chart.read_bytes().startswith(b"\x89PNG")
    table = invoke("whatif", "--db", incident_url, "--from", SINCE, "--to", UNTIL)
    assert table.exit_code == EXIT_OK and "What if" in table.stdout


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("USDT.upper_limit=1000", "USDT.upper_limit"),  # not a capped asset
        ("classic_3x.liquidation_level=1.4", "classic_3x.liquidation_level"),  # above 1.3
    ],
    ids=["uncapped-asset", "liquidation-above-margin-call"],
)
def test_whatif_cli_override_that_cannot_hold_exits_2(
    incident_url: str, setting: str, named: str
) -> None:
    with Ledger(incident_url) as ledger:
        before = stored_log(ledger)
    result = invoke(
        "whatif", "--db", incident_url, "--from", SINCE, "--to", UNTIL, "--set", setting
    )
    assert result.exit_code == EXIT_CANNOT_RUN, result.output
    assert f"--set {named}" in result.stderr
    with Ledger(incident_url) as ledger:
        assert stored_log(ledger) == before


def test_crash_replays_unchanged_and_refuses_under_a_lower_limit(ledger: Ledger) -> None:
    """The timeline's crash (tests/incident/scenarios.py: two liquidations with deficits the
    fund covers, a limited top-up, cap refusals in bands B and D, a quota change) is reproduced
    with no override. With U = 9,000 from 10:00, u1's 1,000 at T 1,000 is still accepted but
    with q_max 0.8·9,000 − 1,000 = 6,200 (recorded 7,000), and u3's 2,400 at T 5,600 (62%:
    band A, q_max 0.8·9,000 − 5,600 = 1,600) is refused."""
    crash = crash_store(ledger)
    same = what_if(ledger, since=crash.since, until=crash.until, overrides=parse_overrides([]))
    assert same.differences == [] and same.prefix_mismatches == 0
    covered = same.totals.insurance_fund["covered_usdt"]
    assert covered.recorded == covered.counterfactual == "0.25"  # 0.15 + 0.10
    lower = what_if(
        ledger,
        since=crash.since,
        until=crash.until,
        overrides=parse_overrides(["ABC.upper_limit=9000"]),
    )
    found = {d.request_id: d for d in lower.differences}
    u1 = found["u1.in"]
    assert (u1.recorded.q_max, u1.counterfactual.q_max) == ("7000", "6200")
    assert u1.recorded.status == u1.counterfactual.status == "accepted"
    u3 = found["u3.in"]
    assert u3.recorded.status == "accepted"
    assert (u3.counterfactual.status, u3.counterfactual.q_max) == ("rejected", "1600")
    assert lower.summary["q_max_changed"] >= 1 and lower.summary["accepted_to_rejected"] >= 1
    assert lower.overridden_requests == ["cap.quota"]  # its U of 10,000 gives way to 9,000


# --- parsing --set, and the CLI's bad flags (no database) ---------------------------------------


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("ABC.nope=1", "unknown parameter"),
        ("ABC.upper_limit=-5", "must be greater than 0"),
        ("ABC.upper_limit=lots", "decimal"),
        ("ABC.band_b_ratio_min=80", "fraction"),
        ("ABC.collateral_ladder=[{", "not JSON"),
        ('ABC.collateral_ladder=[{"up_to_usdt": "5", "ratio": "1"}]', "null"),
        ("margin_call_interval_hours=1.5", "whole number"),
        ("upper_limit", "PARAM=VALUE"),
    ],
    ids=[
        "unknown",
        "negative",
        "not-a-number",
        "percent",
        "bad-json",
        "open-ladder",
        "hours",
        "no-value",
    ],
)
def test_bad_override_is_named(setting: str, problem: str) -> None:
    with pytest.raises(OverrideInvalid) as raised:
        parse_overrides([setting])
    assert problem in str(raised.value)
    assert str(raised.value).startswith(f"--set {setting.partition('=')[0]}")


def test_overrides_are_typed() -> None:
    overrides = parse_overrides(
        ["ABC.upper_limit=500000", "ABC.fixed_quota_usdt=20000", "pro.margin_call_level=1.3",
         "margin_call_interval_hours=12"]
    )  # fmt: skip
    assert overrides.cap == {"ABC": {"upper_limit": Decimal(500000), "fixed_quota_usdt": 20000}}
    assert overrides.thresholds == {"pro": {"margin_call_level": Decimal("1.3")}}
    assert overrides.platform_rules == {"margin_call_interval_hours": 12}


@pytest.mark.parametrize(
    "args",
    [
        ["whatif", "--to", UNTIL],
        ["whatif", "--from", "yesterday", "--to", UNTIL],
        ["whatif", "--from", UNTIL, "--to", SINCE],
        ["whatif", "--from", SINCE, "--to", UNTIL, "--set", "ABC.nope=1"],
    ],
    ids=["no-from", "bad-time", "backwards", "unknown-param"],
)
def test_whatif_cli_bad_flags_exit_2(args: list[str], tmp_path: Path) -> None:
    result = invoke(*args, "--db", f"sqlite:///{tmp_path}/none.sqlite3")
    assert result.exit_code == EXIT_CANNOT_RUN, result.output
    assert result.stderr.startswith("error:")


def test_whatif_help_has_an_example() -> None:
    result = invoke("whatif", "--help")
    assert result.exit_code == EXIT_OK
    assert "Example: ledger whatif" in result.stdout
    assert "ASSET.upper_limit" in result.stdout
