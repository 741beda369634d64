"""The rough model of holdings, debt, cap totals and the risk sweep, used only to size requests."""

from decimal import Decimal

from ledger.money import quantize_down, quantize_up
from ledger.params import QUOTE_ASSET
from ledger.rules.cap_band import CapDecision, decide_cap_band
from ledger.rules.valuation import Position, value_position
from ledger.simulate.accounts import Account
from ledger.simulate.market import MAJOR_DECIMALS, MarketLayer

LIQUIDATION_FEE_RATIO = Decimal("0.02")  # the ledger's default, for the model only

MARGIN_CALL_INTERVAL_HOURS = 24


class ModelLayer(MarketLayer):
    """What the generator believes the ledger holds, and how it expects each change decided."""

    totals: dict[str, Decimal]
    accounts: list[Account]
    borrowers: list[Account]
    _borrower_indices: set[int]

    def _position(self, account: Account) -> Position:
        return Position(
            holdings=dict(account.holdings), liabilities=dict(account.liabilities), interest={}
        )

    def _value(self, account: Account, hour: int) -> Decimal:
        return sum((q * self.price(a, hour) for a, q in account.holdings.items()), Decimal(0))

    def _cap(self, account: Account, symbol: str, quantity: Decimal, hour: int) -> CapDecision:
        asset = self.asset(symbol)
        assert asset.cap is not None, symbol
        return decide_cap_band(
            asset=symbol,
            quantity_requested=quantity,
            platform_total=self.totals[symbol],
            price_usdt=asset.prices[hour],
            params=asset.cap,
            quantity_decimals=asset.decimals,
            fixed_quota_usdt_override=account.quotas_usdt.get(symbol),
        )

    def _credit(self, account: Account, symbol: str, quantity: Decimal, hour: int) -> bool:
        """A transfer-in as the ledger is expected to decide it (pending, cap), applied."""
        if account.pending_request_id is not None:
            return False
        counts = self.asset(symbol).cap is not None and not account.is_isolated
        if counts:
            if not self._cap(account, symbol, quantity, hour).is_accepted:
                return False
            self.totals[symbol] += quantity
        account.add(account.holdings, symbol, quantity)
        account.is_open = True
        return True

    def _debit(self, account: Account, symbol: str, quantity: Decimal) -> None:
        if account.holdings.get(symbol, Decimal(0)) < quantity:
            return  # the ledger refuses it: insufficient_balance
        account.add(account.holdings, symbol, -quantity)
        if symbol in self.totals and not account.is_isolated:
            self.totals[symbol] -= quantity

    def _may_borrow(self, account: Account, symbol: str, hour: int) -> bool:
        if self.asset(symbol).cap is not None:  # capped assets have no borrow terms here
            return False
        blocked = {"borrowing_disabled"} | ({"cooling"} if hour < 24 else set())
        return not account.flags & blocked

    def _borrow(self, account: Account, symbol: str, quantity: Decimal, hour: int) -> None:
        if not self._may_borrow(account, symbol, hour) or quantity * self.price(symbol, hour) < 10:
            return
        holdings, liabilities = dict(account.holdings), dict(account.liabilities)
        holdings[symbol] = holdings.get(symbol, Decimal(0)) + quantity
        liabilities[symbol] = liabilities.get(symbol, Decimal(0)) + quantity
        if self._is_above_borrow_min(account, holdings, liabilities, hour):
            self._apply(account, holdings, liabilities)
            self._note_borrower(account)

    def _repay(self, account: Account, symbol: str, quantity: Decimal) -> None:
        owed = account.liabilities.get(symbol, Decimal(0))
        if quantity <= min(owed, account.holdings.get(symbol, Decimal(0))):
            account.add(account.holdings, symbol, -quantity)
            account.add(account.liabilities, symbol, -quantity)

    def _is_above_borrow_min(
        self,
        account: Account,
        holdings: dict[str, Decimal],
        liabilities: dict[str, Decimal],
        hour: int,
    ) -> bool:
        kind, thresholds = account.level_rules()
        position = Position(holdings=holdings, liabilities=liabilities, interest={})
        valuation = value_position(position=position, market=self.market(hour))
        return valuation.is_above(kind, thresholds.borrow_level_min)

    def _apply(
        self, account: Account, holdings: dict[str, Decimal], liabilities: dict[str, Decimal]
    ) -> None:
        """New holdings and liabilities; the platform totals follow the capped holdings."""
        if not account.is_isolated:
            for symbol in self.totals:
                change = holdings.get(symbol, Decimal(0)) - account.holdings.get(symbol, Decimal(0))
                self.totals[symbol] += change
        assert all(q >= 0 for q in (*holdings.values(), *liabilities.values())), account
        account.holdings = {a: q for a, q in holdings.items() if q}
        account.liabilities = {a: q for a, q in liabilities.items() if q}

    def _note_borrower(self, account: Account) -> None:
        if account.index not in self._borrower_indices:
            self._borrower_indices.add(account.index)
            self.borrowers.append(account)

    def _sweep(self, hour: int) -> None:
        """The risk sweep as the ledger is expected to run it (DOMAIN.md §7), on the model."""
        market = self.market(hour)
        for account in self.borrowers:
            if not account.has_debt:
                continue
            kind, thresholds = account.level_rules()
            valuation = value_position(position=self._position(account), market=market)
            if valuation.is_at_or_below(kind, thresholds.liquidation_level):
                self._liquidate(account, hour)
            elif valuation.is_at_or_below(kind, thresholds.margin_call_level) and (
                account.called_hour is None
                or hour - account.called_hour >= MARGIN_CALL_INTERVAL_HOURS
            ):
                account.called_hour = hour
                if account.top_up_asset is not None:
                    self._top_up(account, hour)

    def _liquidate(self, account: Account, hour: int) -> None:
        proceeds = self._value(account, hour)
        debt = sum((q * self.price(a, hour) for a, q in account.liabilities.items()), Decimal(0))
        surplus = proceeds - debt
        remainder = Decimal(0)
        if surplus > 0:
            fee = min(LIQUIDATION_FEE_RATIO * proceeds, surplus)
            remainder = quantize_down(surplus - fee, MAJOR_DECIMALS)
        self._apply(account, {QUOTE_ASSET: remainder}, {})
        account.is_liquidated = True

    def _top_up(self, account: Account, hour: int) -> None:
        """Lift the level to the mode's initial risk ratio from the spot wallet, within the cap."""
        symbol = account.top_up_asset
        assert symbol is not None
        kind, thresholds = account.level_rules()
        valuation = value_position(position=self._position(account), market=self.market(hour))
        numerator, denominator = valuation.level_terms(kind)
        needed_usdt = thresholds.borrow_level_min * denominator - numerator
        asset = self.asset(symbol)
        quantity = min(
            quantize_up(needed_usdt * Decimal("1.001") / self.price(symbol, hour), asset.decimals),
            account.spot,
        )
        if asset.cap is not None and not account.is_isolated and quantity > 0:
            quantity = min(quantity, self._cap(account, symbol, quantity, hour).quantity_max)
        if quantity > 0:
            holdings = dict(account.holdings)
            holdings[symbol] = holdings.get(symbol, Decimal(0)) + quantity
            self._apply(account, holdings, account.liabilities)
            account.spot -= quantity
