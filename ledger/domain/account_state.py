"""The state every part of a margin account reads: quantities, status, mode, and their helpers."""

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from ledger.domain.account_kinds import AccountKind, AccountStatus, Mode
from ledger.domain.base import LedgerAggregate, Stamp
from ledger.domain.snapshots import InOrder
from ledger.rules.valuation import Position


@with_config(ConfigDict(extra="forbid"))
class PendingTransfer(TypedDict):
    """`AccountState.pending_transfer` as MarginAccount.TransferPending sets it (snapshots)."""

    transfer_request_id: str
    asset: str
    quantity: Decimal


class AccountState(LedgerAggregate):
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
        last_margin_call_at: datetime | None  # at most one margin call per 24 hours
        auto_top_up_asset: str | None  # moved in from the spot wallet on a margin call

    class SnapshotState(LedgerAggregate.SnapshotState):  # the state above, in snapshots
        user: str
        account: str
        kind: AccountKind
        pair_assets: tuple[str, ...]
        status: AccountStatus
        mode: Mode | None
        holdings: InOrder[dict[str, Decimal]]
        liabilities: InOrder[dict[str, Decimal]]
        interest: InOrder[dict[str, Decimal]]
        fixed_quota_usdt_overrides: InOrder[dict[str, Decimal]]
        pending_transfer: PendingTransfer | None
        is_borrowing_enabled: bool
        interest_accrued_through: InOrder[dict[str, datetime]]
        mode_switched_at: list[datetime]
        last_margin_call_at: datetime | None
        auto_top_up_asset: str | None

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

    def _assert_asset_allowed(self, asset: str) -> None:
        if self.kind is AccountKind.ISOLATED:
            assert asset in self.pair_assets, (asset, self.pair_assets)

    def _refuse(
        self,
        event_class: type[LedgerAggregate.Event],
        asset: str,
        quantity_requested: Decimal,
        reason: str,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        """Record a refused request for a quantity of an asset (the *Rejected events)."""
        self.trigger_event(
            event_class,
            asset=asset,
            quantity_requested=quantity_requested,
            reason=reason,
            decision=decision,
            **stamp.fields(),
        )
