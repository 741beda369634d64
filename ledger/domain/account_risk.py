"""A margin account's worst hours: margin calls, auto top-ups and liquidation (DOMAIN.md §7).

A mixin of MarginAccount (ledger/domain/account.py), kept apart so each module holds one topic.
"""

from decimal import Decimal
from typing import Any

from ledger.domain.account_state import AccountState
from ledger.domain.base import LedgerAggregate, Stamp
from ledger.params import QUOTE_ASSET


class Risk(AccountState):
    class AutoTopUpSet(LedgerAggregate.Event):
        asset: str | None  # the asset moved from the spot wallet on a margin call; None: off

        def apply(self, account: AccountState) -> None:
            account.auto_top_up_asset = self.asset

    class MarginCalled(LedgerAggregate.Event):
        decision: dict[str, Any]  # level kind, level, thresholds, prices

        def apply(self, account: AccountState) -> None:
            account.last_margin_call_at = self.effective_at

    class ToppedUp(LedgerAggregate.Event):
        """Collateral moved in from the spot wallet on a margin call, maybe limited by the cap."""

        asset: str
        quantity: Decimal
        holding_after: Decimal
        is_limited: bool  # less than needed: the spot wallet or the cap's q_max was short
        decision: dict[str, Any]

        def apply(self, account: AccountState) -> None:
            account.holdings[self.asset] = account.holding(self.asset) + self.quantity
            assert account.holdings[self.asset] == self.holding_after, self

    class TopUpBlocked(LedgerAggregate.Event):
        asset: str
        reason: str  # "collateral_cap" (band D, q_max 0) or "spot_empty"
        decision: dict[str, Any]

    class Liquidated(LedgerAggregate.Event):
        """Every holding sold, every debt repaid, the remainder left in USDT (DOMAIN.md §7)."""

        sold: dict[str, Decimal]  # every holding, at the prices in the decision
        repaid_principal: dict[str, Decimal]  # every debt cleared, so readers need no state
        repaid_interest: dict[str, Decimal]
        remainder_usdt: Decimal
        deficit_usdt: Decimal
        decision: dict[str, Any]

        def apply(self, account: AccountState) -> None:
            assert self.sold == {a: q for a, q in account.holdings.items() if q}, self
            assert self.repaid_principal == {a: q for a, q in account.liabilities.items() if q}
            assert self.repaid_interest == {a: q for a, q in account.interest.items() if q}
            account.holdings = {QUOTE_ASSET: self.remainder_usdt} if self.remainder_usdt else {}
            account.liabilities = {}
            account.interest = {}
            account.interest_accrued_through = {}

    def set_auto_top_up(self, *, asset: str | None, stamp: Stamp) -> None:
        self.trigger_event(self.AutoTopUpSet, asset=asset, **stamp.fields())

    def margin_call(self, *, decision: dict[str, Any], stamp: Stamp) -> None:
        assert self.is_open, self.status
        self.trigger_event(self.MarginCalled, decision=decision, **stamp.fields())

    def top_up(
        self,
        *,
        asset: str,
        quantity: Decimal,
        is_limited: bool,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        assert quantity > 0, quantity
        self._assert_asset_allowed(asset)
        self.trigger_event(
            self.ToppedUp,
            asset=asset,
            quantity=quantity,
            holding_after=self.holding(asset) + quantity,
            is_limited=is_limited,
            decision=decision,
            **stamp.fields(),
        )

    def block_top_up(
        self, *, asset: str, reason: str, decision: dict[str, Any], stamp: Stamp
    ) -> None:
        self.trigger_event(
            self.TopUpBlocked, asset=asset, reason=reason, decision=decision, **stamp.fields()
        )

    def liquidate(
        self,
        *,
        sold: dict[str, Decimal],
        remainder_usdt: Decimal,
        deficit_usdt: Decimal,
        decision: dict[str, Any],
        stamp: Stamp,
    ) -> None:
        assert self.is_open, self.status
        assert remainder_usdt >= 0 and deficit_usdt >= 0, (remainder_usdt, deficit_usdt)
        assert not (remainder_usdt and deficit_usdt), (remainder_usdt, deficit_usdt)
        self.trigger_event(
            self.Liquidated,
            sold=sold,
            repaid_principal={a: q for a, q in sorted(self.liabilities.items()) if q},
            repaid_interest={a: q for a, q in sorted(self.interest.items()) if q},
            remainder_usdt=remainder_usdt,
            deficit_usdt=deficit_usdt,
            decision=decision,
            **stamp.fields(),
        )
