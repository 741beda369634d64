"""A margin account's lending: borrows, hourly interest, repays, the admin's borrowing switch.

A mixin of MarginAccount (ledger/domain/account.py), kept apart so each module holds one topic.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.domain.account_state import AccountState
from ledger.domain.base import LedgerAggregate, Stamp


class Lending(AccountState):
    class Borrowed(LedgerAggregate.Event):
        asset: str
        quantity: Decimal
        is_auto: bool  # the shortfall of a trade (auto-borrow) rather than a manual borrow
        first_hour: datetime  # the clock hour charged at the borrow
        first_hour_interest: Decimal
        holding_after: Decimal
        liability_after: Decimal
        decision: dict[str, Any]

        def apply(self, account: AccountState) -> None:
            asset = self.asset
            account.holdings[asset] = account.holding(asset) + self.quantity
            account.liabilities[asset] = account.liability(asset) + self.quantity
            account.interest[asset] = account.interest_owed(asset) + self.first_hour_interest
            account.interest_accrued_through.setdefault(asset, self.first_hour)
            assert account.holdings[asset] == self.holding_after, self
            assert account.liabilities[asset] == self.liability_after, self

    class BorrowRejected(LedgerAggregate.Event):
        asset: str
        quantity_requested: Decimal
        reason: str
        decision: dict[str, Any]

    class InterestCharged(LedgerAggregate.Event):
        """One loan, one clock hour (DOMAIN.md §5): the accrual's idempotency unit."""

        asset: str
        hour: datetime
        principal: Decimal
        hourly_interest_rate: Decimal
        discount_ratio: Decimal
        quantity: Decimal
        interest_after: Decimal

        def apply(self, account: AccountState) -> None:
            assert self.hour > account.interest_accrued_through[self.asset], self
            account.interest[self.asset] = account.interest_owed(self.asset) + self.quantity
            account.interest_accrued_through[self.asset] = self.hour
            assert account.interest[self.asset] == self.interest_after, self

    class Repaid(LedgerAggregate.Event):
        asset: str
        quantity: Decimal
        interest_paid: Decimal
        principal_paid: Decimal
        is_auto: bool  # from a trade's proceeds (auto-repay) rather than a manual repay
        holding_after: Decimal
        liability_after: Decimal
        interest_after: Decimal
        decision: dict[str, Any]

        def apply(self, account: AccountState) -> None:
            asset = self.asset
            account.holdings[asset] = account.holding(asset) - self.quantity
            account.interest[asset] = account.interest_owed(asset) - self.interest_paid
            account.liabilities[asset] = account.liability(asset) - self.principal_paid
            if account.liabilities[asset] == 0:
                # No principal, no hourly charge: the next borrow starts a new loan.
                account.interest_accrued_through.pop(asset, None)
            assert account.holdings[asset] == self.holding_after >= 0, self
            assert account.liabilities[asset] == self.liability_after >= 0, self
            assert account.interest[asset] == self.interest_after >= 0, self

    class RepayRejected(LedgerAggregate.Event):
        asset: str
        quantity_requested: Decimal
        reason: str
        decision: dict[str, Any]

    class BorrowingSet(LedgerAggregate.Event):
        """An administrator enabled or disabled borrowing for this account."""

        enabled: bool
        note: str

        def apply(self, account: AccountState) -> None:
            account.is_borrowing_enabled = self.enabled

    def borrow(
        self,
        *,
        asset: str,
        quantity: Decimal,
        is_auto: bool,
        first_hour: datetime,
        first_hour_interest: Decimal,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        assert self.is_open and self.is_borrowing_enabled, (self.status, self.is_borrowing_enabled)
        assert quantity > 0 and first_hour_interest >= 0, (quantity, first_hour_interest)
        self._assert_asset_allowed(asset)
        self.trigger_event(
            self.Borrowed,
            asset=asset,
            quantity=quantity,
            is_auto=is_auto,
            first_hour=first_hour,
            first_hour_interest=first_hour_interest,
            holding_after=self.holding(asset) + quantity,
            liability_after=self.liability(asset) + quantity,
            decision=decision,
            **stamp.fields(),
        )

    def reject_borrow(
        self,
        *,
        asset: str,
        quantity_requested: Decimal,
        reason: str,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        self._refuse(self.BorrowRejected, asset, quantity_requested, reason, decision, stamp)

    def charge_interest(
        self,
        *,
        asset: str,
        hour: datetime,
        principal: Decimal,
        hourly_interest_rate: Decimal,
        discount_ratio: Decimal,
        quantity: Decimal,
        stamp: Stamp,
    ) -> None:
        assert principal == self.liability(asset) > 0, (principal, self.liability(asset))
        assert hour > self.interest_accrued_through[asset], (hour, asset)
        self.trigger_event(
            self.InterestCharged,
            asset=asset,
            hour=hour,
            principal=principal,
            hourly_interest_rate=hourly_interest_rate,
            discount_ratio=discount_ratio,
            quantity=quantity,
            interest_after=self.interest_owed(asset) + quantity,
            **stamp.fields(),
        )

    def repay(
        self,
        *,
        asset: str,
        interest_paid: Decimal,
        principal_paid: Decimal,
        is_auto: bool,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        quantity = interest_paid + principal_paid
        assert quantity > 0, quantity
        assert 0 <= interest_paid <= self.interest_owed(asset), (interest_paid, asset)
        assert 0 <= principal_paid <= self.liability(asset), (principal_paid, asset)
        assert quantity <= self.holding(asset), (quantity, self.holding(asset))
        self.trigger_event(
            self.Repaid,
            asset=asset,
            quantity=quantity,
            interest_paid=interest_paid,
            principal_paid=principal_paid,
            is_auto=is_auto,
            holding_after=self.holding(asset) - quantity,
            liability_after=self.liability(asset) - principal_paid,
            interest_after=self.interest_owed(asset) - interest_paid,
            decision=decision,
            **stamp.fields(),
        )

    def reject_repay(
        self,
        *,
        asset: str,
        quantity_requested: Decimal,
        reason: str,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        self._refuse(self.RepayRejected, asset, quantity_requested, reason, decision, stamp)

    def set_borrowing(self, *, enabled: bool, note: str, stamp: Stamp) -> None:
        self.trigger_event(self.BorrowingSet, enabled=enabled, note=note, **stamp.fields())
