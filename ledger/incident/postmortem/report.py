"""Writes the post-mortem: DIR/index.html (one page a person opens), one PNG per chart beside
it, and DIR/figures.json (the same figures for tools). The page refers only to files in DIR, so
the folder can be archived or mailed as it is."""

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.incident.postmortem.chart_names import Chart
from ledger.incident.postmortem.figures import PostmortemFigures, postmortem_figures
from ledger.money import format_plain, quantize_down
from ledger.times import format_time

if TYPE_CHECKING:
    from ledger.incident.totals import Compared
    from ledger.incident.whatif_report import WhatIfReport

INDEX = "index.html"
FIGURES = "figures.json"
WHATIF = "whatif.json"
BAND_COLOURS = {"A": "#2e7d32", "B": "#f9a825", "C": "#ef6c00", "D": "#c62828"}


class PostmortemReport(BaseModel):
    """What was written, and the figures it shows."""

    model_config = ConfigDict(frozen=True)

    out: str  # the folder
    index: str  # DIR/index.html
    figures_json: str
    charts: list[str]  # the PNGs
    figures: PostmortemFigures


def write_postmortem(
    ledger: Ledger,
    *,
    asset: str,
    since: datetime,
    until: datetime,
    out: Path,
    interval: timedelta | None = None,
    whatif: "WhatIfReport | None" = None,
    progress: Callable[[int, int], None] | None = None,
) -> PostmortemReport:
    """Compute the figures of `asset` over [since, until] and write the report into `out`
    (created if missing), with the comparison of a `ledger whatif` report when given.
    Raises WindowInvalid for a bad asset, window or interval."""
    figures = postmortem_figures(
        ledger, asset=asset, since=since, until=until, interval=interval, progress=progress
    )
    return write_report(figures, out, whatif=whatif)


def write_report(
    figures: PostmortemFigures, out: Path, *, whatif: "WhatIfReport | None" = None
) -> PostmortemReport:
    """Write the page, its charts and figures.json; with a `ledger whatif` report, also its
    comparison chart and figures (and the report itself as whatif.json)."""
    from ledger.incident.postmortem.charts import draw_charts  # matplotlib: only here

    out.mkdir(parents=True, exist_ok=True)
    charts = draw_charts(figures, out)
    _write_json(out / FIGURES, figures.model_dump(mode="json"))
    comparison = None if whatif is None else _comparison(whatif, out)
    page = (
        _templates()
        .get_template("report.html")
        .render(
            f=figures,
            since=format_time(figures.since),
            until=format_time(figures.until),
            interval=_duration(figures.interval_seconds),
            charts=charts,
            band_colours=BAND_COLOURS,
            comparison=comparison,
        )
    )
    (out / INDEX).write_text(page, encoding="utf-8")
    drawn = [*charts, *([] if comparison is None else [comparison.chart])]
    return PostmortemReport(
        out=str(out),
        index=str(out / INDEX),
        figures_json=str(out / FIGURES),
        charts=[str(out / chart.file_name) for chart in drawn],
        figures=figures,
    )


class Comparison:
    """A `ledger whatif` report on the page: its chart and its figures, recorded against
    counterfactual."""

    def __init__(self, title: str, chart: Chart, rows: list[tuple[str, str, str]]) -> None:
        self.title, self.chart, self.rows = title, chart, rows


def _comparison(whatif: "WhatIfReport", out: Path) -> Comparison:
    from ledger.incident.whatif_chart import comparison_chart  # matplotlib: only here

    chart = Chart(
        "whatif",
        "Recorded against what if: platform totals, insurance fund, decisions that differ",
        "comparison of the recorded and the counterfactual outcomes",
    )
    comparison_chart(whatif, out / chart.file_name)
    _write_json(out / WHATIF, whatif.model_dump(mode="json"))
    rows = []
    for asset, totals in sorted(whatif.totals.assets.items()):
        rows.append((f"{asset} platform total T at the end", *_pair(totals.platform_total)))
        rows.append((f"{asset} upper limit U", *_pair(totals.upper_limit)))
    for name, compared in whatif.totals.insurance_fund.items():
        rows.append((f"insurance fund {name.removesuffix('_usdt')} (USDT)", *_pair(compared)))
    for name, count in whatif.summary.items():
        rows.append((f"decisions: {name.replace('_', ' ')}", "", str(count)))
    shown = ", ".join(f"{k}={v}" for k, v in whatif.overrides.items()) or "no change"
    return Comparison(f"{shown} ({whatif.since} to {whatif.until})", chart, rows)


def _pair(compared: "Compared") -> tuple[str, str]:
    return compared.recorded or "-", compared.counterfactual or "-"


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _templates() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["percent"] = _percent
    environment.filters["band"] = _band
    environment.filters["time"] = format_time
    return environment


def _percent(ratio: object) -> str:
    """A ratio as a percentage for people (one decimal, rounded down: 99.99% is not 100%)."""
    if ratio is None:
        return "-"
    return f"{format_plain(quantize_down(Decimal(str(ratio)) * 100, 1))}%"


def _band(band: object) -> object:
    if band is None:
        return "-"
    text = escape(str(band))
    return Markup(f'<span class="band band-{text}">{text}</span>')


def _duration(seconds: int) -> str:
    """ "1h", "11m15s", "1d2h": the interval as the --interval option writes it."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
