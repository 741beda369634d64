"""InsuranceFund: covers liquidation deficits (DOMAIN.md §7); its own entity, balance in USDT."""

from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from ledger.domain.base import LedgerAggregate, Stamp, ledger_id


class InsuranceFund(LedgerAggregate):
    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        balance_usdt: Decimal

    class SnapshotState(LedgerAggregate.SnapshotState):  # the state above, in snapshots
        balance_usdt: Decimal

    @staticmethod
    def create_id() -> UUID:
        return ledger_id("insurance-fund")

    class Established(LedgerAggregate.Created):
        def apply(self, fund: "InsuranceFund") -> None:
            fund.balance_usdt = Decimal(0)

    class Funded(LedgerAggregate.Event):
        source: str  # "admin" or "liquidation_fee"
        account_id: str | None  # the liquidated account a fee came from
        amount_usdt: Decimal
        balance_after_usdt: Decimal

        def apply(self, fund: "InsuranceFund") -> None:
            fund.balance_usdt += self.amount_usdt
            assert fund.balance_usdt == self.balance_after_usdt, self

    class DeficitCovered(LedgerAggregate.Event):
        """A liquidation's deficit: what the fund paid, and what it could not (never hidden)."""

        account_id: str
        deficit_usdt: Decimal
        covered_usdt: Decimal
        uncovered_usdt: Decimal
        balance_after_usdt: Decimal

        def apply(self, fund: "InsuranceFund") -> None:
            fund.balance_usdt -= self.covered_usdt
            assert fund.balance_usdt == self.balance_after_usdt >= 0, self

    @classmethod
    def establish(cls, *, stamp: Stamp) -> "InsuranceFund":
        return cls._create(cls.Established, id=cls.create_id(), **stamp.fields())

    def fund(
        self, *, source: str, account_id: str | None, amount_usdt: Decimal, stamp: Stamp
    ) -> None:
        assert amount_usdt > 0, amount_usdt
        self.trigger_event(
            self.Funded,
            source=source,
            account_id=account_id,
            amount_usdt=amount_usdt,
            balance_after_usdt=self.balance_usdt + amount_usdt,
            **stamp.fields(),
        )

    def cover_deficit(self, *, account_id: str, deficit_usdt: Decimal, stamp: Stamp) -> None:
        assert deficit_usdt > 0, deficit_usdt
        covered = min(deficit_usdt, self.balance_usdt)
        self.trigger_event(
            self.DeficitCovered,
            account_id=account_id,
            deficit_usdt=deficit_usdt,
            covered_usdt=covered,
            uncovered_usdt=deficit_usdt - covered,
            balance_after_usdt=self.balance_usdt - covered,
            **stamp.fields(),
        )
