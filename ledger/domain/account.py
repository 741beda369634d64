"""MarginAccount: one user's cross, portfolio or isolated-pair account (DOMAIN.md §1, §2)."""

from decimal import Decimal
from typing import Any
from uuid import UUID

from ledger.domain.account_kinds import AccountKind, AccountStatus, Mode, account_kind
from ledger.domain.account_lending import Lending
from ledger.domain.account_risk import Risk
from ledger.domain.account_trading import Trading
from ledger.domain.base import LedgerAggregate, Stamp, ledger_id


class MarginAccount(Lending, Trading, Risk):
    @staticmethod
    def create_id(user: str, account: str) -> UUID:
        return ledger_id(f"account:{user}:{account}")

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
            account.last_margin_call_at = None
            account.auto_top_up_asset = None

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
        self._refuse(self.TransferInRejected, asset, quantity_requested, reason, decision, stamp)

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
        self._refuse(self.TransferOutRejected, asset, quantity_requested, reason, decision, stamp)

    def override_quota(self, *, asset: str, fixed_quota_usdt: Decimal, stamp: Stamp) -> None:
        assert self.counts_in_platform_total, self.kind
        assert fixed_quota_usdt > 0, fixed_quota_usdt
        self.trigger_event(
            self.QuotaOverridden, asset=asset, fixed_quota_usdt=fixed_quota_usdt, **stamp.fields()
        )


__all__ = ["AccountKind", "AccountStatus", "MarginAccount", "Mode", "account_kind"]
