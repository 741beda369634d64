"""`ledger timeline` on the crash of tests/incident/scenarios.py, on both backends: every band
transition and every liquidation of the window in log order, nothing from outside it, each kind
of line with the figures its event recorded; the account's own story; the CLI."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.utils import get_topic

from ledger import Ledger, limits
from ledger.domain.account import MarginAccount
from ledger.domain.insurance_fund import InsuranceFund
from ledger.incident.timeline import (
    TimelineBuilder,
    TimelineEntry,
    TimelineKind,
    TimelineWindow,
    log_records,
    timeline,
)
from ledger.times import format_time
from projections.events import Record
from projections.queries import ReadSide
from projections.runner import ReadModels
from tests.cli.cli_support import EXIT_CANNOT_RUN, EXIT_OK, invoke, json_lines
from tests.incident.scenarios import CrashScenario, crash_store


@pytest.fixture
def crash(ledger: Ledger) -> CrashScenario:
    return crash_store(ledger)


def asset_story(ledger: Ledger, crash: CrashScenario) -> list[TimelineEntry]:
    return list(timeline(ledger, asset=crash.asset, since=crash.since, until=crash.until))


def of_kind(entries: list[TimelineEntry], kind: TimelineKind) -> list[TimelineEntry]:
    return [e for e in entries if e.kind is kind]


def test_timeline_holds_every_band_transition_of_the_window_in_log_order(
    ledger: Ledger, crash: CrashScenario
) -> None:
    """Goal: the band transitions are the band timeline read model's for the window (a second,
    independent derivation from the same log), in log order, and the path the scenario built."""
    entries = asset_story(ledger, crash)

    positions = [e.position for e in entries]
    assert positions == sorted(positions)
    bands = of_kind(entries, TimelineKind.BAND_TRANSITION)
    assert [(b.figures["band_before"], b.figures["band_after"]) for b in bands] == crash.band_path
    with ReadModels(ledger) as read_models:
        expected = ReadSide(read_models).bands(
            asset=crash.asset, since=crash.since, until=crash.until
        )
    assert [
        (
            b.position,
            b.event_id,
            b.figures["band_before"],
            b.figures["band_after"],
            b.figures["ratio_before"],
            b.figures["ratio_after"],
            b.figures["total_before"],
            b.figures["total_after"],
        )
        for b in bands
    ] == [
        (
            c.position,
            c.event_id,
            c.band_before,
            c.band_after,
            c.ratio_before,
            c.ratio_after,
            c.platform_total_before,
            c.platform_total_after,
        )
        for c in expected
    ]
    assert [(b.figures["cause"], b.account) for b in bands] == [
        ("transfer_in", "u3:cross"),
        ("transfer_in", "u4:cross"),
        ("transfer_in", "u5:cross"),
        ("liquidation", "u1:cross"),
        ("auto_top_up", "u2:cross"),
        ("liquidation", "u2:cross"),
    ]


def test_timeline_holds_every_liquidation_of_the_window_with_its_deficit_and_fund_payment(
    ledger: Ledger, crash: CrashScenario
) -> None:
    entries = asset_story(ledger, crash)

    liquidations = of_kind(entries, TimelineKind.LIQUIDATION)
    in_log = [
        (position, event)
        for position, event in _events(ledger, MarginAccount.Liquidated)
        if crash.since <= event.effective_at <= crash.until
    ]
    assert [(e.position, e.event_id) for e in liquidations] == [
        (position, event.event_id) for position, event in in_log
    ]
    assert [e.account for e in liquidations] == crash.liquidated
    assert [e.figures["deficit_usdt"] for e in liquidations] == ["0.15", "0.1"]
    assert [e.figures["sold"] for e in liquidations] == ["2500 ABC", "2500 ABC"]
    fund = of_kind(entries, TimelineKind.INSURANCE_FUND)
    assert [
        (f.account, f.figures["covered_usdt"], f.figures["balance_after_usdt"]) for f in fund
    ] == [("u1:cross", "0.15", "499.85"), ("u2:cross", "0.1", "499.75")]
    # Each fund line follows the liquidation it paid for.
    assert [f.position for f in fund] == [e.position + 1 for e in liquidations]


def test_timeline_has_nothing_from_outside_the_window(ledger: Ledger, crash: CrashScenario) -> None:
    """Goal: the window is exactly the lines of a wider timeline dated inside it. Method: the
    story of the whole day (which holds the events before and after), filtered by time, equals
    the window's story; and no request of before or after the window shows."""
    entries = asset_story(ledger, crash)
    whole_day = list(
        timeline(
            ledger,
            asset=crash.asset,
            since=crash.since - timedelta(hours=2),
            until=crash.until + timedelta(hours=6),
        )
    )

    assert all(crash.since <= e.effective_at <= crash.until for e in entries)
    outside = set(crash.request_ids_before) | set(crash.request_ids_after)
    assert not [e for e in entries if e.request_id in outside]
    assert {e.request_id for e in whole_day} >= outside - {"after.sweep"}  # nobody left to sweep
    assert [e for e in whole_day if crash.since <= e.effective_at <= crash.until] == entries


def test_timeline_lines_carry_the_figures_of_their_decisions(
    ledger: Ledger, crash: CrashScenario
) -> None:
    entries = asset_story(ledger, crash)

    assert {e.kind for e in entries} == {
        TimelineKind.PRICE_MARK,
        TimelineKind.BAND_TRANSITION,
        TimelineKind.TRANSFER_IN,
        TimelineKind.TRANSFER_IN_REFUSED,
        TimelineKind.BORROW,
        TimelineKind.REPAY,
        TimelineKind.TRADE,
        TimelineKind.MARGIN_CALL,
        TimelineKind.TOP_UP,
        TimelineKind.LIQUIDATION,
        TimelineKind.INSURANCE_FUND,
        TimelineKind.PARAMETER_CHANGE,
    }
    refused = of_kind(entries, TimelineKind.TRANSFER_IN_REFUSED)
    assert [(e.request_id, e.account, e.figures["band"], e.figures["q_max"]) for e in refused] == [
        ("u4.refused", "u4:cross", "B", "1000"),
        ("u6.refused", "u6:cross", "D", "0"),
    ]
    assert "q_max 1000" in refused[0].text
    [call] = of_kind(entries, TimelineKind.MARGIN_CALL)
    assert call.account == crash.margin_called[0]
    assert Decimal(str(call.figures["level"])).quantize(Decimal("0.0001")) == Decimal("1.1999")
    [top_up] = of_kind(entries, TimelineKind.TOP_UP)
    assert top_up.account == crash.limited_top_up
    assert (top_up.figures["quantity"], top_up.figures["needed"]) == ("500", "500.26")
    assert (top_up.figures["is_limited"], top_up.figures["q_max"]) == (True, "500")
    marks = of_kind(entries, TimelineKind.PRICE_MARK)
    assert [(m.asset, m.figures["price_usdt"]) for m in marks] == [("ABC", "0.6"), ("ABC", "0.4")]
    [change] = of_kind(entries, TimelineKind.PARAMETER_CHANGE)
    assert (change.request_id, change.figures["fixed_quota_usdt"]) == ("cap.quota", "600")
    [repay] = of_kind(entries, TimelineKind.REPAY)
    assert (repay.figures["interest_paid"], repay.figures["principal_paid"]) == ("0.02", "99.98")
    assert len({e.event_id for e in entries}) == len(entries)  # one line per event


def test_account_timeline_is_the_accounts_own_story(ledger: Ledger, crash: CrashScenario) -> None:
    entries = list(timeline(ledger, account="u1:cross", since=crash.since, until=crash.until))

    assert [(e.kind, e.account) for e in entries] == [
        (TimelineKind.ACCOUNT_OPENED, "u1:cross"),
        (TimelineKind.TRANSFER_IN, "u1:cross"),
        (TimelineKind.BORROW, "u1:cross"),
        (TimelineKind.TRADE, "u1:cross"),
        (TimelineKind.LIQUIDATION, "u1:cross"),
        (TimelineKind.INSURANCE_FUND, "u1:cross"),
        (TimelineKind.BAND_TRANSITION, "u1:cross"),
    ]
    assert entries[2].figures["quantity"] == "1500"


def test_timeline_streams_the_log_a_batch_at_a_time(
    ledger: Ledger, crash: CrashScenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Goal: bounded memory. Method: with batches of 7 events, the first line comes out before
    the log's second batch is read, and the story is the same as with the default batches
    (the lines that wait for a later event of their transaction cross batch edges right)."""
    expected = asset_story(ledger, crash)
    monkeypatch.setattr(limits, "PROJECTION_BATCH_SIZE", 7)
    read: list[int] = []

    lines = timeline(
        ledger,
        asset=crash.asset,
        since=crash.since,
        until=crash.until,
        progress=lambda position, head: read.append(position),
    )
    first = next(lines)

    assert len(read) < (ledger.recorder.max_notification_id() or 0) // 7
    assert [first, *lines] == expected


def test_a_fund_movement_logged_before_its_liquidation_waits_for_it(
    ledger: Ledger, crash: CrashScenario
) -> None:
    """Goal: under an asset filter, a fund movement shows when the same transaction liquidated
    an account holding the asset, whichever of the two the log holds first. Method: the log's
    records fed to the builder with each deficit payment moved before its liquidation (and
    one payment re-dated to another request, which no liquidation of ABC explains)."""
    records = list(log_records(ledger))
    fund_at = [i for i, r in enumerate(records) if r.kind is InsuranceFund.DeficitCovered]
    for i in fund_at:  # each payment directly follows its liquidation in this log
        assert records[i - 1].kind is MarginAccount.Liquidated
        liquidation, payment = records[i - 1], records[i]
        records[i - 1] = Record(liquidation.position, payment.topic, payment.data)
        records[i] = Record(payment.position, liquidation.topic, liquidation.data)
    stray = records[fund_at[1] - 1]
    records[fund_at[1] - 1] = Record(
        stray.position, stray.topic, stray.data | {"request_id": "elsewhere"}
    )
    window = TimelineWindow(since=crash.since, until=crash.until)
    story = TimelineBuilder(ledger, window, asset=crash.asset)

    entries = [entry for record in records for entry in story.feed(record)] + story.finish()

    kinds = [
        (e.kind, e.account)
        for e in entries
        if e.kind in (TimelineKind.INSURANCE_FUND, TimelineKind.LIQUIDATION)
    ]
    assert kinds == [
        (TimelineKind.INSURANCE_FUND, "u1:cross"),
        (TimelineKind.LIQUIDATION, "u1:cross"),
        (TimelineKind.LIQUIDATION, "u2:cross"),
    ]
    positions = [e.position for e in entries]
    assert positions == sorted(positions)


def test_timeline_command_prints_a_table_and_json_lines(
    database_url: str, ledger: Ledger, crash: CrashScenario
) -> None:
    window = ["--from", format_time(crash.since), "--to", format_time(crash.until)]

    as_json = invoke("timeline", "--asset", "ABC", *window, "--db", database_url, "--json")
    as_table = invoke("timeline", "--account", "u2:cross", *window, "--db", database_url)

    assert as_json.exit_code == EXIT_OK, as_json.stderr
    lines = json_lines(as_json.stdout)
    assert [line["position"] for line in lines] == [e.position for e in asset_story(ledger, crash)]
    refused = [line for line in lines if line["kind"] == "transfer_in_refused"]
    assert [line["figures"]["q_max"] for line in refused] == ["1000", "0"]
    assert all(line["effective_at"].endswith("Z") for line in lines)
    assert as_table.exit_code == EXIT_OK, as_table.stderr
    assert "Timeline of u2:cross" in as_table.stdout
    assert "auto top-up of 500 ABC, limited" in as_table.stdout


WINDOW = ["--from", "{since}", "--to", "{until}"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--asset", "ABC", "--account", "u1:cross", *WINDOW], "--asset or --account"),
        (WINDOW, "--asset or --account"),
        (["--asset", "XYZ", *WINDOW], "--asset"),
        (["--account", "u1", *WINDOW], "--account"),
        (["--account", "nobody:cross", *WINDOW], "--account"),
        (["--asset", "ABC", "--from", "2026-03-02T20:00:00Z", "--to", "{until}"], "--from"),
        (["--asset", "ABC", "--from", "{since}", "--to", "tomorrow"], "--to"),
        (["--asset", "ABC", "--from", "{since}"], "--to"),
    ],
    ids=[
        "both",
        "neither",
        "unknown-asset",
        "bad-account",
        "unknown-account",
        "from-after-to",
        "bad-time",
        "no-to",
    ],
)
def test_timeline_command_refuses_bad_input_naming_the_option(
    database_url: str, crash: CrashScenario, args: list[str], named: str
) -> None:
    times = {"since": format_time(crash.since), "until": format_time(crash.until)}

    result = invoke("timeline", *(arg.format(**times) for arg in args), "--db", database_url)

    assert result.exit_code == EXIT_CANNOT_RUN
    assert named in result.stderr
    assert result.stdout == ""


def _events(ledger: Ledger, *classes: type) -> list[tuple[int, Any]]:
    notifications = ledger.recorder.select_notifications(
        start=0,
        limit=10_000,
        topics=[get_topic(cls) for cls in classes],
        inclusive_of_start=False,
    )
    return [(n.id, ledger.mapper.to_domain_event(n)) for n in notifications]
