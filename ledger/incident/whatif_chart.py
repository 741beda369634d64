"""A `ledger whatif` report as one comparison chart (PNG, matplotlib's Agg canvas, no pyplot
state), for a person or for the post-mortem page: recorded against counterfactual, the platform
total of each capped asset at the window's end, the insurance fund's flows in it, and the
decisions that differ by kind.

Imported only when a chart is asked for, so `ledger whatif` never pays matplotlib's import time.
"""

from decimal import Decimal
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ledger.incident.totals import Compared
from ledger.incident.whatif_report import WhatIfReport

RECORDED, COUNTERFACTUAL = "#546e7a", "#ef6c00"
SIZE_INCHES = (11.0, 3.6)
DPI = 100
DIFFERENCE_KINDS = (
    "accepted_to_rejected",
    "rejected_to_accepted",
    "q_max_changed",
    "liquidations_added",
    "liquidations_avoided",
)


def comparison_chart(report: WhatIfReport, out: Path) -> Path:
    """Draw the report's comparison chart into `out` (a .png file)."""
    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    totals, fund, decisions = figure.subplots(1, 3, width_ratios=(2, 2, 3))
    assets = report.totals.assets
    _pairs(totals, "T at the window's end", {a: t.platform_total for a, t in assets.items()})
    flows = {k: v for k, v in report.totals.insurance_fund.items() if k != "balance_usdt"}
    _pairs(fund, "insurance fund in the window (USDT)", flows)
    counts = [report.summary.get(kind, 0) for kind in DIFFERENCE_KINDS]
    decisions.barh([k.replace("_", " ") for k in DIFFERENCE_KINDS], counts, color=COUNTERFACTUAL)
    decisions.set_title("decisions that differ", fontsize=10)
    decisions.invert_yaxis()
    decisions.xaxis.set_major_locator(MaxNLocator(integer=True))
    shown = ", ".join(f"{k}={v}" for k, v in report.overrides.items()) or "no override"
    figure.suptitle(f"What if {shown}: {report.since} .. {report.until}", fontsize=11)
    figure.savefig(out, format="png")
    return out


def _pairs(axes: Axes, title: str, compared: dict[str, Compared]) -> None:
    """Recorded and counterfactual bars side by side for each label."""
    labels = list(compared)
    positions = range(len(labels))
    recorded = [_number(c.recorded) for c in compared.values()]
    counterfactual = [_number(c.counterfactual) for c in compared.values()]
    axes.bar([p - 0.2 for p in positions], recorded, 0.4, label="recorded", color=RECORDED)
    axes.bar(
        [p + 0.2 for p in positions], counterfactual, 0.4, label="what if", color=COUNTERFACTUAL
    )
    axes.set_xticks(list(positions), [label.removesuffix("_usdt") for label in labels])
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)


def _number(text: str | None) -> float:
    # Charts draw floats; the figures themselves stay Decimal strings in the JSON report.
    return 0.0 if text is None else float(Decimal(text))
