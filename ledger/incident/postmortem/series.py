"""One asset's series over a window, kept per interval: the platform total, the cap in force,
the price and the insurance fund at each interval's end (and their extremes within it), and the
counts of the timeline's lines that fall in it.

Each series follows one aggregate (the asset's pool, the asset, the fund), whose business time
never goes backwards (DOMAIN.md §8): its events in log order are in time order, so the last event
of an interval is its value at the interval's end.
"""

import math
from datetime import datetime, timedelta
from decimal import Decimal

from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.incident.timeline import TimelineEntry, TimelineKind, TimelineWindow
from ledger.params import CapParams
from ledger.rules.cap_band import band_of, ratio_for_record
from projections.events import Record, derives
from projections.sql import parse_time_key, time_key


class IntervalValues:
    """The figures of one interval (or of one moment: then start == end)."""

    __slots__ = (
        "cap",
        "deficit_usdt",
        "end",
        "fund_usdt",
        "liquidations",
        "margin_calls",
        "platform_total",
        "platform_total_max",
        "price_usdt",
        "price_usdt_min",
        "refused",
        "refused_quantity",
        "start",
        "top_ups_blocked",
        "top_ups_limited",
    )

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.platform_total = self.platform_total_max = Decimal(0)
        self.cap: CapParams | None = None
        self.price_usdt: Decimal | None = None
        self.price_usdt_min: Decimal | None = None
        self.fund_usdt = Decimal(0)
        self.refused = self.margin_calls = self.liquidations = 0
        self.top_ups_limited = self.top_ups_blocked = 0
        self.refused_quantity = self.deficit_usdt = Decimal(0)

    def band_and_ratio(self) -> tuple[str | None, Decimal | None]:
        if self.cap is None:
            return None, None
        band = band_of(platform_total=self.platform_total, params=self.cap).value
        return band, ratio_for_record(self.platform_total, self.cap.upper_limit)


class _Slot:
    """What the events of one interval set: None where no event of that series fell in it."""

    __slots__ = ("cap", "fund", "price", "price_min", "total", "total_max")

    def __init__(self) -> None:
        self.total: Decimal | None = None
        self.total_max: Decimal | None = None
        self.cap: CapParams | None = None
        self.price: Decimal | None = None
        self.price_min: Decimal | None = None
        self.fund: Decimal | None = None


class AssetSeries:
    def __init__(
        self,
        window: TimelineWindow,
        step: timedelta,
        *,
        pool_id: str,
        asset_id: str,
        fund_id: str,
    ) -> None:
        assert step > timedelta(0), step
        self.since, self.until, self.step = window.since, window.until, step
        self.since_key, self.until_key = time_key(window.since), time_key(window.until)
        self.pool_id, self.asset_id, self.fund_id = pool_id, asset_id, fund_id
        count = max(1, math.ceil((window.until - window.since) / step))
        self.slots = [_Slot() for _ in range(count)]
        self.counted = [IntervalValues(self._start(i), self._end(i)) for i in range(count)]
        self.first = IntervalValues(window.since, window.since)  # as of since

    def observe(self, record: Record) -> None:
        """Follow the pool, the asset and the fund (before the window too)."""
        key = record.effective_key
        if key > self.until_key or record.originator_id not in (
            self.pool_id,
            self.asset_id,
            self.fund_id,
        ):
            return
        kind, data = record.kind, record.data
        first = self.first if key <= self.since_key else None
        slot = self.slots[self._index(key)] if key >= self.since_key else None
        if derives(kind, AssetPool.CapSet):
            cap = record.event.cap_params
            if first is not None:
                first.cap = cap
            if slot is not None:
                slot.cap = cap
        elif derives(kind, (AssetPool.TotalIncreased, AssetPool.TotalDecreased)):
            total = Decimal(data["platform_total_after"])
            if first is not None:
                first.platform_total = total
            if slot is not None:
                slot.total = total
                slot.total_max = total if slot.total_max is None else max(slot.total_max, total)
        elif derives(kind, Asset.PriceMarked):
            price = Decimal(data["price_usdt"])
            if first is not None:
                first.price_usdt = price
            if slot is not None:
                slot.price = price
                slot.price_min = price if slot.price_min is None else min(slot.price_min, price)
        elif derives(kind, (InsuranceFund.Funded, InsuranceFund.DeficitCovered)):
            balance = Decimal(data["balance_after_usdt"])
            if first is not None:
                first.fund_usdt = balance
            if slot is not None:
                slot.fund = balance

    def count(self, entry: TimelineEntry) -> None:
        """Count a timeline line of the window in its interval."""
        values = self.counted[self._index(time_key(entry.effective_at))]
        figures = entry.figures
        if entry.kind is TimelineKind.TRANSFER_IN_REFUSED:
            values.refused += 1
            values.refused_quantity += Decimal(str(figures["requested"]))
        elif entry.kind is TimelineKind.MARGIN_CALL:
            values.margin_calls += 1
        elif entry.kind is TimelineKind.TOP_UP and figures.get("is_limited"):
            values.top_ups_limited += 1
        elif entry.kind is TimelineKind.TOP_UP_BLOCKED:
            values.top_ups_blocked += 1
        elif entry.kind is TimelineKind.LIQUIDATION:
            values.liquidations += 1
            values.deficit_usdt += Decimal(str(figures["deficit_usdt"]))

    def at_since(self) -> IntervalValues:
        self.first.platform_total_max = self.first.platform_total
        self.first.price_usdt_min = self.first.price_usdt
        return self.first

    def at_until(self) -> IntervalValues:
        last = self.intervals()[-1]
        moment = IntervalValues(self.until, self.until)
        moment.platform_total, moment.cap = last.platform_total, last.cap
        moment.price_usdt, moment.fund_usdt = last.price_usdt, last.fund_usdt
        return moment

    def intervals(self) -> list[IntervalValues]:
        """Every interval's values, each series carried forward through intervals where it did
        not move (an extreme includes the value the interval began with)."""
        before = self.at_since()
        total, cap, price, fund = (
            before.platform_total,
            before.cap,
            before.price_usdt,
            before.fund_usdt,
        )
        for slot, values in zip(self.slots, self.counted, strict=True):
            moved_max = slot.total_max
            values.platform_total_max = total if moved_max is None else max(total, moved_max)
            total = total if slot.total is None else slot.total
            cap = cap if slot.cap is None else slot.cap
            values.price_usdt_min = _lowest(price, slot.price_min)
            price = price if slot.price is None else slot.price
            fund = fund if slot.fund is None else slot.fund
            values.platform_total, values.cap = total, cap
            values.price_usdt, values.fund_usdt = price, fund
        return self.counted

    def _index(self, key: str) -> int:
        offset = parse_time_key(key) - self.since
        return min(int(offset // self.step), len(self.slots) - 1)

    def _start(self, index: int) -> datetime:
        return self.since + index * self.step

    def _end(self, index: int) -> datetime:
        return min(self.until, self.since + (index + 1) * self.step)


def _lowest(carried: Decimal | None, marked: Decimal | None) -> Decimal | None:
    if carried is None or marked is None:
        return marked if carried is None else carried
    return min(carried, marked)
