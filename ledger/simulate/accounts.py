"""One margin account as the generator plans it and believes the ledger holds it."""

from dataclasses import dataclass, field
from decimal import Decimal

from ledger.params import (
    MAINTENANCE_BRACKETS_DEFAULT,
    MARGIN_THRESHOLDS_DEFAULT,
    QUOTE_ASSET,
    MarginThresholds,
)
from ledger.rules.valuation import LevelKind

PRO_MAINTENANCE_RATE = MAINTENANCE_BRACKETS_DEFAULT[0].rate


@dataclass
class Account:
    """One margin account: its plan, and what the generator believes the ledger holds for it."""

    index: int
    user: str
    name: str  # "cross", "portfolio" or "isolated:<PAIR>"
    behaviour: str  # "saver", "long" or "short"
    collateral: str
    deposit: Decimal  # the opening transfer-in, in `collateral`
    target: str = QUOTE_ASSET  # bought by a long, borrowed by a short
    level: Decimal = Decimal(0)  # the planned margin level right after the position's trade
    mode: str | None = None  # cross accounts: the mode the generator knows for certain
    flags: set[str] = field(default_factory=set)
    top_up_choice: str | None = None  # the asset auto top-up will be set to
    top_up_asset: str | None = None  # set: the ledger was told
    spot: Decimal = Decimal(0)  # the owner's spot wallet in top_up_asset
    quotas_usdt: dict[str, Decimal] = field(default_factory=dict)  # per-account fixed quotas
    holdings: dict[str, Decimal] = field(default_factory=dict)
    liabilities: dict[str, Decimal] = field(default_factory=dict)
    is_open: bool = False
    pending_request_id: str | None = None
    called_hour: int | None = None
    is_liquidated: bool = False

    @property
    def account_id(self) -> str:
        return f"{self.user}:{self.name}"

    @property
    def is_isolated(self) -> bool:
        return self.name.startswith("isolated:")

    @property
    def has_debt(self) -> bool:
        return any(q > 0 for q in self.liabilities.values())

    def add(self, book: dict[str, Decimal], asset: str, quantity: Decimal) -> None:
        book[asset] = book.get(asset, Decimal(0)) + quantity
        assert book[asset] >= 0, (self.account_id, asset, book[asset])

    def level_rules(self) -> tuple[LevelKind, MarginThresholds]:
        """The level and thresholds that govern the account (as ledger/handlers/accounts.py)."""
        if self.is_isolated:
            return LevelKind.MARGIN_LEVEL, MARGIN_THRESHOLDS_DEFAULT["isolated"]
        if self.name == "portfolio":
            return LevelKind.COLLATERAL_MARGIN_LEVEL, MARGIN_THRESHOLDS_DEFAULT["classic_3x"]
        mode = self.mode or "classic_3x"
        kind = LevelKind.PRO_MARGIN_LEVEL if mode == "pro" else LevelKind.COLLATERAL_MARGIN_LEVEL
        return kind, MARGIN_THRESHOLDS_DEFAULT[mode]

    def borrow_ratio_min(self) -> Decimal:
        """The value/debt ratio a borrow must stay above; Pro's level turned into that ratio."""
        kind, thresholds = self.level_rules()
        if kind is LevelKind.PRO_MARGIN_LEVEL:
            return 1 + thresholds.borrow_level_min * PRO_MAINTENANCE_RATE
        return thresholds.borrow_level_min
