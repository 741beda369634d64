"""Band transitions from the log: each capped pool's T and cap followed event by event (every
pool event, before a window too), and the line of each event that moves the pool into another
band (DOMAIN.md §3), with the ratio and T before and after and what moved it."""

from decimal import Decimal

from ledger.domain.asset_pool import AssetPool
from ledger.incident.timeline_kinds import Line, TimelineKind, plain
from ledger.money import format_plain, quantize_down
from ledger.params import CapParams
from ledger.rules.cap_band import band_of, ratio_for_record
from projections.events import Record, derives


class PoolState:
    """A capped pool as the band rule sees it: T and the cap in force (DOMAIN.md §3)."""

    __slots__ = ("asset", "params", "platform_total")

    def __init__(self, asset: str) -> None:
        self.asset = asset
        self.platform_total = Decimal(0)
        self.params: CapParams | None = None

    def figures(self) -> tuple[str | None, Decimal | None]:
        """(band, ratio); neither before an upper limit is set."""
        if self.params is None:
            return None, None
        band = band_of(platform_total=self.platform_total, params=self.params).value
        return band, ratio_for_record(self.platform_total, self.params.upper_limit)


class PoolBands:
    """Every pool's state (one small record per capped asset)."""

    def __init__(self) -> None:
        self.pools: dict[str, PoolState] = {}  # by pool id

    def observe(self, record: Record) -> Line | None:
        """Follow one pool event; the band transition it makes, if any."""
        data, kind = record.data, record.kind
        if derives(kind, AssetPool.Opened):
            self.pools[record.originator_id] = PoolState(data["asset"])
            return None
        pool = self.pools[record.originator_id]
        band_before, ratio_before = pool.figures()
        total_before = pool.platform_total
        if derives(kind, AssetPool.CapSet):
            pool.params = record.event.cap_params
            cause = "cap_set"
        elif derives(kind, (AssetPool.TotalIncreased, AssetPool.TotalDecreased)):
            pool.platform_total = Decimal(data["platform_total_after"])
            cause = data["movement"]
        else:
            return None
        band_after, ratio_after = pool.figures()
        if band_after == band_before:
            return None
        upper_limit = None if pool.params is None else pool.params.upper_limit
        account = data.get("account_id")
        by = "" if account is None else f" by {account}"
        line = Line(
            kind=TimelineKind.BAND_TRANSITION,
            account=account,
            asset=pool.asset,
            figures={
                "band_before": band_before,
                "band_after": band_after,
                "ratio_before": plain(ratio_before),
                "ratio_after": plain(ratio_after),
                "total_before": plain(total_before),
                "total_after": plain(pool.platform_total),
                "upper_limit": plain(upper_limit),
                "cause": cause,
            },
            text=f"{pool.asset} band {band_before or '-'} → {band_after}: ratio "
            f"{_short(ratio_before)} → {_short(ratio_after)} (T {plain(total_before)} → "
            f"{plain(pool.platform_total)} of U {plain(upper_limit)}), {cause}{by}",
        )
        return line


def _short(ratio: Decimal | None) -> str:
    """A ratio as a percentage, one decimal rounded down, for the text (figures keep all)."""
    return "-" if ratio is None else f"{format_plain(quantize_down(ratio * 100, 1))}%"
