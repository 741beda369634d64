"""What a window did to the platform totals and the insurance fund, recorded against
counterfactual: per capped asset T at the window's end, and the fund's flows in the window."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.utils import get_topic
from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.domain.asset import AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.log import log_events
from ledger.money import format_plain


class Compared(BaseModel):
    model_config = ConfigDict(frozen=True)

    recorded: str | None
    counterfactual: str | None
    difference: str | None  # counterfactual - recorded


class AssetTotals(BaseModel):
    model_config = ConfigDict(frozen=True)

    platform_total: Compared  # T at the window's end
    upper_limit: Compared  # U in force at the window's end


class WindowTotals(BaseModel):
    model_config = ConfigDict(frozen=True)

    assets: dict[str, AssetTotals]
    insurance_fund: dict[str, Compared]  # balance at the end; fees, covered, uncovered in it


def window_totals(
    ledger: Ledger, counterfactual: Ledger, since: datetime, until: datetime
) -> WindowTotals:
    catalog = ledger.aggregate_as_of(AssetCatalog.create_id(), until)
    symbols = [] if catalog is None else list(getattr(catalog, "symbols", []))
    assets = {}
    for symbol in sorted(symbols):
        pool_id = AssetPool.create_id(symbol)
        recorded, now = (
            ledger.aggregate_as_of(pool_id, until),
            counterfactual.aggregate_as_of(pool_id, until),
        )
        if recorded is None and now is None:
            continue
        assets[symbol] = AssetTotals(
            platform_total=_compared(_total(recorded), _total(now)),
            upper_limit=_compared(_limit(recorded), _limit(now)),
        )
    was, then = _fund(ledger, since, until), _fund(counterfactual, since, until)
    return WindowTotals(
        assets=assets,
        insurance_fund={key: _compared(was[key], then[key]) for key in was},
    )


def _total(pool: Any) -> Decimal | None:
    return None if pool is None else Decimal(pool.platform_total)


def _limit(pool: Any) -> Decimal | None:
    if pool is None or pool.cap_params is None:
        return None
    return Decimal(pool.cap_params.upper_limit)


def _fund(ledger: Ledger, since: datetime, until: datetime) -> dict[str, Decimal | None]:
    """The fund's balance at `until`, and its liquidation fees, covered and uncovered deficits
    dated in (since, until]."""
    flows = {"fees_usdt": Decimal(0), "covered_usdt": Decimal(0), "uncovered_usdt": Decimal(0)}
    topics = [get_topic(InsuranceFund.Funded), get_topic(InsuranceFund.DeficitCovered)]
    for _position, event in log_events(ledger, topics=topics):
        if not since < event.effective_at <= until:
            continue
        if isinstance(event, InsuranceFund.DeficitCovered):
            flows["covered_usdt"] += event.covered_usdt
            flows["uncovered_usdt"] += event.uncovered_usdt
        elif event.source == "liquidation_fee":
            flows["fees_usdt"] += event.amount_usdt
    fund = ledger.aggregate_as_of(InsuranceFund.create_id(), until)
    balance = None if fund is None else Decimal(getattr(fund, "balance_usdt"))  # noqa: B009
    return {"balance_usdt": balance, **flows}


def _compared(recorded: Decimal | None, counterfactual: Decimal | None) -> Compared:
    difference = (
        None
        if recorded is None or counterfactual is None
        else format_plain(counterfactual - recorded)
    )
    return Compared(
        recorded=None if recorded is None else format_plain(recorded),
        counterfactual=None if counterfactual is None else format_plain(counterfactual),
        difference=difference,
    )
