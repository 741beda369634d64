"""AssetPool: the platform total T of one cap-eligible asset, saved with the account it changes.

DOMAIN.md §3 makes the cap a platform-wide invariant across accounts, so the write side decides
against this aggregate (a consistent T, optimistic versions), never against a read model.
"""

from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger.domain.base import LedgerAggregate, Stamp, ledger_id
from ledger.params import CapParams


class AssetPool(LedgerAggregate):
    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        asset: str
        platform_total: Decimal  # T: gross holdings in all cross and portfolio accounts
        cap_params: CapParams | None  # None until an upper limit is set: tracked, not limited
        price_usdt: Decimal | None  # the asset's index price, noted here by every mark

    class SnapshotState(LedgerAggregate.SnapshotState):  # the state above, in snapshots
        asset: str
        platform_total: Decimal
        cap_params: CapParams | None
        price_usdt: Decimal | None

    @staticmethod
    def create_id(asset: str) -> UUID:
        return ledger_id(f"pool:{asset}")

    class Opened(LedgerAggregate.Created):
        asset: str

        def apply(self, pool: "AssetPool") -> None:
            pool.asset = self.asset
            pool.platform_total = Decimal(0)
            pool.cap_params = None
            pool.price_usdt = None

    class CapSet(LedgerAggregate.Event):
        cap_params: CapParams

        def apply(self, pool: "AssetPool") -> None:
            pool.cap_params = self.cap_params

    class PriceNoted(LedgerAggregate.Event):
        """The asset's new index price, noted on the pool in the same transaction as the mark.

        A cap decision reads T and the price from this one aggregate: a mark committed while a
        transfer was being decided is a version conflict, and the transfer decides again.
        """

        price_usdt: Decimal

        def apply(self, pool: "AssetPool") -> None:
            pool.price_usdt = self.price_usdt

    class TotalIncreased(LedgerAggregate.Event):
        account_id: str
        movement: str  # what moved it: "transfer_in", later trades, top-ups ...
        quantity: Decimal
        platform_total_after: Decimal
        decision: dict[str, Any] | None

        def apply(self, pool: "AssetPool") -> None:
            pool.platform_total += self.quantity
            assert pool.platform_total == self.platform_total_after, (pool.platform_total, self)

    class TotalDecreased(LedgerAggregate.Event):
        account_id: str
        movement: str
        quantity: Decimal
        platform_total_after: Decimal
        decision: dict[str, Any] | None

        def apply(self, pool: "AssetPool") -> None:
            pool.platform_total -= self.quantity
            assert pool.platform_total >= 0, pool.platform_total
            assert pool.platform_total == self.platform_total_after, (pool.platform_total, self)

    class TransferInRefused(LedgerAggregate.Event):
        """A refusal is recorded on the pool too: it was decided against this T (post-mortems)."""

        account_id: str
        quantity_requested: Decimal
        decision: dict[str, Any]

    @classmethod
    def open(cls, *, asset: str, stamp: Stamp) -> "AssetPool":
        return cls._create(cls.Opened, id=cls.create_id(asset), asset=asset, **stamp.fields())

    def set_cap(self, *, cap_params: CapParams, stamp: Stamp) -> None:
        assert cap_params.upper_limit > 0, cap_params
        self.trigger_event(self.CapSet, cap_params=cap_params, **stamp.fields())

    def note_price(self, *, price_usdt: Decimal, stamp: Stamp) -> None:
        assert price_usdt > 0, price_usdt
        self.trigger_event(self.PriceNoted, price_usdt=price_usdt, **stamp.fields())

    def increase(
        self,
        *,
        account_id: str,
        movement: str,
        quantity: Decimal,
        decision: dict[str, Any] | None,
        stamp: Stamp,
    ) -> None:
        assert quantity > 0, quantity
        self.trigger_event(
            self.TotalIncreased,
            account_id=account_id,
            movement=movement,
            quantity=quantity,
            platform_total_after=self.platform_total + quantity,
            decision=decision,
            **stamp.fields(),
        )

    def decrease(
        self,
        *,
        account_id: str,
        movement: str,
        quantity: Decimal,
        decision: dict[str, Any] | None,
        stamp: Stamp,
    ) -> None:
        assert 0 < quantity <= self.platform_total, (quantity, self.platform_total)
        self.trigger_event(
            self.TotalDecreased,
            account_id=account_id,
            movement=movement,
            quantity=quantity,
            platform_total_after=self.platform_total - quantity,
            decision=decision,
            **stamp.fields(),
        )

    def refuse_transfer_in(
        self,
        *,
        account_id: str,
        quantity_requested: Decimal,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        self.trigger_event(
            self.TransferInRefused,
            account_id=account_id,
            quantity_requested=quantity_requested,
            decision=decision,
            **stamp.fields(),
        )
