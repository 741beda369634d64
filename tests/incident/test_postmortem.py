"""`ledger postmortem` on the crash of tests/incident/scenarios.py, on both backends: the report
is written, its JSON figures equal the read models at the window's ends, its counts are the
crash's, and its page opens in headless Chromium with every image loaded and no error."""

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger
from ledger.incident.postmortem.report import PostmortemReport, write_postmortem
from ledger.times import format_time
from projections.queries import PointInTime, ReadSide
from projections.runner import ReadModels
from tests.browser import chromium, screenshot_path
from tests.cli.cli_support import EXIT_CANNOT_RUN, EXIT_OK, invoke
from tests.incident.scenarios import CrashScenario, crash_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHARTS = {
    "platform_total.png",
    "price.png",
    "refused_transfer_ins.png",
    "margin_calls_liquidations.png",
    "insurance_fund.png",
}


@pytest.fixture
def crash(ledger: Ledger) -> CrashScenario:
    return crash_store(ledger)


@pytest.fixture
def report(ledger: Ledger, crash: CrashScenario, tmp_path: Path) -> PostmortemReport:
    return write_postmortem(
        ledger, asset=crash.asset, since=crash.since, until=crash.until, out=tmp_path / "report"
    )


def test_postmortem_figures_equal_the_read_models_at_the_windows_ends(
    ledger: Ledger, crash: CrashScenario, report: PostmortemReport
) -> None:
    """Goal: the figures a person reads are the ledger's. Method: figures.json (computed from
    one pass over the log) against `ReadSide.assets` as of each end (the asset totals model's
    history), and the insurance fund against the balances the scenario computed by hand."""
    figures = json.loads(Path(report.figures_json).read_text(encoding="utf-8"))

    with ReadModels(ledger) as read_models:
        reader = ReadSide(read_models)
        for end, at in (("start", crash.since), ("end", crash.until)):
            [view] = [v for v in reader.assets(PointInTime(at=at)) if v.asset == crash.asset]
            state = figures[end]
            assert state["at"] == format_time(at)
            assert (
                state["total"],
                state["upper_limit"],
                state["fixed_quota_usdt"],
                state["ratio"],
                state["band"],
                state["price_usdt"],
            ) == (
                view.total,
                view.upper_limit,
                view.fixed_quota_usdt,
                view.ratio,
                view.band,
                view.price_usdt,
            ), end
    assert (figures["start"]["total"], figures["end"]["total"]) == ("1000", "5400")
    assert (figures["start"]["band"], figures["end"]["band"]) == ("A", "A")
    assert figures["start"]["insurance_fund_usdt"] == "500"
    assert figures["end"]["insurance_fund_usdt"] == "499.75"
    assert figures["intervals"][-1]["platform_total"] == figures["end"]["total"]


def test_postmortem_counts_the_crash_per_interval(
    crash: CrashScenario, report: PostmortemReport
) -> None:
    figures = report.figures
    intervals = figures.intervals

    assert figures.interval_seconds == 9 * 3600 // 48  # the default: the window's 1/48th
    assert len(intervals) == 48
    assert intervals[0].start == crash.since
    assert intervals[-1].end == crash.until
    assert sum(i.refused_transfer_ins for i in intervals) == len(crash.refused_in_window)
    assert sum(i.margin_calls for i in intervals) == len(crash.margin_called)
    assert sum(i.top_ups_limited for i in intervals) == 1
    assert sum(i.liquidations for i in intervals) == len(crash.liquidated)
    assert sum(i.deficit_usdt != "0" for i in intervals) == 2
    # 10:11 (refused 1,200) and 10:14 (refused 10) fall in the first two intervals (11m15s).
    assert [i.refused_quantity for i in intervals[:3]] == ["1200", "10", "0"]
    assert max(Decimal(i.platform_total_max) for i in intervals[:3]) == 10000  # T reached U
    assert intervals[2].price_usdt == "0.6"  # marked at 10:30, in [10:22:30, 10:33:45)
    assert intervals[3].price_usdt_min == "0.4"
    assert figures.counts["band_transition"] == len(crash.band_path)
    assert [b.figures["band_after"] for b in figures.band_transitions] == [
        after for _before, after in crash.band_path
    ]
    assert [liquidation.account for liquidation in figures.liquidations] == crash.liquidated
    top = [(a.account, a.liquidations, a.deficit_usdt) for a in figures.top_accounts[:2]]
    assert top == [("u1:cross", 1, "0.15"), ("u2:cross", 1, "0.1")]
    written = {Path(chart).name for chart in report.charts}
    assert written == CHARTS
    for chart in report.charts:
        assert Path(chart).read_bytes().startswith(PNG_MAGIC)


def test_postmortem_page_opens_in_headless_chromium_without_errors(
    database_url: str, report: PostmortemReport
) -> None:
    """Goal: a person opens one file and sees the incident. Method: the page from a file://
    URL in Debian's Chromium: no console error, no failed request, every image decoded, the
    tables filled; a full-page screenshot is kept."""
    backend = "postgres" if database_url.startswith("postgresql") else "sqlite"
    problems: list[str] = []

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
        page.goto(Path(report.index).resolve().as_uri())
        page.wait_for_load_state("load")
        images: list[dict[str, Any]] = page.eval_on_selector_all(
            "img",
            "imgs => imgs.map(i => ({src: i.getAttribute('src'), complete: i.complete,"
            " width: i.naturalWidth}))",
        )
        transitions = page.locator("#band-transitions tr").count()
        accounts = page.locator("#top-accounts td").first.inner_text()
        title = page.title()
        page.screenshot(path=str(screenshot_path(f"postmortem-{backend}")), full_page=True)

    assert problems == []
    assert {image["src"] for image in images} == CHARTS
    assert all(image["complete"] and image["width"] == 900 for image in images), images
    assert transitions == 1 + 6  # the header and the crash's band transitions
    assert accounts == "u1:cross"
    assert "ABC" in title


def test_postmortem_command_writes_the_report(
    database_url: str, crash: CrashScenario, tmp_path: Path
) -> None:
    out = tmp_path / "incident"
    window = ["--from", format_time(crash.since), "--to", format_time(crash.until)]

    result = invoke(
        "postmortem", "--asset", "ABC", *window, "--out", str(out), "--interval", "1h",
        "--db", database_url, "--json",
    )  # fmt: skip

    assert result.exit_code == EXIT_OK, result.stderr
    written = json.loads(result.stdout)
    assert written["index"] == str(out / "index.html")
    assert {Path(chart).name for chart in written["charts"]} == CHARTS
    figures = json.loads((out / "figures.json").read_text(encoding="utf-8"))
    assert (figures["interval_seconds"], len(figures["intervals"])) == (3600, 9)
    assert "<img" in (out / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--asset", "XYZ"], "--asset"),
        (["--asset", "USDT"], "--asset"),  # listed, but no pool: its T would be drawn as 0
        (["--asset", "ABC", "--interval", "0m"], "--interval"),
        (["--asset", "ABC", "--interval", "1s"], "--interval"),  # 32,400 intervals
        (["--asset", "ABC", "--interval", "soon"], "--interval"),
        (["--asset", "ABC", "--from", "2026-03-02T20:00:00Z"], "--from"),
    ],
    ids=[
        "unknown-asset",
        "uncapped-asset",
        "zero-interval",
        "too-many-intervals",
        "bad-interval",
        "from-after-to",
    ],
)
def test_postmortem_command_refuses_bad_input_naming_the_option(
    database_url: str, crash: CrashScenario, tmp_path: Path, args: list[str], named: str
) -> None:
    options = {"--from": format_time(crash.since), "--to": format_time(crash.until)}
    options |= dict(zip(args[::2], args[1::2], strict=True))
    out = tmp_path / "not-written"

    result = invoke(
        "postmortem",
        *(part for pair in options.items() for part in pair),
        "--out",
        str(out),
        "--db",
        database_url,
    )

    assert result.exit_code == EXIT_CANNOT_RUN
    assert named in result.stderr
    assert not out.exists()


def test_the_cli_imports_matplotlib_only_for_a_postmortem() -> None:
    """Other commands must not pay matplotlib's import time."""
    code = "import sys, ledger.cli; print('matplotlib' in sys.modules)"

    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert imported == "False"


def test_postmortem_page_shows_a_whatif_comparison(
    database_url: str, crash: CrashScenario, tmp_path: Path
) -> None:
    """`ledger whatif --json` with a lower upper limit, then `ledger postmortem --whatif`: the
    page holds the comparison chart and the recorded and counterfactual figures of the report."""
    window = ["--from", format_time(crash.since), "--to", format_time(crash.until)]
    replayed = invoke(
        "whatif", *window, "--set", "ABC.upper_limit=9000", "--db", database_url, "--json"
    )
    assert replayed.exit_code == EXIT_OK, replayed.stderr
    whatif_json = tmp_path / "whatif.json"
    whatif_json.write_text(replayed.stdout, encoding="utf-8")
    whatif = json.loads(replayed.stdout)
    out = tmp_path / "incident"

    result = invoke(
        "postmortem", "--asset", "ABC", *window, "--out", str(out), "--whatif", str(whatif_json),
        "--db", database_url, "--json",
    )  # fmt: skip

    assert result.exit_code == EXIT_OK, result.stderr
    assert {Path(chart).name for chart in json.loads(result.stdout)["charts"]} == CHARTS | {
        "whatif.png"
    }
    assert (out / "whatif.png").read_bytes().startswith(PNG_MAGIC)
    assert json.loads((out / "whatif.json").read_text(encoding="utf-8")) == whatif
    page = (out / "index.html").read_text(encoding="utf-8")
    total = whatif["totals"]["assets"]["ABC"]["platform_total"]
    assert total["recorded"] == "5400"
    row = (
        f'<tr><td>ABC platform total T at the end</td><td class="number">{total["recorded"]}'
        f'</td><td class="number">{total["counterfactual"]}</td></tr>'
    )
    assert row in page
    assert "ABC.upper_limit=9000" in page


@pytest.mark.parametrize(
    "content", ["not json", '{"since": "x"}'], ids=["not-json", "not-a-whatif-report"]
)
def test_postmortem_command_refuses_a_bad_whatif_file(
    database_url: str, crash: CrashScenario, tmp_path: Path, content: str
) -> None:
    bad = tmp_path / "whatif.json"
    bad.write_text(content, encoding="utf-8")
    out = tmp_path / "not-written"

    result = invoke(
        "postmortem", "--asset", "ABC", "--from", format_time(crash.since),
        "--to", format_time(crash.until), "--out", str(out), "--whatif", str(bad),
        "--db", database_url,
    )  # fmt: skip

    assert result.exit_code == EXIT_CANNOT_RUN
    assert "--whatif" in result.stderr
    assert not out.exists()
