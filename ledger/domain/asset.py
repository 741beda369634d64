"""Asset (listing, index price marks) and AssetCatalog (which assets are listed)."""

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from ledger.domain.base import LedgerAggregate, Stamp, ledger_id
from ledger.params import QUOTE_ASSET, BorrowTerms, CollateralBracket, MaintenanceBracket
from ledger.rules.valuation import Market


class Asset(LedgerAggregate):
    """One listed asset: its collateral rank and ladder, and its index price marks as events."""

    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        symbol: str
        collateral_rank: int
        collateral_ladder: tuple[CollateralBracket, ...]
        quantity_decimals: int
        capped_ranks: tuple[int, ...]
        price_usdt: Decimal | None
        borrow_terms: BorrowTerms | None  # None: not borrowable until terms are set
        maintenance_brackets: tuple[MaintenanceBracket, ...] | None  # None: the platform default

    class SnapshotState(LedgerAggregate.SnapshotState):  # the state above, in snapshots
        symbol: str
        collateral_rank: int
        collateral_ladder: tuple[CollateralBracket, ...]
        quantity_decimals: int
        capped_ranks: tuple[int, ...]
        price_usdt: Decimal | None
        borrow_terms: BorrowTerms | None
        maintenance_brackets: tuple[MaintenanceBracket, ...] | None

    @staticmethod
    def create_id(symbol: str) -> UUID:
        return ledger_id(f"asset:{symbol}")

    class Listed(LedgerAggregate.Created):
        symbol: str
        collateral_rank: int
        collateral_ladder: tuple[CollateralBracket, ...]
        quantity_decimals: int
        capped_ranks: tuple[int, ...]  # DOMAIN.md §3's rank set, recorded as in force at listing

        def apply(self, asset: "Asset") -> None:
            asset.symbol = self.symbol
            asset.collateral_rank = self.collateral_rank
            asset.collateral_ladder = self.collateral_ladder
            asset.quantity_decimals = self.quantity_decimals
            asset.capped_ranks = self.capped_ranks
            asset.price_usdt = None
            asset.borrow_terms = None
            asset.maintenance_brackets = None

    class PriceMarked(LedgerAggregate.Event):
        price_usdt: Decimal

        def apply(self, asset: "Asset") -> None:
            asset.price_usdt = self.price_usdt

    class BorrowTermsSet(LedgerAggregate.Event):
        borrow_terms: BorrowTerms

        def apply(self, asset: "Asset") -> None:
            asset.borrow_terms = self.borrow_terms

    class MaintenanceBracketsSet(LedgerAggregate.Event):
        maintenance_brackets: tuple[MaintenanceBracket, ...]

        def apply(self, asset: "Asset") -> None:
            asset.maintenance_brackets = self.maintenance_brackets

    @classmethod
    def list(
        cls,
        *,
        symbol: str,
        collateral_rank: int,
        collateral_ladder: tuple[CollateralBracket, ...],
        quantity_decimals: int,
        capped_ranks: tuple[int, ...],
        stamp: Stamp,
    ) -> "Asset":
        assert 1 <= collateral_rank <= 10, collateral_rank
        assert collateral_ladder and collateral_ladder[-1].up_to_usdt is None, collateral_ladder
        return cls._create(
            cls.Listed,
            id=cls.create_id(symbol),
            symbol=symbol,
            collateral_rank=collateral_rank,
            collateral_ladder=collateral_ladder,
            quantity_decimals=quantity_decimals,
            capped_ranks=capped_ranks,
            **stamp.fields(),
        )

    @property
    def is_cap_eligible(self) -> bool:
        """Whether the max collateral rule applies to this asset's rank (DOMAIN.md §3)."""
        return self.collateral_rank in self.capped_ranks

    def mark_price(self, *, price_usdt: Decimal, stamp: Stamp) -> None:
        assert price_usdt > 0, price_usdt
        self.trigger_event(self.PriceMarked, price_usdt=price_usdt, **stamp.fields())

    def set_borrow_terms(self, *, borrow_terms: BorrowTerms, stamp: Stamp) -> None:
        assert borrow_terms.hourly_interest_rate >= 0, borrow_terms
        self.trigger_event(self.BorrowTermsSet, borrow_terms=borrow_terms, **stamp.fields())

    def set_maintenance_brackets(
        self, *, maintenance_brackets: tuple[MaintenanceBracket, ...], stamp: Stamp
    ) -> None:
        assert maintenance_brackets and maintenance_brackets[-1].up_to_usdt is None
        self.trigger_event(
            self.MaintenanceBracketsSet, maintenance_brackets=maintenance_brackets, **stamp.fields()
        )

    @property
    def index_price_usdt(self) -> Decimal | None:
        """The price in force; the quote asset (USDT) is always worth 1."""
        return Decimal(1) if self.symbol == QUOTE_ASSET else self.price_usdt

    @property
    def is_borrowable(self) -> bool:
        return self.borrow_terms is not None and self.borrow_terms.borrowable


class AssetCatalog(LedgerAggregate):
    """The set of listed assets, so that queries and pair names can enumerate them."""

    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        symbols: list[str]

    class SnapshotState(LedgerAggregate.SnapshotState):  # the state above, in snapshots
        symbols: list[str]

    @staticmethod
    def create_id() -> UUID:
        return ledger_id("asset-catalog")

    class Started(LedgerAggregate.Created):
        def apply(self, catalog: "AssetCatalog") -> None:
            catalog.symbols = []

    class AssetAdded(LedgerAggregate.Event):
        symbol: str

        def apply(self, catalog: "AssetCatalog") -> None:
            catalog.symbols.append(self.symbol)

    @classmethod
    def start(cls, *, stamp: Stamp) -> "AssetCatalog":
        return cls._create(cls.Started, id=cls.create_id(), **stamp.fields())

    def add(self, *, symbol: str, stamp: Stamp) -> None:
        assert symbol not in self.symbols, symbol
        self.trigger_event(self.AssetAdded, symbol=symbol, **stamp.fields())

    def split_pair(self, pair: str) -> tuple[str, str] | None:
        """The two listed assets a pair is made of ("BTCUSDT": BTC, USDT), if exactly one way."""
        listed = set(self.symbols)
        splits = [
            (pair[:i], pair[i:])
            for i in range(2, len(pair) - 1)
            if pair[:i] in listed and pair[i:] in listed
        ]
        return splits[0] if len(splits) == 1 else None


class Unpriced(LookupError):
    """An asset a valuation needs has no index price yet."""

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.symbol = symbol


def market_of(
    assets: Iterable[Asset], maintenance_brackets_default: tuple[MaintenanceBracket, ...]
) -> Market:
    """The prices, haircut ladders and maintenance brackets of these assets, as they stand."""
    prices, ladders, brackets = {}, {}, {}
    for asset in assets:
        price = asset.index_price_usdt
        if price is None:
            raise Unpriced(asset.symbol)
        prices[asset.symbol] = price
        ladders[asset.symbol] = asset.collateral_ladder
        brackets[asset.symbol] = asset.maintenance_brackets or maintenance_brackets_default
    return Market(prices_usdt=prices, ladders=ladders, maintenance_brackets=brackets)
