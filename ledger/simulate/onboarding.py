"""Actions that open and set up accounts: deposits, verifications, quotas, modes, top-up."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from ledger.money import quantize_down
from ledger.params import QUOTE_ASSET
from ledger.simulate.accounts import Account
from ledger.simulate.base import RISK_ADMIN
from ledger.simulate.model import ModelLayer


class OnboardingActions(ModelLayer):
    """Each action emits its commands and updates the model."""

    def _deposit(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield self._on(
            "transfer_in", account, hour, minute, asset=account.collateral, quantity=account.deposit
        )
        if not self._credit(account, account.collateral, account.deposit, hour) and minute < 58:
            self._schedule(hour, minute + 2, account.index, "retry")

    def _retry(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Refused by the cap (DOMAIN.md §3's message): a saver takes the quoted maximum when it
        is worth having; anyone else brings USDT instead."""
        asset = self.asset(account.collateral)
        quantity = account.deposit
        if asset.cap is not None and not account.is_isolated:
            quantity = self._cap(account, asset.symbol, account.deposit, hour).quantity_max
        if account.behaviour != "saver" or quantity * self.price(asset.symbol, hour) < 1000:
            value = min(account.deposit * self.price(asset.symbol, hour), Decimal(50_000))
            account.collateral, quantity = QUOTE_ASSET, quantize_down(value, 2)
        yield self._on(
            "transfer_in", account, hour, minute, asset=account.collateral, quantity=quantity
        )
        self._credit(account, account.collateral, quantity, hour)

    def _flag_api(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield self._on(
            "transfer_in",
            account,
            hour,
            minute,
            asset=account.collateral,
            quantity=account.deposit,
            channel="api",
            risk_flagged=True,
        )  # refused: opening_risk_check (DOMAIN.md §2)

    def _flag_client(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        command = self._on(
            "transfer_in",
            account,
            hour,
            minute,
            asset=account.collateral,
            quantity=account.deposit,
            channel="client",
            risk_flagged=True,
        )  # pending facial verification: a first transfer of USDT, which no cap refuses
        account.pending_request_id = command["request_id"]
        yield command

    def _while_pending(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        quantity = quantize_down(account.deposit / 10, 2)
        yield self._on(
            "transfer_in", account, hour, minute, asset=account.collateral, quantity=quantity
        )  # refused: verification_pending

    def _verify_pass(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield from self._verify(account, hour, minute, passed=True)

    def _verify_fail(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield from self._verify(account, hour, minute, passed=False)

    def _verify(
        self, account: Account, hour: int, minute: int, *, passed: bool
    ) -> Iterator[dict[str, Any]]:
        assert account.pending_request_id is not None, account.account_id
        yield self._on(
            "complete_verification",
            account,
            hour,
            minute,
            transfer_request_id=account.pending_request_id,
            passed=passed,
        )
        account.pending_request_id = None
        if passed:
            self._credit(account, account.collateral, account.deposit, hour)

    def _late_flagged(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Only the first transfer is checked (DOMAIN.md §2): a later flag changes nothing."""
        quantity = quantize_down(account.deposit / 5, 2)
        yield self._on(
            "transfer_in",
            account,
            hour,
            minute,
            asset=account.collateral,
            quantity=quantity,
            risk_flagged=True,
        )
        if account.is_open:
            self._credit(account, account.collateral, quantity, hour)

    def _quota(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        quota = Decimal(20_000)
        account.quotas_usdt[account.collateral] = quota
        yield self._on(
            "set_account_quota",
            account,
            hour,
            minute,
            asset=account.collateral,
            fixed_quota_usdt=quota,
            actor=RISK_ADMIN,
        )

    def _pro_profile(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        passed = "pro_no_quiz" not in account.flags
        yield self._by_user("record_pro_quiz", account, hour, minute, passed=passed)
        if "pro_no_terms" not in account.flags:
            yield self._by_user("agree_pro_terms", account, hour, minute)
        supported = "pro_no_jurisdiction" not in account.flags
        yield self._by_user("set_pro_jurisdiction", account, hour, minute, supported=supported)

    def _switch_pro(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        # Certain either way: the account opened with USDT; "pro" users pass every check.
        yield self._by_user("switch_mode", account, hour, minute, to="pro")

    def _switch_5x(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield self._by_user("switch_mode", account, hour, minute, to="classic_5x")

    def _fiddle(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Five switches in a day are allowed, the sixth is refused (DOMAIN.md §6)."""
        for to in ("classic_5x", "classic_3x") * 3:
            yield self._by_user("switch_mode", account, hour, minute, to=to)

    def _cooling(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        yield self._by_user("start_cooling_off", account, hour, minute, period="1d")

    def _admin_disable(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        account.flags.add("borrowing_disabled")
        yield self._on(
            "admin_set_borrowing",
            account,
            hour,
            minute,
            enabled=False,
            note="New account under risk review",
            actor=RISK_ADMIN,
        )

    def _auto_top_up(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        account.top_up_asset = account.top_up_choice
        yield self._on(
            "set_auto_top_up", account, hour, minute, enabled=True, asset=account.top_up_asset
        )
