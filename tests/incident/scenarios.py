"""The smallest crash of a capped asset that has every kind of timeline line, built from explicit
commands so that every expected line is known by construction (shared by the incident tests).

Market: USDT (2 decimals) and ABC (rank 8, capped, 2 decimals, U = 10,000, F = 1,000 USDT, price
1); both lend at 0.01% an hour. Minutes after T0 (09:00); the window is [10:00, 19:00] (minutes
60 to 600).

Before the window: the fund gets 500 USDT, u0 brings 1,000 ABC (T 1,000) and u9 is refused 8,000
(q_max 7,000): neither may appear.

In the window (T after each step):
- 61-63 u1's long: 1,000 ABC in (2,000), 1,500 USDT borrowed and bought 1,500 ABC (3,500).
- 64-67 u2's long: 1,000 ABC in (4,500), 1,000 USDT borrowed for 1,000 ABC (5,500); auto top-up
  from ABC on.
- 68-69 u7's short: 1,000 USDT in, 100 ABC borrowed (5,600).
- 70 u3 brings 2,400 ABC = 0.8·U − T, the whole of q_max (8,000 = 80%: band A → B).
- 71 u4 is refused 1,200 (band B: q_max = min(F 1,000, U − T 2,000) = 1,000).
- 72 u4 brings 1,000 (9,000: B → C); 73 u5 brings 1,000 (10,000 = U: C → D).
- 74 u6 is refused 10 (band D, q_max 0).
- 75 the cap's fixed quota changes to 600 USDT (a parameter change; T and U unchanged).
- 90 ABC marked at 0.6; 91 the sweep (u2's spot wallet: 1,000 ABC):
  u1: 2,500 ABC x 0.6 = 1,500 against 1,500.15 (the 10:00 hour, charged at the borrow) ->
  liquidated, deficit 0.15 paid by the fund (499.85 left); T 7,500 (D → A).
  u2: 2,000 x 0.6 = 1,200 against 1,000.10: CML 1.1999 -> margin call; lifting it above 1.5
  needs 500.26 ABC, the cap allows 0.8·U − T = 500 -> topped up 500, limited (8,000: A → B).
- 100 ABC marked at 0.4; 101 the sweep: u2: 2,500 x 0.4 = 1,000 against 1,000.10 -> liquidated,
  deficit 0.10 (499.75 left); T 5,500 (B → A).
- 120 u7 repays 100 ABC: 0.02 of interest, 99.98 of principal (5,400).

After the window (minutes 700-702): u8 brings 100 ABC, ABC marked at 0.3, a sweep: nothing of
it may appear.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger import Ledger
from ledger.outcomes import Outcome
from tests.support import T0, at, command, run

ASSET = "ABC"
WINDOW_START_MINUTE = 60
WINDOW_END_MINUTE = 600


class CrashScenario(BaseModel):
    """The window of the crash and the facts the tests check."""

    model_config = ConfigDict(frozen=True)

    asset: str
    since: datetime
    until: datetime
    band_path: list[tuple[str | None, str]]  # (before, after) of every transition in the window
    liquidated: list[str]  # accounts, in log order
    refused_in_window: list[str]  # request ids of the refused transfer-ins
    margin_called: list[str]
    limited_top_up: str  # its account
    request_ids_before: list[str]  # requests before the window
    request_ids_after: list[str]  # and after it


def crash_store(ledger: Ledger) -> CrashScenario:
    """Record the crash described above on an empty store and return its window and facts."""
    _market(ledger)
    _step(ledger, "fund_insurance", 1, "before.fund", amount_usdt="500")
    _step(ledger, "transfer_in", 5, "before.u0", **_in("u0", "1000"))
    _step(ledger, "transfer_in", 6, "before.u9", **_in("u9", "8000"), status="rejected")

    _long(ledger, "u1", 61, collateral="1000", borrowed="1500")
    _long(ledger, "u2", 64, collateral="1000", borrowed="1000")
    _step(ledger, "set_auto_top_up", 67, None, **_acct("u2"), enabled=True, asset=ASSET)
    _step(ledger, "transfer_in", 68, None, **_in("u7", "1000", asset="USDT"))
    _step(ledger, "borrow", 69, None, **_acct("u7"), asset=ASSET, quantity="100")
    _step(ledger, "transfer_in", 70, "u3.in", **_in("u3", "2400"))
    _step(ledger, "transfer_in", 71, "u4.refused", **_in("u4", "1200"), status="rejected")
    _step(ledger, "transfer_in", 72, "u4.in", **_in("u4", "1000"))
    _step(ledger, "transfer_in", 73, "u5.in", **_in("u5", "1000"))
    _step(ledger, "transfer_in", 74, "u6.refused", **_in("u6", "10"), status="rejected")
    cap = {"asset": ASSET, "upper_limit": "10000", "fixed_quota_usdt": "600"}
    _step(ledger, "set_collateral_cap", 75, "cap.quota", **cap)
    _step(ledger, "mark_prices", 90, "crash.mark1", prices={ASSET: "0.6"})
    spot = {"u2:cross": {ASSET: "1000"}}
    _step(ledger, "check_margins", 91, "crash.sweep1", spot_available=spot)
    _step(ledger, "mark_prices", 100, "crash.mark2", prices={ASSET: "0.4"})
    _step(ledger, "check_margins", 101, "crash.sweep2", spot_available=spot)
    _step(ledger, "repay", 120, "u7.repay", **_acct("u7"), asset=ASSET, quantity="100")

    _step(ledger, "transfer_in", 700, "after.u8", **_in("u8", "100"))
    _step(ledger, "mark_prices", 701, "after.mark", prices={ASSET: "0.3"})
    _step(ledger, "check_margins", 702, "after.sweep")
    return CrashScenario(
        asset=ASSET,
        since=T0.replace(hour=10),
        until=T0.replace(hour=19),
        band_path=[("A", "B"), ("B", "C"), ("C", "D"), ("D", "A"), ("A", "B"), ("B", "A")],
        liquidated=["u1:cross", "u2:cross"],
        refused_in_window=["u4.refused", "u6.refused"],
        margin_called=["u2:cross"],
        limited_top_up="u2:cross",
        request_ids_before=["before.fund", "before.u0", "before.u9"],
        request_ids_after=["after.u8", "after.mark", "after.sweep"],
    )


def _market(ledger: Ledger) -> None:
    for asset, rank in (("USDT", 1), (ASSET, 8)):
        listing = {"asset": asset, "collateral_rank": rank, "quantity_decimals": 2}
        _step(ledger, "list_asset", 0, None, **listing)
    cap = {"asset": ASSET, "upper_limit": "10000", "fixed_quota_usdt": "1000"}
    _step(ledger, "set_collateral_cap", 0, None, **cap)
    _step(ledger, "mark_prices", 0, None, prices={ASSET: "1"})
    for asset in ("USDT", ASSET):
        _step(ledger, "set_borrow_terms", 0, None, asset=asset, hourly_interest_rate="0.0001")


def _long(ledger: Ledger, user: str, minute: int, *, collateral: str, borrowed: str) -> None:
    """ABC in, USDT borrowed and sold for ABC at price 1 (minutes m, m+1, m+2)."""
    _step(ledger, "transfer_in", minute, f"{user}.in", **_in(user, collateral))
    _step(ledger, "borrow", minute + 1, None, **_acct(user), asset="USDT", quantity=borrowed)
    trade = {
        "sell_asset": "USDT",
        "sell_quantity": borrowed,
        "buy_asset": ASSET,
        "buy_quantity": borrowed,
        "fee_asset": "USDT",
        "fee_quantity": "0",
    }
    _step(ledger, "settle_trade", minute + 2, None, **_acct(user), **trade)


def _acct(user: str) -> dict[str, str]:
    return {"user": user, "account": "cross"}


def _in(user: str, quantity: str, *, asset: str = ASSET) -> dict[str, str]:
    return {**_acct(user), "asset": asset, "quantity": quantity}


def _step(
    ledger: Ledger,
    type_: str,
    minute: int,
    request_id: str | None,
    *,
    status: str = "accepted",
    **fields: Any,
) -> Outcome:
    outcome = run(ledger, command(type_, request_id, effective_at=at(minute), **fields))
    assert outcome.status == status, outcome
    return outcome
