"""Assets, their listings and hourly price paths, the crash among them."""

from dataclasses import dataclass
from decimal import Decimal

from ledger.money import quantize_down
from ledger.params import (
    BAND_B_RATIO_MIN_DEFAULT,
    BAND_C_RATIO_MIN_DEFAULT,
    FIXED_QUOTA_USDT_DEFAULT,
    MAINTENANCE_BRACKETS_DEFAULT,
    QUOTE_ASSET,
    CapParams,
    CollateralBracket,
)
from ledger.rules.valuation import Market
from ledger.simulate.base import SimulationBase

MAJORS = {"BTC": (55_000, 75_000), "ETH": (2_200, 3_800)}  # opening price range in USDT
MAJOR_DECIMALS = 8
CAPPED_SYMBOLS = ("ORCA", "PIXL", "KITE", "LUMA", "NOVA", "ZEST", "VOLT", "MOSS")
CAPPED_COUNT = 3
CAPPED_DECIMALS = 2
PRICE_DECIMALS = {"BTC": 2, "ETH": 2}  # capped assets' prices keep 4 places
# Haircut ladders by rank (DOMAIN.md §4; rank 8 is its example). Every first bracket is at least
# FLAT_NOTIONAL_MAX_USDT, so the leveraged positions below are valued without haircuts.
LADDERS: dict[int, list[tuple[int | None, str]]] = {
    7: [(100_000, "1"), (300_000, "0.7"), (600_000, "0.4"), (None, "0.1")],
    8: [
        (100_000, "1"),
        (250_000, "0.8"),
        (500_000, "0.6"),
        (700_000, "0.3"),
        (1_000_000, "0.1"),
        (None, "0"),
    ],
    9: [(75_000, "1"), (200_000, "0.6"), (400_000, "0.3"), (None, "0")],
    10: [(50_000, "1"), (150_000, "0.5"), (None, "0")],
}
FLAT_NOTIONAL_MAX_USDT = Decimal(45_000)


@dataclass
class Asset:
    symbol: str
    rank: int
    decimals: int
    prices: list[Decimal]  # index price in force from each hour (0 .. hours)
    ladder: tuple[CollateralBracket, ...]
    cap: CapParams | None = None

    def units(self, quantity: Decimal) -> Decimal:
        return quantize_down(quantity, self.decimals)


class MarketLayer(SimulationBase):
    """Listing and prices: the assets, their paths, and the valuation market of each hour."""

    assets: list[Asset]
    crash_asset: str
    _markets: dict[int, Market]

    def _list_assets(self) -> list[Asset]:
        rng = self.rng
        flat = (CollateralBracket(up_to_usdt=None, ratio=Decimal(1)),)
        assets = [Asset(QUOTE_ASSET, 1, MAJOR_DECIMALS, [], flat)]
        for symbol, (low, high) in MAJORS.items():
            opening = Decimal(rng.randint(low, high))
            path = self._walk(opening, 25, Decimal("0.85"), Decimal("1.15"), PRICE_DECIMALS[symbol])
            assets.append(Asset(symbol, 1, MAJOR_DECIMALS, path, flat))
        for position, symbol in enumerate(rng.sample(CAPPED_SYMBOLS, CAPPED_COUNT)):
            rank = rng.randint(7, 10)
            ladder = tuple(
                CollateralBracket(
                    up_to_usdt=None if up_to is None else Decimal(up_to), ratio=Decimal(ratio)
                )
                for up_to, ratio in LADDERS[rank]
            )
            opening = Decimal(rng.randint(20, 2500)).scaleb(-2)
            path = (
                self._crash_walk(opening)
                if position == 0
                else self._walk(opening, 40, Decimal("0.75"), Decimal("1.3"), 4)
            )
            # The cap is set once the accounts are planned (it depends on their demand).
            cap = CapParams(
                upper_limit=Decimal(1),
                fixed_quota_usdt=FIXED_QUOTA_USDT_DEFAULT,
                band_b_ratio_min=BAND_B_RATIO_MIN_DEFAULT,
                band_c_ratio_min=BAND_C_RATIO_MIN_DEFAULT,
            )
            assets.append(Asset(symbol, rank, CAPPED_DECIMALS, path, ladder, cap))
        return assets

    def _walk(
        self, opening: Decimal, step: int, low: Decimal, high: Decimal, decimals: int
    ) -> list[Decimal]:
        """An hourly random walk of at most `step` per mille an hour, kept in [low, high]."""
        prices = [opening]
        for _hour in range(self.hours):
            moved = prices[-1] * (1000 + self.rng.randint(-step, step)) / 1000
            prices.append(quantize_down(min(max(moved, low * opening), high * opening), decimals))
        return prices

    def _crash_walk(self, opening: Decimal) -> list[Decimal]:
        """A calm walk, then a fall of 40-60% over the crash hours, then a weak rebound."""
        steps = self.crash_end - self.crash_start + 1
        remaining = Decimal(100 - self.rng.randint(40, 60)) / 100
        factors = []
        for left in range(steps, 1, -1):
            even = remaining ** (Decimal(1) / left)
            factor = even * (100 + self.rng.randint(-4, 4)) / 100
            factors.append(factor)
            remaining /= factor
        factors.append(remaining)
        prices = [opening]
        for hour in range(1, self.hours + 1):
            if self.crash_start <= hour <= self.crash_end:
                moved = prices[-1] * factors[hour - self.crash_start]
            elif hour < self.crash_start:
                moved = prices[-1] * (1000 + self.rng.randint(-15, 15)) / 1000
                moved = min(max(moved, opening * Decimal("0.85")), opening * Decimal("1.15"))
            else:
                moved = max(prices[-1] * (1000 + self.rng.randint(-15, 35)) / 1000, opening / 5)
            prices.append(quantize_down(moved, 4))
        return prices

    def asset(self, symbol: str) -> Asset:
        return next(a for a in self.assets if a.symbol == symbol)

    def capped(self) -> list[Asset]:
        return [a for a in self.assets if a.cap is not None]

    def price(self, symbol: str, hour: int) -> Decimal:
        return Decimal(1) if symbol == QUOTE_ASSET else self.asset(symbol).prices[hour]

    def market(self, hour: int) -> Market:
        if hour not in self._markets:
            self._markets[hour] = Market(
                prices_usdt={a.symbol: self.price(a.symbol, hour) for a in self.assets},
                ladders={a.symbol: a.ladder for a in self.assets},
                maintenance_brackets={a.symbol: MAINTENANCE_BRACKETS_DEFAULT for a in self.assets},
            )
        return self._markets[hour]
