"""The post-mortem's charts, drawn from its figures with matplotlib's Agg canvas (no display, no
pyplot state): one PNG per question the incident team asks.

Imported only when a report is written, so other commands never pay matplotlib's import time.
"""

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ledger.incident.postmortem.chart_names import Chart
from ledger.incident.postmortem.figures import IntervalFigures, PostmortemFigures

BAND_COLOURS = {"A": "#2e7d32", "B": "#f9a825", "C": "#ef6c00", "D": "#c62828"}
SIZE_INCHES = (9.0, 3.4)
DPI = 100


def draw_charts(figures: PostmortemFigures, out: Path) -> list[Chart]:
    """Write every chart into `out`; the charts in the order the page shows them."""
    asset = figures.asset
    drawn = []
    for chart, draw in (
        (
            Chart(
                "platform_total",
                f"{asset}: platform total T against the band lines and the upper limit",
                "platform total per interval with the 80%, 90% and 100% lines of the upper limit",
            ),
            _platform_total,
        ),
        (Chart("price", f"{asset}: index price (USDT)", "price per interval"), _price),
        (
            Chart(
                "refused_transfer_ins",
                f"{asset}: refused transfer-ins per interval",
                "count of refused transfer-ins per interval",
            ),
            _refused,
        ),
        (
            Chart(
                "margin_calls_liquidations",
                "Margin calls, limited or blocked top-ups and liquidations per interval",
                "counts of margin calls, top-ups limited or blocked, and liquidations",
            ),
            _risk_events,
        ),
        (
            Chart("insurance_fund", "Insurance fund balance (USDT)", "insurance fund balance"),
            _insurance_fund,
        ),
    ):
        _save(figures, chart, draw, out)
        drawn.append(chart)
    return drawn


Draw = Callable[[Axes, PostmortemFigures], None]


def _save(figures: PostmortemFigures, chart: Chart, draw: Draw, out: Path) -> None:
    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    draw(axes, figures)
    axes.set_title(chart.title, loc="left", fontsize=11)
    axes.grid(True, alpha=0.3)
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]  # matplotlib.dates is untyped
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.set_xlim(_day_number(figures.since), _day_number(figures.until))
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=8)
    figure.savefig(out / chart.file_name, format="png")


def _steps(
    figures: PostmortemFigures, start: str | None, pick: Callable[[IntervalFigures], str | None]
) -> tuple[list[float], list[float]]:
    """The value at each interval's end, drawn across that interval ("pre" steps), with the
    value at the window's start first. Missing values (no cap, no price yet) are left out."""
    times: list[float] = []
    values: list[float] = []
    for moment, value in [(figures.since, start)] + [(i.end, pick(i)) for i in figures.intervals]:
        if value is not None:
            times.append(_day_number(moment))
            values.append(float(value))  # drawing only: the figures keep the decimals
    return times, values


def _day_number(moment: datetime) -> float:
    """matplotlib's date unit (days since its epoch): its axes take numbers."""
    return float(date2num(moment))  # type: ignore[no-untyped-call]


def _platform_total(axes: Axes, figures: PostmortemFigures) -> None:
    start = figures.start
    lines: Sequence[tuple[str, str | None, Callable[[IntervalFigures], str | None], str]] = (
        ("band B starts", start.band_b_total, lambda i: i.band_b_total, BAND_COLOURS["B"]),
        ("band C starts", start.band_c_total, lambda i: i.band_c_total, BAND_COLOURS["C"]),
        ("upper limit U", start.upper_limit, lambda i: i.upper_limit, BAND_COLOURS["D"]),
    )
    for label, first, pick, colour in lines:
        times, values = _steps(figures, first, pick)
        if times:
            axes.step(times, values, where="pre", color=colour, linestyle="--", label=label)
    times, values = _steps(figures, start.total, lambda i: i.platform_total_max)
    axes.step(times, values, where="pre", color="#90a4ae", linewidth=1, label="highest T")
    times, values = _steps(figures, start.total, lambda i: i.platform_total)
    axes.step(times, values, where="pre", color="#1565c0", linewidth=2, label="T at end")
    axes.set_ylim(bottom=0)
    axes.set_ylabel(figures.asset)


def _price(axes: Axes, figures: PostmortemFigures) -> None:
    times, values = _steps(figures, None, lambda i: i.price_usdt_min)
    axes.step(times, values, where="pre", color="#90a4ae", linewidth=1, label="lowest mark")
    times, values = _steps(figures, figures.start.price_usdt, lambda i: i.price_usdt)
    axes.step(times, values, where="pre", color="#6a1b9a", linewidth=2, label="price at end")
    axes.set_ylim(bottom=0)
    axes.set_ylabel("USDT")


def _bars(
    axes: Axes,
    figures: PostmortemFigures,
    series: Sequence[tuple[str, Callable[[IntervalFigures], int], str]],
) -> None:
    """Side-by-side bars per interval, one colour per series."""
    width = timedelta(seconds=figures.interval_seconds) / len(series)
    days = width / timedelta(days=1)  # matplotlib's date unit
    highest = 1
    for offset, (label, pick, colour) in enumerate(series):
        starts = [_day_number(i.start + offset * width) for i in figures.intervals]
        counts = [pick(i) for i in figures.intervals]
        highest = max(highest, *counts)
        axes.bar(starts, counts, width=days, align="edge", color=colour, label=label)
    axes.set_ylim(0, highest * 1.2)  # room above the tallest bar for the legend
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _refused(axes: Axes, figures: PostmortemFigures) -> None:
    _bars(axes, figures, [("refused", lambda i: i.refused_transfer_ins, BAND_COLOURS["D"])])


def _risk_events(axes: Axes, figures: PostmortemFigures) -> None:
    _bars(
        axes,
        figures,
        [
            ("margin calls", lambda i: i.margin_calls, BAND_COLOURS["B"]),
            ("top-ups limited", lambda i: i.top_ups_limited, "#8d6e63"),
            ("top-ups blocked", lambda i: i.top_ups_blocked, "#455a64"),
            ("liquidations", lambda i: i.liquidations, BAND_COLOURS["D"]),
        ],
    )


def _insurance_fund(axes: Axes, figures: PostmortemFigures) -> None:
    start = figures.start.insurance_fund_usdt
    times, values = _steps(figures, start, lambda i: i.insurance_fund_usdt)
    axes.step(times, values, where="pre", color="#00838f", linewidth=2, label="balance at end")
    # Not from zero: a deficit is often small against the fund, and it is what one looks for.
    axes.ticklabel_format(axis="y", useOffset=False, style="plain")
    axes.set_ylabel("USDT")
