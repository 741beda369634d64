"""Actions on positions: borrowing, trades, refused requests, repayment, withdrawals, the dip."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from ledger.money import quantize_down
from ledger.params import MARGIN_THRESHOLDS_DEFAULT, QUOTE_ASSET
from ledger.rules.valuation import LevelKind, value_position
from ledger.simulate.accounts import Account
from ledger.simulate.base import ENGINE, RISK_ADMIN
from ledger.simulate.market import FLAT_NOTIONAL_MAX_USDT, MAJOR_DECIMALS
from ledger.simulate.model import ModelLayer

FEE_RATIO = Decimal("0.001")  # the matching engine's taker fee, paid in the bought asset

# The model charges no interest, so it believes in slightly more USDT than the ledger holds; a
# user taking "all" of it takes this share, and is not refused for the model's rounding.
MODEL_MARGIN = Decimal("0.98")


class TradingActions(ModelLayer):
    """Each action emits its commands and updates the model."""

    def _long(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Borrow USDT and buy the target with it: to the planned level, or by auto-borrow."""
        if not account.is_open or account.is_liquidated:
            return
        target = self.asset(account.target)
        price = target.prices[hour]
        usdt = account.holdings.get(QUOTE_ASSET, Decimal(0))
        value = self._value(account, hour)
        spread = Decimal(self.rng.randint(0, 15)).scaleb(-4)
        keep = (1 - FEE_RATIO) / (1 + spread)
        is_manual = "manual" in account.flags
        spent = Decimal(self.rng.randint(90, 100)) / 100 if is_manual else Decimal(1)
        # level = (value + borrowed - what the trade loses to fee and spread) / borrowed
        borrow = (value - usdt * (1 - keep)) / (account.level - 1 + spent * (1 - keep))
        borrow = quantize_down(min(borrow, FLAT_NOTIONAL_MAX_USDT - value), 2)
        if borrow < 20:
            return
        yield from self._refusals_first(account, hour, minute, value, borrow)
        if "cooling" in account.flags:
            return  # the user's own cooling-off period: no position today
        if is_manual:
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=borrow)
            self._borrow(account, QUOTE_ASSET, borrow, hour)
        sold = quantize_down(usdt + spent * borrow, 2)
        bought = target.units(sold / (price * (1 + spread)))
        fee = target.units(bought * FEE_RATIO)
        yield self._trade(
            account,
            hour,
            minute,
            (QUOTE_ASSET, sold),
            (target.symbol, bought, fee),
            auto_borrow=not is_manual,
        )
        if account.top_up_choice is not None:
            worth = {"spot_ample": 3 * borrow, "spot_limited": borrow / 20}
            spot_value = next((worth[f] for f in account.flags if f in worth), Decimal(0))
            top_up = self.asset(account.top_up_choice)
            account.spot = top_up.units(spot_value / self.price(top_up.symbol, hour))

    def _refusals_first(
        self, account: Account, hour: int, minute: int, value: Decimal, borrow: Decimal
    ) -> Iterator[dict[str, Any]]:
        """The borrows a platform refuses every day, each for its own reason (DOMAIN.md §5)."""
        if "admin_disabled" in account.flags:
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=borrow)
            account.flags.discard("borrowing_disabled")
            yield self._on(
                "admin_set_borrowing",
                account,
                hour,
                minute,
                enabled=True,
                note="Risk review passed",
                actor=RISK_ADMIN,
            )
        if "cooling" in account.flags:
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=borrow)
        target = self.asset(account.target)
        if "borrow_capped" in account.flags and target.cap is not None:  # no borrow terms
            quantity = target.units(Decimal(100) / target.prices[hour]) or Decimal(1)
            yield self._on("borrow", account, hour, minute, asset=target.symbol, quantity=quantity)
        if "tiny_borrow" in account.flags:  # below the minimum borrow of 10 USDT
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=Decimal(5))
        if "overreach" in account.flags:  # past the initial risk ratio: margin_level
            greedy = quantize_down(value / (account.borrow_ratio_min() - 1) * 13 / 10, 2)
            yield self._on("borrow", account, hour, minute, asset=QUOTE_ASSET, quantity=greedy)
            self._borrow(account, QUOTE_ASSET, greedy, hour)

    def _short(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Borrow BTC or ETH and sell it for USDT, to the planned level."""
        if not account.is_open or account.is_liquidated:
            return
        target = self.asset(account.target)
        price = target.prices[hour]
        usdt = account.holdings.get(QUOTE_ASSET, Decimal(0))
        spread = Decimal(self.rng.randint(0, 15)).scaleb(-4)
        keep = (1 - FEE_RATIO) * (1 - spread)
        notional = min(usdt / (account.level - keep), FLAT_NOTIONAL_MAX_USDT - usdt)
        quantity = target.units(notional / price)
        if quantity * price < 20:
            return
        yield self._on("borrow", account, hour, minute, asset=target.symbol, quantity=quantity)
        self._borrow(account, target.symbol, quantity, hour)
        proceeds = quantize_down(quantity * price * (1 - spread), MAJOR_DECIMALS)
        fee = quantize_down(proceeds * FEE_RATIO, MAJOR_DECIMALS)
        yield self._trade(
            account, hour, minute, (target.symbol, quantity), (QUOTE_ASSET, proceeds, fee)
        )

    def _reduce(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """After the crash: repay, de-risk with auto-repay, or take the liquidation's remainder."""
        if not account.is_open:
            return
        usdt = account.holdings.get(QUOTE_ASSET, Decimal(0))
        if account.is_liquidated or not account.has_debt:
            if usdt >= 1 and self.rng.randrange(2):
                quantity = quantize_down(usdt * MODEL_MARGIN, 2)
                yield self._on(
                    "transfer_out", account, hour, minute, asset=QUOTE_ASSET, quantity=quantity
                )
                self._debit(account, QUOTE_ASSET, quantity)
            return
        yield from self._mistakes(account, hour, minute)
        if account.behaviour == "short":
            yield from self._buy_back(account, hour, minute)
            return
        liability = account.liabilities.get(QUOTE_ASSET, Decimal(0))
        quantity = quantize_down(min(usdt * MODEL_MARGIN, liability / 2), 2)
        if usdt >= 20 and quantity > 0 and self.rng.randrange(10) < 4:
            yield self._on("repay", account, hour, minute, asset=QUOTE_ASSET, quantity=quantity)
            self._repay(account, QUOTE_ASSET, quantity)
            return
        target = self.asset(account.target)
        sold = target.units(
            account.holdings.get(target.symbol, Decimal(0)) * self.rng.randint(30, 70) / 100
        )
        if sold <= 0:
            return
        spread = Decimal(self.rng.randint(0, 15)).scaleb(-4)
        proceeds = quantize_down(sold * target.prices[hour] * (1 - spread), MAJOR_DECIMALS)
        fee = quantize_down(proceeds * FEE_RATIO, MAJOR_DECIMALS)
        yield self._trade(
            account,
            hour,
            minute,
            (target.symbol, sold),
            (QUOTE_ASSET, proceeds, fee),
            auto_repay=True,
        )

    def _buy_back(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        target = self.asset(account.target)
        price = target.prices[hour]
        liability = account.liabilities.get(target.symbol, Decimal(0))
        usdt = account.holdings.get(QUOTE_ASSET, Decimal(0))
        spread = Decimal(self.rng.randint(0, 15)).scaleb(-4)
        share = Decimal(self.rng.randint(40, 100)) / 100
        sold = quantize_down(min(usdt * 9 / 10, liability * price * (1 + spread) * share), 2)
        bought = target.units(sold / (price * (1 + spread)))
        fee = target.units(bought * FEE_RATIO)
        if bought <= fee:
            return
        is_auto = self.rng.randrange(10) < 6
        yield self._trade(
            account,
            hour,
            minute,
            (QUOTE_ASSET, sold),
            (target.symbol, bought, fee),
            auto_repay=is_auto,
        )
        if not is_auto:
            quantity = min(bought - fee, account.liabilities.get(target.symbol, Decimal(0)))
            if quantity > 0:
                yield self._on(
                    "repay", account, hour, minute, asset=target.symbol, quantity=quantity
                )
                self._repay(account, target.symbol, quantity)

    def _mistakes(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Requests the ledger refuses: more than is owed, more than is held, too much out."""
        target = self.asset(account.target)
        debt_asset = target.symbol if account.behaviour == "short" else QUOTE_ASSET
        if "greedy_repay" in account.flags:
            owed = account.liabilities.get(debt_asset, Decimal(0))
            quantity = self.asset(debt_asset).units(owed * 3) or Decimal(1)
            yield self._on("repay", account, hour, minute, asset=debt_asset, quantity=quantity)
        held = account.holdings.get(target.symbol, Decimal(0))
        sold = target.units(held * 2)
        proceeds = quantize_down(sold * target.prices[hour], 2)
        if "insufficient_trade" in account.flags and proceeds > 0:
            yield self._on(
                "settle_trade",
                account,
                hour,
                minute,
                sell_asset=target.symbol,
                sell_quantity=sold,
                buy_asset=QUOTE_ASSET,
                buy_quantity=proceeds,
                fee_asset=QUOTE_ASSET,
                fee_quantity=Decimal(0),
                actor=ENGINE,
            )
        if "over_withdraw" in account.flags:
            asset = QUOTE_ASSET if account.holdings.get(QUOTE_ASSET) else target.symbol
            quantity = self.asset(asset).units(account.holdings.get(asset, Decimal(0)) / 2)
            if quantity > 0:
                yield self._on(
                    "transfer_out", account, hour, minute, asset=asset, quantity=quantity
                )

    def _withdraw(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        asset = self.asset(account.collateral)
        share = Decimal(self.rng.randint(20, 70)) / 100
        quantity = asset.units(account.holdings.get(asset.symbol, Decimal(0)) * share)
        if not account.is_open or quantity <= 0:
            return
        yield self._on("transfer_out", account, hour, minute, asset=asset.symbol, quantity=quantity)
        self._debit(account, asset.symbol, quantity)

    def _dip(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """A saver buys the dip: more of a capped asset, which the cap may refuse."""
        asset = self.asset(account.collateral)
        if asset.cap is None or not account.is_open:
            return  # refused at opening, the saver came with USDT and stays with it
        value = Decimal(self.rng.randint(20, 400) * 100)
        quantity = asset.units(value / asset.prices[hour])
        yield self._on("transfer_in", account, hour, minute, asset=asset.symbol, quantity=quantity)
        self._credit(account, asset.symbol, quantity, hour)

    def _pro_exit(self, account: Account, hour: int, minute: int) -> Iterator[dict[str, Any]]:
        """Back to Classic 3x: certain to be a switch (the account is in Pro), maybe refused."""
        yield self._by_user("switch_mode", account, hour, minute, to="classic_3x")
        valuation = value_position(position=self._position(account), market=self.market(hour))
        if valuation.is_above(
            LevelKind.COLLATERAL_MARGIN_LEVEL,
            MARGIN_THRESHOLDS_DEFAULT["classic_3x"].borrow_level_min,
        ):
            account.mode = "classic_3x"

    def _trade(
        self,
        account: Account,
        hour: int,
        minute: int,
        sell: tuple[str, Decimal],
        buy: tuple[str, Decimal, Decimal],
        *,
        auto_borrow: bool = False,
        auto_repay: bool = False,
    ) -> dict[str, Any]:
        """A settle_trade from the matching engine (fee in the bought asset), and its effect."""
        (sell_asset, sold), (buy_asset, bought, fee) = sell, buy
        command = self._on(
            "settle_trade",
            account,
            hour,
            minute,
            sell_asset=sell_asset,
            sell_quantity=sold,
            buy_asset=buy_asset,
            buy_quantity=bought,
            fee_asset=buy_asset,
            fee_quantity=fee,
            auto_borrow=auto_borrow,
            auto_repay=auto_repay,
            actor=ENGINE,
        )
        holdings, liabilities = dict(account.holdings), dict(account.liabilities)
        shortfall = max(Decimal(0), sold - holdings.get(sell_asset, Decimal(0)))
        if shortfall and not (auto_borrow and self._may_borrow(account, sell_asset, hour)):
            return command
        for book, asset, change in (
            (holdings, sell_asset, shortfall - sold),
            (liabilities, sell_asset, shortfall),
            (holdings, buy_asset, bought - fee),
        ):
            book[asset] = book.get(asset, Decimal(0)) + change
        if auto_repay:
            repaid = min(bought - fee, liabilities.get(buy_asset, Decimal(0)))
            holdings[buy_asset] -= repaid
            liabilities[buy_asset] = liabilities.get(buy_asset, Decimal(0)) - repaid
        if shortfall and not self._is_above_borrow_min(account, holdings, liabilities, hour):
            return command
        self._apply(account, holdings, liabilities)
        if shortfall:
            self._note_borrower(account)
        return command
