"""`GET /`: the risk officers' page. Every capped asset with its total, upper limit, ratio and
band (coloured by band), and its band timeline as a chart; server-rendered, refreshed by a small
script that fetches the same fragment again.

The page shows platform-wide aggregates only (per asset: no account, no user), so it is served
without an API key, for a browser on the risk desk; `ledger serve --no-page` turns it off.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict

from ledger.http.auth import service_of
from ledger.money import format_plain, quantize_down
from ledger.times import parse_time
from projections.band_timeline import BandChange
from projections.queries import AssetView

REFRESH_SECONDS_DEFAULT = 5
CHART_WIDTH = 560
CHART_HEIGHT = 140
CHART_MARGIN = 4
CHART_LABELS = 16  # the band letters left of the chart
BAND_COLOURS = {"A": "#2e7d32", "B": "#f9a825", "C": "#ef6c00", "D": "#c62828"}

router = APIRouter(include_in_schema=False)
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class Segment(BaseModel):
    """One horizontal step of the chart: the band held from one change to the next."""

    model_config = ConfigDict(frozen=True)

    x1: str
    x2: str
    y: str
    colour: str
    title: str


class Lane(BaseModel):
    """A band's horizontal strip of the chart."""

    model_config = ConfigDict(frozen=True)

    band: str
    colour: str
    y: str
    label_y: str


class AssetPanel(BaseModel):
    model_config = ConfigDict(frozen=True)

    asset: str
    total: str
    upper_limit: str | None
    ratio_percent: str | None
    band: str | None
    colour: str
    segments: list[Segment]
    lanes: list[Lane]
    lane_height: str
    first_at: str | None
    last_at: str | None
    changes: int


@router.get("/", response_class=HTMLResponse)
async def page(
    request: Request, refresh: Annotated[int, Query(ge=1, le=3600)] = REFRESH_SECONDS_DEFAULT
) -> HTMLResponse:
    panels = await run_in_threadpool(_panels, request)
    html = _templates.get_template("bands.html").render(
        panels=panels,
        refresh_seconds=refresh,
        colours=BAND_COLOURS,
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
    )
    return HTMLResponse(html)


@router.get("/page/assets", response_class=HTMLResponse)
async def fragment(request: Request) -> HTMLResponse:
    """The part of the page the script refreshes."""
    panels = await run_in_threadpool(_panels, request)
    html = _templates.get_template("panels.html").render(
        panels=panels, colours=BAND_COLOURS, width=CHART_WIDTH, height=CHART_HEIGHT
    )
    return HTMLResponse(html)


def _panels(request: Request) -> list[AssetPanel]:
    with service_of(request).reader() as reader:
        capped = [view for view in reader.assets() if view.capped]
        return [panel(view, reader.bands(asset=view.asset)) for view in capped]


def panel(view: AssetView, changes: list[BandChange]) -> AssetPanel:
    ratio = None if view.ratio is None else Decimal(view.ratio)
    return AssetPanel(
        asset=view.asset,
        total=view.total,
        upper_limit=view.upper_limit,
        ratio_percent=None if ratio is None else _percent(ratio),
        band=view.band,
        colour=BAND_COLOURS.get(view.band or "", "#777"),
        segments=_segments(changes),
        lanes=[
            Lane(band=band, colour=colour, y=_lane_top(band), label_y=_lane_middle(band))
            for band, colour in BAND_COLOURS.items()
        ],
        lane_height=str(_LANE_HEIGHT),
        first_at=changes[0].effective_at if changes else None,
        last_at=changes[-1].effective_at if changes else None,
        changes=len(changes),
    )


def _segments(changes: list[BandChange]) -> list[Segment]:
    """The band held from each change to the next, on the band's lane; the last one drawn a
    tenth of the span past its change (it holds until now)."""
    steps = [c for c in changes if c.band_after is not None]
    if not steps:
        return []
    times = [parse_time(c.effective_at) for c in steps]
    start = times[0]
    end = times[-1] + max((times[-1] - start) / 10, timedelta(minutes=1))
    span = Decimal(int((end - start).total_seconds()))
    segments = []
    for step, since, until in zip(steps, times, [*times[1:], end], strict=True):
        assert step.band_after is not None
        ratio = "-" if step.ratio_after is None else f"{_percent(Decimal(step.ratio_after))}%"
        segments.append(
            Segment(
                x1=_x(since, start, span),
                x2=_x(until, start, span),
                y=_lane_middle(step.band_after),
                colour=BAND_COLOURS[step.band_after],
                title=f"{step.effective_at}: band {step.band_after}, ratio {ratio}",
            )
        )
    return segments


_LANE_HEIGHT = Decimal(CHART_HEIGHT - 2 * CHART_MARGIN) / len(BAND_COLOURS)


def _lane_top(band: str) -> str:
    """Band D's lane on top, A's at the bottom."""
    index = len(BAND_COLOURS) - 1 - list(BAND_COLOURS).index(band)
    return _pixels(CHART_MARGIN + index * _LANE_HEIGHT)


def _lane_middle(band: str) -> str:
    return _pixels(Decimal(_lane_top(band)) + _LANE_HEIGHT / 2)


def _x(moment: datetime, start: datetime, span: Decimal) -> str:
    seconds = Decimal(int((moment - start).total_seconds()))
    width = CHART_WIDTH - 2 * CHART_MARGIN - CHART_LABELS
    return _pixels(CHART_MARGIN + CHART_LABELS + seconds / span * width)


def _percent(ratio: Decimal) -> str:
    """Percent exists only in output (STYLE §2): two places, rounded down (as `ledger assets`)."""
    return format_plain(quantize_down(ratio * 100, 2))


def _pixels(value: Decimal) -> str:
    return format_plain(quantize_down(value, 1))
