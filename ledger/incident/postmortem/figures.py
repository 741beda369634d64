"""The post-mortem's figures of one asset over a window, from one pass over the event log: the
asset's state at both ends, per interval the platform total against the band lines and the upper
limit, the price, the insurance fund, refused transfer-ins, margin calls and liquidations, and
the accounts most involved (DOMAIN.md §9).

The series are kept per interval (the value at each interval's end and its extreme within it),
so memory grows with the number of intervals, not with the events of the window.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.incident.postmortem.involvement import AccountInvolvement, Involvement
from ledger.incident.postmortem.series import AssetSeries, IntervalValues
from ledger.incident.timeline import (
    TimelineBuilder,
    TimelineEntry,
    TimelineKind,
    TimelineWindow,
    log_records,
)
from ledger.money import format_plain

INTERVALS_MAX = 2000  # a chart of more bars than pixels says nothing more
INTERVALS_DEFAULT = 48
LINES_LISTED_MAX = 200  # band transitions and liquidations listed on the page (all are counted)


class AssetState(BaseModel):
    """The asset as of one business time (events dated up to it), as `ledger assets --as-of`
    shows it, and the insurance fund's balance then."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime
    total: str  # T
    upper_limit: str | None  # U
    fixed_quota_usdt: str | None  # F
    band_b_total: str | None  # T at which band B starts (80% of U by default)
    band_c_total: str | None  # and band C (90%)
    ratio: str | None
    band: str | None
    price_usdt: str | None
    insurance_fund_usdt: str


class IntervalFigures(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: AwareDatetime
    end: AwareDatetime
    platform_total: str  # at the interval's end
    platform_total_max: str  # the highest T within it
    upper_limit: str | None
    band_b_total: str | None  # T at which band B starts (80% of U by default)
    band_c_total: str | None  # and band C (90%)
    price_usdt: str | None
    price_usdt_min: str | None  # the lowest mark within it
    insurance_fund_usdt: str
    refused_transfer_ins: int
    refused_quantity: str
    margin_calls: int
    top_ups_limited: int  # limited by the cap or the spot wallet
    top_ups_blocked: int
    liquidations: int
    deficit_usdt: str


class PostmortemFigures(BaseModel):
    """Everything the report shows, as figures.json holds it."""

    model_config = ConfigDict(frozen=True)

    asset: str
    since: AwareDatetime
    until: AwareDatetime
    interval_seconds: int
    log_position: int  # the log was read up to this position
    start: AssetState
    end: AssetState
    intervals: list[IntervalFigures]
    counts: dict[str, int]  # timeline lines by kind, over the whole window
    band_transitions: list[TimelineEntry]  # the first LINES_LISTED_MAX
    liquidations: list[TimelineEntry]
    top_accounts: list[AccountInvolvement]


class WindowInvalid(ValueError):
    """A window or interval the report cannot be drawn for; names the option."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def interval_for(window: TimelineWindow, interval: timedelta | None) -> timedelta:
    """The interval asked for, checked, or the window's 1/48th (whole seconds, at least one)."""
    length = window.until - window.since
    if interval is None:
        return max(timedelta(seconds=1), timedelta(seconds=length.total_seconds() // 48))
    if interval < timedelta(seconds=1):
        raise WindowInvalid("interval", "must be at least one second")
    if interval.microseconds:
        raise WindowInvalid("interval", "must be a whole number of seconds")
    if length / interval > INTERVALS_MAX:
        raise WindowInvalid(
            "interval", f"makes more than {INTERVALS_MAX} intervals of the window: choose longer"
        )
    return interval


def postmortem_figures(
    ledger: Ledger,
    *,
    asset: str,
    since: datetime,
    until: datetime,
    interval: timedelta | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PostmortemFigures:
    """The figures of `asset` over [since, until], from one pass over the log."""
    listed = ledger.get_aggregate(Asset, Asset.create_id(asset))
    if listed is None:
        raise WindowInvalid("asset", f"{asset} is not a listed asset")
    if not listed.is_cap_eligible:
        # Its report would draw a platform total of 0: only a cap-eligible asset has a pool.
        raise WindowInvalid(
            "asset",
            f"{asset} is not under the max collateral rule (collateral rank "
            f"{listed.collateral_rank}): the report follows a capped asset's platform total; "
            "`ledger timeline --asset` tells its story",
        )
    try:
        window = TimelineWindow(since=since, until=until)
    except ValueError as exc:
        raise WindowInvalid("since", "must not be later than until (--to)") from exc
    step = interval_for(window, interval)
    series = AssetSeries(
        window,
        step,
        pool_id=str(AssetPool.create_id(asset)),
        asset_id=str(Asset.create_id(asset)),
        fund_id=str(InsuranceFund.create_id()),
    )
    story = TimelineBuilder(ledger, window, asset=asset)
    involvement = Involvement()
    counts: dict[str, int] = {}
    bands: list[TimelineEntry] = []
    liquidations: list[TimelineEntry] = []
    position = 0
    for record in log_records(ledger, progress=progress):
        position = record.position
        series.observe(record)
        for entry in story.feed(record):
            _count(entry, series, involvement, counts, bands, liquidations)
    for entry in story.finish():
        _count(entry, series, involvement, counts, bands, liquidations)
    return PostmortemFigures(
        asset=asset,
        since=window.since,
        until=window.until,
        interval_seconds=int(step.total_seconds()),
        log_position=position,
        start=_state(window.since, series.at_since()),
        end=_state(window.until, series.at_until()),
        intervals=[_interval(values) for values in series.intervals()],
        counts=dict(sorted(counts.items())),
        band_transitions=bands,
        liquidations=liquidations,
        top_accounts=involvement.top(),
    )


def _count(
    entry: TimelineEntry,
    series: AssetSeries,
    involvement: Involvement,
    counts: dict[str, int],
    bands: list[TimelineEntry],
    liquidations: list[TimelineEntry],
) -> None:
    counts[entry.kind.value] = counts.get(entry.kind.value, 0) + 1
    series.count(entry)
    involvement.observe(entry)
    if entry.kind is TimelineKind.BAND_TRANSITION and len(bands) < LINES_LISTED_MAX:
        bands.append(entry)
    if entry.kind is TimelineKind.LIQUIDATION and len(liquidations) < LINES_LISTED_MAX:
        liquidations.append(entry)


def _state(at: datetime, values: IntervalValues) -> AssetState:
    band, ratio = values.band_and_ratio()
    cap = values.cap
    return AssetState(
        at=at,
        total=format_plain(values.platform_total),
        upper_limit=_plain(None if cap is None else cap.upper_limit),
        fixed_quota_usdt=_plain(None if cap is None else cap.fixed_quota_usdt),
        band_b_total=_plain(None if cap is None else cap.band_b_ratio_min * cap.upper_limit),
        band_c_total=_plain(None if cap is None else cap.band_c_ratio_min * cap.upper_limit),
        ratio=_plain(ratio),
        band=band,
        price_usdt=_plain(values.price_usdt),
        insurance_fund_usdt=format_plain(values.fund_usdt),
    )


def _interval(values: IntervalValues) -> IntervalFigures:
    cap = values.cap
    return IntervalFigures(
        start=values.start,
        end=values.end,
        platform_total=format_plain(values.platform_total),
        platform_total_max=format_plain(values.platform_total_max),
        upper_limit=_plain(None if cap is None else cap.upper_limit),
        band_b_total=_plain(None if cap is None else cap.band_b_ratio_min * cap.upper_limit),
        band_c_total=_plain(None if cap is None else cap.band_c_ratio_min * cap.upper_limit),
        price_usdt=_plain(values.price_usdt),
        price_usdt_min=_plain(values.price_usdt_min),
        insurance_fund_usdt=format_plain(values.fund_usdt),
        refused_transfer_ins=values.refused,
        refused_quantity=format_plain(values.refused_quantity),
        margin_calls=values.margin_calls,
        top_ups_limited=values.top_ups_limited,
        top_ups_blocked=values.top_ups_blocked,
        liquidations=values.liquidations,
        deficit_usdt=format_plain(values.deficit_usdt),
    )


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else format_plain(value)
