"""A margin account's trading and Cross Margin modes: settled trades and mode switches.

A mixin of MarginAccount (ledger/domain/account.py), kept apart so each module holds one topic.
"""

from decimal import Decimal
from typing import Any

from ledger.domain.account_kinds import AccountKind, Mode
from ledger.domain.account_state import AccountState
from ledger.domain.base import LedgerAggregate, Stamp


class Trading(AccountState):
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

        def apply(self, account: AccountState) -> None:
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

        def apply(self, account: AccountState) -> None:
            assert account.mode is self.from_mode, (account.mode, self)
            account.mode = self.to_mode
            if not self.is_forced:
                account.mode_switched_at.append(self.effective_at)

    class ModeSwitchRejected(LedgerAggregate.Event):
        to_mode: Mode
        reason: str
        decision: dict[str, Any]

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
