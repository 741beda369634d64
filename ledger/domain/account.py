"""MarginAccount: one user's cross, portfolio or isolated-pair account (DOMAIN.md §1, §2)."""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger.domain.base import LedgerAggregate, Stamp, ledger_id
from ledger.rules.valuation import Position


class AccountKind(StrEnum):
    CROSS = "cross"
    PORTFOLIO = "portfolio"
    ISOLATED = "isolated"


class AccountStatus(StrEnum):
    NOT_OPEN = "not_open"
    PENDING_VERIFICATION = "pending_verification"
    OPEN = "open"


class Mode(StrEnum):
    CLASSIC_3X = "classic_3x"
    CLASSIC_5X = "classic_5x"
    PRO = "pro"


def account_kind(account: str) -> AccountKind:
    return AccountKind(account.split(":", 1)[0])


class MarginAccount(LedgerAggregate):
    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        user: str
        account: str  # "cross", "portfolio" or "isolated:<PAIR>"
        kind: AccountKind
        pair_assets: tuple[str, ...]  # isolated accounts: the pair's two assets; else empty
        status: AccountStatus
        mode: Mode | None  # cross accounts only
        holdings: dict[str, Decimal]
        liabilities: dict[str, Decimal]
        interest: dict[str, Decimal]
        fixed_quota_usdt_overrides: dict[str, Decimal]
        pending_transfer: dict[str, Any] | None  # the first transfer awaiting facial verification
        is_borrowing_enabled: bool  # an administrator may disable it (DOMAIN.md §6)
        interest_accrued_through: dict[str, datetime]  # per loan: the last clock hour charged
        mode_switched_at: list[datetime]  # business times of mode switches (the daily limit)

    @staticmethod
    def create_id(user: str, account: str) -> UUID:
        return ledger_id(f"account:{user}:{account}")

    @property
    def account_id(self) -> str:
        return f"{self.user}:{self.account}"

    @property
    def counts_in_platform_total(self) -> bool:
        """Cross and portfolio accounts count in T and fall under the cap; isolated ones don't."""
        return self.kind is not AccountKind.ISOLATED

    @property
    def is_open(self) -> bool:
        return self.status is AccountStatus.OPEN

    @property
    def has_liabilities(self) -> bool:
        return any(self.liabilities.values()) or any(self.interest.values())

    def holding(self, asset: str) -> Decimal:
        return self.holdings.get(asset, Decimal(0))

    def liability(self, asset: str) -> Decimal:
        return self.liabilities.get(asset, Decimal(0))

    def interest_owed(self, asset: str) -> Decimal:
        return self.interest.get(asset, Decimal(0))

    def position(self) -> Position:
        return Position(
            holdings=dict(self.holdings),
            liabilities=dict(self.liabilities),
            interest=dict(self.interest),
        )

    def open_loans(self) -> dict[str, Decimal]:
        """Borrowed principal per asset, where some is outstanding."""
        return {asset: q for asset, q in sorted(self.liabilities.items()) if q > 0}

    class Registered(LedgerAggregate.Created):
        """The ledger first hears of the account; it is not open until a transfer-in succeeds."""

        user: str
        account: str
        kind: AccountKind
        pair_assets: tuple[str, ...]

        def apply(self, account: "MarginAccount") -> None:
            account.user = self.user
            account.account = self.account
            account.kind = self.kind
            account.pair_assets = self.pair_assets
            account.status = AccountStatus.NOT_OPEN
            account.mode = None
            account.holdings = {}
            account.liabilities = {}
            account.interest = {}
            account.fixed_quota_usdt_overrides = {}
            account.pending_transfer = None
            account.is_borrowing_enabled = True
            account.interest_accrued_through = {}
            account.mode_switched_at = []

    class Opened(LedgerAggregate.Event):
        mode: Mode | None
        transfer_request_id: str

        def apply(self, account: "MarginAccount") -> None:
            account.status = AccountStatus.OPEN
            account.mode = self.mode
            account.pending_transfer = None

    class TransferredIn(LedgerAggregate.Event):
        asset: str
        quantity: Decimal
        holding_after: Decimal
        decision: dict[str, Any]

        def apply(self, account: "MarginAccount") -> None:
            account.holdings[self.asset] = account.holding(self.asset) + self.quantity
            assert account.holdings[self.asset] == self.holding_after, self

    class TransferInRejected(LedgerAggregate.Event):
        asset: str
        quantity_requested: Decimal
        reason: str
        decision: dict[str, Any]

    class TransferPending(LedgerAggregate.Event):
        """A flagged first transfer through the client: it waits for facial verification."""

        transfer_request_id: str
        asset: str
        quantity: Decimal
        decision: dict[str, Any]

        def apply(self, account: "MarginAccount") -> None:
            account.status = AccountStatus.PENDING_VERIFICATION
            account.pending_transfer = {
                "transfer_request_id": self.transfer_request_id,
                "asset": self.asset,
                "quantity": self.quantity,
            }

    class VerificationCompleted(LedgerAggregate.Event):
        transfer_request_id: str
        passed: bool

    class TransferCancelled(LedgerAggregate.Event):
        transfer_request_id: str
        reason: str

        def apply(self, account: "MarginAccount") -> None:
            account.status = AccountStatus.NOT_OPEN
            account.pending_transfer = None

    class TransferredOut(LedgerAggregate.Event):
        asset: str
        quantity: Decimal
        holding_after: Decimal
        decision: dict[str, Any]

        def apply(self, account: "MarginAccount") -> None:
            account.holdings[self.asset] = account.holding(self.asset) - self.quantity
            assert account.holdings[self.asset] >= 0, self
            assert account.holdings[self.asset] == self.holding_after, self

    class TransferOutRejected(LedgerAggregate.Event):
        asset: str
        quantity_requested: Decimal
        reason: str
        decision: dict[str, Any]

    class QuotaOverridden(LedgerAggregate.Event):
        asset: str
        fixed_quota_usdt: Decimal

        def apply(self, account: "MarginAccount") -> None:
            account.fixed_quota_usdt_overrides[self.asset] = self.fixed_quota_usdt

    class Borrowed(LedgerAggregate.Event):
        asset: str
        quantity: Decimal
        is_auto: bool  # the shortfall of a trade (auto-borrow) rather than a manual borrow
        first_hour: datetime  # the clock hour charged at the borrow
        first_hour_interest: Decimal
        holding_after: Decimal
        liability_after: Decimal
        decision: dict[str, Any]

        def apply(self, account: "MarginAccount") -> None:
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

        def apply(self, account: "MarginAccount") -> None:
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

        def apply(self, account: "MarginAccount") -> None:
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

        def apply(self, account: "MarginAccount") -> None:
            account.is_borrowing_enabled = self.enabled

    class TradeSettled(LedgerAggregate.Event):
        """A trade the matching engine settled: sell, buy and fee (auto-borrow and auto-repay
        are their own Borrowed and Repaid events, around this one)."""

        sell_asset: str
        sell_quantity: Decimal
        buy_asset: str
        buy_quantity: Decimal
        fee_asset: str
        fee_quantity: Decimal
        decision: dict[str, Any]

        def apply(self, account: "MarginAccount") -> None:
            holdings = account.holdings
            holdings[self.sell_asset] = account.holding(self.sell_asset) - self.sell_quantity
            holdings[self.buy_asset] = account.holding(self.buy_asset) + self.buy_quantity
            holdings[self.fee_asset] = account.holding(self.fee_asset) - self.fee_quantity
            assert holdings[self.sell_asset] >= 0 and holdings[self.fee_asset] >= 0, self

    class TradeRejected(LedgerAggregate.Event):
        sell_asset: str
        buy_asset: str
        reason: str
        decision: dict[str, Any]

    class ModeSwitched(LedgerAggregate.Event):
        from_mode: Mode
        to_mode: Mode
        is_forced: bool  # by an administrator: not the user's switch, not counted per day
        note: str | None
        decision: dict[str, Any]

        def apply(self, account: "MarginAccount") -> None:
            assert account.mode is self.from_mode, (account.mode, self)
            account.mode = self.to_mode
            if not self.is_forced:
                account.mode_switched_at.append(self.effective_at)

    class ModeSwitchRejected(LedgerAggregate.Event):
        to_mode: Mode
        reason: str
        decision: dict[str, Any]

    @classmethod
    def register(
        cls, *, user: str, account: str, pair_assets: tuple[str, ...], stamp: Stamp
    ) -> "MarginAccount":
        kind = account_kind(account)
        if kind is AccountKind.ISOLATED:
            assert len(pair_assets) == 2, pair_assets
        else:
            assert not pair_assets, pair_assets
        return cls._create(
            cls.Registered,
            id=cls.create_id(user, account),
            user=user,
            account=account,
            kind=kind,
            pair_assets=pair_assets,
            **stamp.fields(),
        )

    def open(self, *, transfer_request_id: str, stamp: Stamp) -> None:
        assert not self.is_open, self.status
        # Interpretation (DOMAIN.md §6): a cross account opens in Classic 3x.
        mode = Mode.CLASSIC_3X if self.kind is AccountKind.CROSS else None
        self.trigger_event(
            self.Opened, mode=mode, transfer_request_id=transfer_request_id, **stamp.fields()
        )

    def transfer_in(
        self, *, asset: str, quantity: Decimal, decision: dict[str, Any], stamp: Stamp
    ) -> None:
        assert self.is_open, self.status
        assert quantity > 0, quantity
        self._assert_asset_allowed(asset)
        self.trigger_event(
            self.TransferredIn,
            asset=asset,
            quantity=quantity,
            holding_after=self.holding(asset) + quantity,
            decision=decision,
            **stamp.fields(),
        )

    def reject_transfer_in(
        self,
        *,
        asset: str,
        quantity_requested: Decimal,
        reason: str,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        self.trigger_event(
            self.TransferInRejected,
            asset=asset,
            quantity_requested=quantity_requested,
            reason=reason,
            decision=decision,
            **stamp.fields(),
        )

    def hold_for_verification(
        self,
        *,
        transfer_request_id: str,
        asset: str,
        quantity: Decimal,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        assert self.status is AccountStatus.NOT_OPEN, self.status
        assert quantity > 0, quantity
        self._assert_asset_allowed(asset)
        self.trigger_event(
            self.TransferPending,
            transfer_request_id=transfer_request_id,
            asset=asset,
            quantity=quantity,
            decision=decision,
            **stamp.fields(),
        )

    def complete_verification(
        self, *, transfer_request_id: str, passed: bool, stamp: Stamp
    ) -> None:
        assert self.pending_transfer is not None, self.status
        assert self.pending_transfer["transfer_request_id"] == transfer_request_id
        self.trigger_event(
            self.VerificationCompleted,
            transfer_request_id=transfer_request_id,
            passed=passed,
            **stamp.fields(),
        )

    def cancel_pending_transfer(self, *, reason: str, stamp: Stamp) -> None:
        assert self.pending_transfer is not None, self.status
        self.trigger_event(
            self.TransferCancelled,
            transfer_request_id=self.pending_transfer["transfer_request_id"],
            reason=reason,
            **stamp.fields(),
        )

    def transfer_out(
        self, *, asset: str, quantity: Decimal, decision: dict[str, Any], stamp: Stamp
    ) -> None:
        assert self.is_open, self.status
        assert 0 < quantity <= self.holding(asset), (quantity, self.holding(asset))
        self.trigger_event(
            self.TransferredOut,
            asset=asset,
            quantity=quantity,
            holding_after=self.holding(asset) - quantity,
            decision=decision,
            **stamp.fields(),
        )

    def reject_transfer_out(
        self,
        *,
        asset: str,
        quantity_requested: Decimal,
        reason: str,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        self.trigger_event(
            self.TransferOutRejected,
            asset=asset,
            quantity_requested=quantity_requested,
            reason=reason,
            decision=decision,
            **stamp.fields(),
        )

    def override_quota(self, *, asset: str, fixed_quota_usdt: Decimal, stamp: Stamp) -> None:
        assert self.counts_in_platform_total, self.kind
        assert fixed_quota_usdt > 0, fixed_quota_usdt
        self.trigger_event(
            self.QuotaOverridden, asset=asset, fixed_quota_usdt=fixed_quota_usdt, **stamp.fields()
        )

    def _assert_asset_allowed(self, asset: str) -> None:
        if self.kind is AccountKind.ISOLATED:
            assert asset in self.pair_assets, (asset, self.pair_assets)

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
        self.trigger_event(
            self.BorrowRejected,
            asset=asset,
            quantity_requested=quantity_requested,
            reason=reason,
            decision=decision,
            **stamp.fields(),
        )

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
        self.trigger_event(
            self.RepayRejected,
            asset=asset,
            quantity_requested=quantity_requested,
            reason=reason,
            decision=decision,
            **stamp.fields(),
        )

    def set_borrowing(self, *, enabled: bool, note: str, stamp: Stamp) -> None:
        self.trigger_event(self.BorrowingSet, enabled=enabled, note=note, **stamp.fields())

    def settle_trade(
        self,
        *,
        sell_asset: str,
        sell_quantity: Decimal,
        buy_asset: str,
        buy_quantity: Decimal,
        fee_asset: str,
        fee_quantity: Decimal,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        assert self.is_open, self.status
        assert sell_quantity <= self.holding(sell_asset), (sell_quantity, sell_asset)
        for asset in (sell_asset, buy_asset, fee_asset):
            self._assert_asset_allowed(asset)
        self.trigger_event(
            self.TradeSettled,
            sell_asset=sell_asset,
            sell_quantity=sell_quantity,
            buy_asset=buy_asset,
            buy_quantity=buy_quantity,
            fee_asset=fee_asset,
            fee_quantity=fee_quantity,
            decision=decision,
            **stamp.fields(),
        )

    def reject_trade(
        self,
        *,
        sell_asset: str,
        buy_asset: str,
        reason: str,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        self.trigger_event(
            self.TradeRejected,
            sell_asset=sell_asset,
            buy_asset=buy_asset,
            reason=reason,
            decision=decision,
            **stamp.fields(),
        )

    def switch_mode(
        self,
        *,
        to_mode: Mode,
        is_forced: bool,
        note: str | None,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        assert self.kind is AccountKind.CROSS and self.is_open, (self.kind, self.status)
        assert self.mode is not None and self.mode is not to_mode, (self.mode, to_mode)
        self.trigger_event(
            self.ModeSwitched,
            from_mode=self.mode,
            to_mode=to_mode,
            is_forced=is_forced,
            note=note,
            decision=decision,
            **stamp.fields(),
        )

    def reject_mode_switch(
        self, *, to_mode: Mode, reason: str, decision: dict[str, Any], stamp: Stamp
    ) -> None:
        self.trigger_event(
            self.ModeSwitchRejected,
            to_mode=to_mode,
            reason=reason,
            decision=decision,
            **stamp.fields(),
        )
