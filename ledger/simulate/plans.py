"""Who the accounts are and what each plans to do, and when: the agenda before the first hour."""

from decimal import Decimal

from ledger.money import quantize_down
from ledger.params import QUOTE_ASSET
from ledger.simulate.accounts import Account
from ledger.simulate.market import FLAT_NOTIONAL_MAX_USDT, MAJORS, Asset
from ledger.simulate.model import ModelLayer

# The crowd's plans by account kind, with integer weights.
CROWD_PLANS: dict[str, list[tuple[str, int]]] = {
    "cross": [
        ("saver", 25),
        ("capped_long", 35),
        ("capped_long_5x", 10),
        ("major_long", 18),
        ("short", 12),
    ],
    "portfolio": [("saver", 35), ("capped_long", 45), ("major_long", 20)],
    "isolated": [("capped_long", 50), ("major_long", 35), ("short", 15)],
}
# Special characters whose plan changes how their borrowing goes (kept as a flag).
SPECIAL_BORROWERS = frozenset(
    {"cooling", "admin_disabled", "pro_no_quiz", "pro_no_terms", "pro_no_jurisdiction"}
)


class PlansLayer(ModelLayer):
    """The accounts, their plans and flags, the caps sized to them, and the planned steps."""

    def _plan_accounts(self, count: int) -> None:
        """Special characters first (every DOMAIN.md path at least once), then the crowd."""
        rng = self.rng
        entries: list[tuple[str, str]] = [
            *[("cross", "flag_api"), ("cross", "flag_client_fail"), ("isolated", "flag_isolated")]
            * max(1, count // 120),
            *[("cross", "pro")] * max(2, count // 25),
            *[
                ("cross", f"pro_{why}")
                for why in ("no_quiz", "no_terms", "no_jurisdiction", "small")
            ],
            ("cross", "fiddler"),
            ("cross", "cooling"),
            ("cross", "admin_disabled"),
            ("cross", "quota"),
            *[(rng.choice(("cross", "portfolio")), f"whale:{a.symbol}") for a in self.capped()],
        ]
        for kind, share in (("isolated", count // 5), ("portfolio", count // 10)):
            number = share - sum(1 for k, _ in entries if k == kind)
            entries += [(kind, self._pick(CROWD_PLANS[kind])) for _ in range(max(0, number))]
        entries += [
            ("cross", self._pick(CROWD_PLANS["cross"])) for _ in range(count - len(entries))
        ]
        rng.shuffle(entries)
        crowd_users: list[str] = []  # users of plain cross accounts, who may trade isolated too
        taken: set[str] = set()
        for index, (kind, plan) in enumerate(entries):
            account = self._plan_account(index, f"u{index:04d}", kind, plan)
            if plan in dict(CROWD_PLANS[kind]):
                if kind == "cross":
                    crowd_users.append(account.user)
                elif kind == "isolated" and crowd_users and rng.randrange(2):
                    owner = rng.choice(crowd_users)
                    if f"{owner}:{account.name}" not in taken:
                        account.user = owner
            taken.add(account.account_id)
            self.accounts.append(account)
            self._schedule_plan(account, plan)
        self._schedule(self.crash_end + 1, 3, -1, "fund")

    def _set_caps(self) -> None:
        """Upper limits below what the crowd brings in hour 0 (DOMAIN.md §3), so the last to
        come are refused; the crash asset's limit also leaves room for half of what the
        leveraged longs will buy, so their trades push its total past the limit (band D), but
        not so far that the liquidations cannot bring it back."""
        for asset in self.capped():
            assert asset.cap is not None
            counted = [a for a in self.accounts if not a.is_isolated]
            demand = sum((a.deposit for a in counted if a.collateral == asset.symbol), Decimal(0))
            if asset.symbol == self.crash_asset:
                demand += self._long_demand(counted, asset) / 2
            share = Decimal(self.rng.randint(78, 92)) / 100
            upper_limit = max(quantize_down(demand * share, 0), Decimal(1000))
            asset.cap = asset.cap.model_copy(update={"upper_limit": upper_limit})

    def _long_demand(self, accounts: list[Account], asset: Asset) -> Decimal:
        """Roughly what the planned longs on `asset` will buy, in tokens at the opening price."""
        demand = Decimal(0)
        for account in accounts:
            if account.behaviour == "long" and account.target == asset.symbol:
                value = account.deposit * self.price(account.collateral, 0)
                borrowed = min(value / (account.level - 1), FLAT_NOTIONAL_MAX_USDT - value)
                demand += (value + borrowed) / asset.prices[0]
        return demand

    def _pick(self, options: list[tuple[str, int]]) -> str:
        """A weighted choice by integer weights (random.choices would draw floats)."""
        draw = self.rng.randrange(sum(weight for _, weight in options))
        for option, weight in options:
            if draw < weight:
                return option
            draw -= weight
        raise AssertionError("unreachable: the draw is below the total weight")

    def _plan_account(self, index: int, user: str, kind: str, plan: str) -> Account:
        rng = self.rng
        capped = [a.symbol for a in self.capped()]
        major = rng.choice(tuple(MAJORS))
        if plan.startswith("whale:") or plan in ("saver", "quota", "flag_client_fail"):
            collateral = {
                "saver": self._pick(
                    [(rng.choice(capped), 60), ("BTC", 15), ("ETH", 10), (QUOTE_ASSET, 15)]
                ),
                "quota": rng.choice(capped),
                "flag_client_fail": QUOTE_ASSET,
            }.get(plan, plan.removeprefix("whale:"))
            value = {"saver": rng.randint(5, 300) * 100, "flag_client_fail": 3000}.get(
                plan, rng.randint(60, 150) * 1000
            )
            account = self._new(index, user, kind, "saver", collateral, value, QUOTE_ASSET)
            if plan == "quota":
                account.flags.add("quota")
            return account
        if plan == "short":
            account = self._new(
                index, user, kind, "short", QUOTE_ASSET, rng.randint(20, 150) * 100, major
            )
        elif plan in ("capped_long", "capped_long_5x", "pro"):
            target = self.crash_asset
            if plan == "capped_long" and rng.randrange(4) == 0:
                target = rng.choice(capped[1:])
            elif plan == "pro" and rng.randrange(10) < 3:
                target = major
            collateral = target if plan == "capped_long" and rng.randrange(2) else QUOTE_ASSET
            value = rng.randint(60, 90) * 100 if plan == "pro" else rng.randint(10, 120) * 100
            account = self._new(index, user, kind, "long", collateral, value, target)
        else:  # major_long and the special characters who trade like it
            if plan == "flag_isolated":
                major = "BTC"
            collateral = major if plan == "major_long" and rng.randrange(10) < 3 else QUOTE_ASSET
            value = rng.randint(15, 40) * 100 if plan == "pro_small" else rng.randint(20, 90) * 100
            account = self._new(index, user, kind, "long", collateral, value, major)
        account.mode = {"pro": "pro", "capped_long_5x": "classic_5x", "fiddler": "classic_5x"}.get(
            plan, None if kind != "cross" else "classic_3x"
        )
        account.flags |= self._long_flags(account, plan)
        return account

    def _new(
        self,
        index: int,
        user: str,
        kind: str,
        behaviour: str,
        collateral: str,
        value_usdt: int,
        target: str,
    ) -> Account:
        base = target if target != QUOTE_ASSET else collateral
        name = f"isolated:{base}{QUOTE_ASSET}" if kind == "isolated" else kind
        deposit = self.asset(collateral).units(Decimal(value_usdt) / self.price(collateral, 0))
        return Account(index, user, name, behaviour, collateral, deposit, target)

    def _long_flags(self, account: Account, plan: str) -> set[str]:
        """How this trader borrows, which refusals they run into, whether auto top-up is on."""
        rng = self.rng
        flags = {plan} if plan in SPECIAL_BORROWERS else set()
        if plan in ("cooling", "admin_disabled") or rng.randrange(2):
            flags.add("manual")
            if rng.randrange(100) < 15:
                flags.add("overreach")
        for flag, percent in (
            ("tiny_borrow", 4),
            ("borrow_capped", 5),
            ("greedy_repay", 6),
            ("insufficient_trade", 4),
            ("over_withdraw", 5),
        ):
            if rng.randrange(100) < percent:
                flags.add(flag)
        exposed = account.target == self.crash_asset and account.mode != "pro"
        if account.behaviour == "long" and rng.randrange(100) < (45 if exposed else 10):
            flags.add("top_up")
            flags.add(self._pick([("spot_ample", 5), ("spot_limited", 3), ("spot_zero", 2)]))
            capped_target = self.asset(account.target).cap is not None
            if capped_target and not account.is_isolated and rng.randrange(4) == 0:
                account.top_up_choice = account.target
            else:
                account.top_up_choice = QUOTE_ASSET
        return flags

    def _schedule_plan(self, account: Account, plan: str) -> None:
        rng = self.rng
        minute = rng.randint(1, 40)
        verified = rng.randint(1, 30)
        first_hour = 2 if plan.startswith("flag_") else 1  # after a verification in hour 1
        position = (rng.randint(first_hour, self.crash_start - 1), rng.randint(5, 50))
        later = (rng.randint(self.crash_end + 1, self.hours - 1), rng.randint(5, 55))
        steps: list[tuple[int, int, str]] = {
            "flag_api": [(0, minute, "flag_api"), (0, minute + 3, "flag_client")],
            "flag_client_fail": [
                (0, minute, "flag_client"),
                (0, minute + 2, "while_pending"),
                (0, minute + 4, "verify_fail"),
                (1, verified, "deposit"),
            ],
            "flag_isolated": [(0, minute, "flag_client"), (1, verified + 5, "late_flagged")],
            "quota": [(0, minute - 1, "quota"), (0, minute, "deposit")],
        }.get(plan, [(0, minute, "deposit")])
        if plan in ("flag_api", "flag_isolated"):
            steps.append((1, verified, "verify_pass"))
        if plan.startswith("pro"):
            steps += [(0, 45, "pro_profile"), (0, 50, "switch_pro")]
        steps += {
            "capped_long_5x": [(0, 50, "switch_5x")],
            "fiddler": [(0, 50, "fiddle")],
            "cooling": [(0, 50, "cooling")],
            "admin_disabled": [(0, 50, "admin_disable")],
        }.get(plan, [])
        if account.behaviour == "saver":
            draw = rng.randrange(10)
            if draw < 3:
                steps.append((*later, "withdraw"))
            elif draw < 6 and self.asset(account.collateral).cap and not account.is_isolated:
                steps.append((*later, "dip"))
        else:
            account.level = self._sample_level(account, position[0])
            steps.append((*position, account.behaviour))
            if "top_up" in account.flags:
                steps.append((position[0], position[1] + 1, "auto_top_up"))
            if plan == "pro" and rng.randrange(10) < 4:
                steps.append((later[0], later[1] - 1, "pro_exit"))
            if rng.randrange(10) < 7:
                steps.append((*later, "reduce"))
        for hour, at_minute, action in steps:
            self._schedule(hour, at_minute, account.index, action)

    def _sample_level(self, account: Account, hour: int) -> Decimal:
        """The margin level right after the position's trade (the leverage it takes).

        Auto top-up only acts on a margin call, so its users are given a level that the crash
        takes through the margin-call zone before the liquidation level (by the price path).
        """
        rng = self.rng
        ratio_min = account.borrow_ratio_min()
        if account.mode == "pro":
            return ratio_min + Decimal(rng.randint(5, 55)) / 100
        if account.behaviour == "short" or self.asset(account.target).cap is None:
            return ratio_min + Decimal(rng.randint(10, 120)) / 100
        if "top_up" not in account.flags:
            return ratio_min + Decimal(rng.randint(3, 100)) / 100
        _kind, thresholds = account.level_rules()
        prices = self.asset(account.target).prices
        level = ratio_min
        for _attempt in range(50):
            level = ratio_min + Decimal(rng.randint(3, 90)) / 100
            for later in range(hour + 1, self.hours + 1):
                seen = level * prices[later] / prices[hour]
                if seen <= thresholds.margin_call_level * Decimal("1.02"):
                    low = thresholds.liquidation_level * Decimal("1.03")
                    if low <= seen <= thresholds.margin_call_level * Decimal("0.98"):
                        return level
                    break
        return level
