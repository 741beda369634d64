"""A plain-dict model of the ledger for the property tests: DOMAIN.md §1-3 and §8, written again.

Each `predict_*` method takes one command's fields, decides what the ledger must answer (or
INVALID: nothing may be recorded) and, for a valid command, applies its effect to the model.
Deliberately simple and independent of the ledger's code: if both agree, both are likely right.
"""

import math
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

USERS = ("u1", "u2", "u3", "u4")
ACCOUNTS = ("cross", "portfolio", "isolated:ABCUSDT")
ISOLATED_ASSETS = ("ABC", "USDT")  # the pair of isolated:ABCUSDT
ASSETS = ("ABC", "XYZ", "USDT")
QUANTITY_DECIMALS = {"ABC": 2, "XYZ": 8, "USDT": 8}
CAP_ELIGIBLE = ("ABC", "XYZ")  # ranks 8 and 9: each has a pool; only ABC has an upper limit
UPPER_LIMIT = Decimal(1000)  # U of ABC
FIXED_QUOTA_USDT = Decimal(60)  # F of ABC in USDT: 30 tokens at the first price (2), bands 100 wide
BAND_B_RATIO_MIN = Decimal("0.8")
BAND_C_RATIO_MIN = Decimal("0.9")
FIRST_PRICES = {"ABC": Decimal(2), "XYZ": Decimal(5)}

INVALID = "invalid"

Key = tuple[str, ...]


@dataclass(frozen=True)
class Expected:
    """What the ledger must answer to a valid command."""

    status: str  # accepted / rejected / pending
    reason: str | None = None
    cap: "CapExpected | None" = None


@dataclass(frozen=True)
class CapExpected:
    band: str
    platform_total: Decimal  # T before the transfer
    quantity_max: Decimal  # q_max
    price_usdt: Decimal  # the index price in force at the command's effective_at
    fixed_quota: Decimal  # F in tokens at that price


@dataclass
class LedgerModel:
    holdings: dict[tuple[str, str], dict[str, Decimal]] = field(default_factory=dict)
    status: dict[tuple[str, str], str] = field(default_factory=dict)  # absent: not registered
    pending: dict[tuple[str, str], tuple[str, str, Decimal]] = field(default_factory=dict)
    overrides: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)
    pools: dict[str, Decimal] = field(
        default_factory=lambda: dict.fromkeys(CAP_ELIGIBLE, Decimal(0))
    )
    prices: dict[str, list[tuple[int, Decimal]]] = field(
        default_factory=lambda: {a: [(0, p)] for a, p in FIRST_PRICES.items()}
    )
    # Business time (minutes after T0) of the latest event of each aggregate the model tracks.
    latest: dict[Key, int] = field(
        default_factory=lambda: (
            {("pool", a): 0 for a in CAP_ELIGIBLE} | {("asset", a): 0 for a in ASSETS}
        )
    )

    # --- commands --------------------------------------------------------------------------

    def predict_transfer_in(
        self,
        *,
        request_id: str,
        user: str,
        account: str,
        asset: str,
        quantity: Decimal,
        risk_flagged: bool,
        channel: str,
        minute: int,
    ) -> Expected | str:
        key = (user, account)
        if account.startswith("isolated:") and asset not in ISOLATED_ASSETS:
            return INVALID
        pool = pool_key(asset, account)
        if self._is_backdated(minute, account_key(key), pool):
            return INVALID  # DOMAIN.md §8: earlier than what it would change
        if decimal_places(quantity) > QUANTITY_DECIMALS[asset]:
            return INVALID
        status = self.status.setdefault(key, "not_open")
        self.latest[account_key(key)] = minute
        if status == "pending_verification":
            return Expected("rejected", "verification_pending")
        is_first = status != "open"
        if is_first and risk_flagged and channel == "api":
            return Expected("rejected", "opening_risk_check")
        cap = self.cap_for(user, account, asset, minute)
        if cap is not None and quantity > cap.quantity_max:
            assert pool is not None
            self.latest[pool] = minute
            return Expected("rejected", "collateral_cap", cap)
        if is_first and risk_flagged:
            self.status[key] = "pending_verification"
            self.pending[key] = (request_id, asset, quantity)
            return Expected("pending", None, cap)
        self._credit(key, asset, quantity, pool, minute)
        return Expected("accepted", None, cap)

    def predict_complete_verification(
        self, *, user: str, account: str, transfer_request_id: str, passed: bool, minute: int
    ) -> Expected | str:
        key = (user, account)
        pending = self.pending.get(key)
        if pending is None or pending[0] != transfer_request_id:
            return INVALID
        _, asset, quantity = pending
        pool = pool_key(asset, account)
        if self._is_backdated(minute, account_key(key), pool):
            return INVALID
        self.latest[account_key(key)] = minute
        del self.pending[key]
        if not passed:
            self.status[key] = "not_open"
            return Expected("accepted")
        cap = self.cap_for(user, account, asset, minute)
        if cap is not None and quantity > cap.quantity_max:
            assert pool is not None
            self.status[key] = "not_open"
            self.latest[pool] = minute
            return Expected("rejected", "collateral_cap", cap)
        self._credit(key, asset, quantity, pool, minute)
        return Expected("accepted", None, cap)

    def predict_transfer_out(
        self, *, user: str, account: str, asset: str, quantity: Decimal, minute: int
    ) -> Expected | str:
        key = (user, account)
        if account.startswith("isolated:") and asset not in ISOLATED_ASSETS:
            return INVALID
        pool = pool_key(asset, account)
        if self._is_backdated(minute, account_key(key), pool):
            return INVALID
        if decimal_places(quantity) > QUANTITY_DECIMALS[asset]:
            return INVALID
        status = self.status.get(key)
        if status is not None:
            self.latest[account_key(key)] = minute
        if status != "open":
            return Expected("rejected", "account_not_open")
        if quantity > self.holding(key, asset):
            return Expected("rejected", "insufficient_balance")
        self.holdings[key][asset] -= quantity
        if pool is not None:
            self.pools[pool[1]] -= quantity
            self.latest[pool] = minute
        return Expected("accepted")

    def predict_mark_prices(self, *, prices: dict[str, Decimal], minute: int) -> Expected | str:
        # A cap-eligible asset's price is noted on its pool too (T and price read together), so
        # the mark changes the pool: it may not be dated before the pool's latest event.
        changed = [("asset", a) for a in prices] + [
            ("pool", a) for a in prices if a in CAP_ELIGIBLE
        ]
        if self._is_backdated(minute, *changed):
            return INVALID
        for asset, price in prices.items():
            self.prices[asset].append((minute, price))
        for key in changed:
            self.latest[key] = minute
        return Expected("accepted")

    def predict_set_account_quota(
        self, *, user: str, account: str, asset: str, fixed_quota_usdt: Decimal, minute: int
    ) -> Expected | str:
        key = (user, account)
        if account.startswith("isolated:") or asset not in CAP_ELIGIBLE:
            return INVALID
        if self._is_backdated(minute, account_key(key)):
            return INVALID
        self.status.setdefault(key, "not_open")
        self.overrides[(user, account, asset)] = fixed_quota_usdt
        self.latest[account_key(key)] = minute
        return Expected("accepted")

    # --- reading the model -----------------------------------------------------------------

    def holding(self, key: tuple[str, str], asset: str) -> Decimal:
        return self.holdings.get(key, {}).get(asset, Decimal(0))

    def bucket_totals(self, asset: str) -> tuple[Decimal, Decimal]:
        """(held in cross + portfolio accounts, held in isolated accounts)."""
        capped = isolated = Decimal(0)
        for (_, account), assets in self.holdings.items():
            if account.startswith("isolated:"):
                isolated += assets.get(asset, Decimal(0))
            else:
                capped += assets.get(asset, Decimal(0))
        return capped, isolated

    def price_at(self, asset: str, minute: int) -> Decimal:
        """The index price in force at `minute`: the latest mark at or before it."""
        in_force = [price for at, price in self.prices[asset] if at <= minute]
        return in_force[-1]

    def cap_for(self, user: str, account: str, asset: str, minute: int) -> CapExpected | None:
        """DOMAIN.md §3 for ABC (the only asset with an upper limit), cross/portfolio only."""
        if asset != "ABC" or account.startswith("isolated:"):
            return None
        platform_total = self.pools["ABC"]
        quota_usdt = self.overrides.get((user, account, "ABC"), FIXED_QUOTA_USDT)
        price = self.price_at("ABC", minute)
        fixed_quota = round_down(quota_usdt / price, 2)
        ratio = platform_total / UPPER_LIMIT
        if ratio < BAND_B_RATIO_MIN:
            band, quantity_max = "A", BAND_B_RATIO_MIN * UPPER_LIMIT - platform_total
        elif ratio < 1:
            band = "B" if ratio < BAND_C_RATIO_MIN else "C"
            quantity_max = min(fixed_quota, UPPER_LIMIT - platform_total)
        else:
            band, quantity_max = "D", Decimal(0)
        return CapExpected(band, platform_total, round_down(quantity_max, 2), price, fixed_quota)

    # --- helpers ---------------------------------------------------------------------------

    def _is_backdated(self, minute: int, *keys: Key | None) -> bool:
        return any(self.latest.get(k, -math.inf) > minute for k in keys if k is not None)

    def _credit(
        self, key: tuple[str, str], asset: str, quantity: Decimal, pool: Key | None, minute: int
    ) -> None:
        self.status[key] = "open"
        assets = self.holdings.setdefault(key, {})
        assets[asset] = assets.get(asset, Decimal(0)) + quantity
        if pool is not None:
            self.pools[pool[1]] += quantity
            self.latest[pool] = minute


def account_key(key: tuple[str, str]) -> Key:
    return ("account", *key)


def pool_key(asset: str, account: str) -> Key | None:
    """The pool a movement of `asset` in `account` counts in (cap-eligible, not isolated)."""
    if asset in CAP_ELIGIBLE and not account.startswith("isolated:"):
        return ("pool", asset)
    return None


def decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def round_down(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
