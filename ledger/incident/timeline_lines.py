"""What one event says on a timeline: its kind, the figures a post-mortem reads and one line of
text, per event class (DOMAIN.md §8: every decision event carries the figures it was decided on).
Collateral, lending, trading and parameter lines are here; the risk lines in timeline_risk.py.
"""

from collections.abc import Callable
from typing import Any

from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.risk_parameters import RiskParameters
from ledger.incident.timeline_kinds import (
    Figure,
    Line,
    Subject,
    TimelineKind,
    cap_figures,
    cap_text,
    plain,
)
from ledger.incident.timeline_risk import (
    deficit_covered,
    funded,
    liquidated,
    margin_called,
    top_up_blocked,
    topped_up,
)

__all__ = ["DESCRIBERS", "Figure", "Line", "Subject", "TimelineKind", "describe", "plain"]


def describe(event: Any, subject: Subject) -> Line | None:
    """The line of an event, or None for an event that is not a timeline line (requests,
    interest hours, pool mirrors of account events, settings)."""
    describer = DESCRIBERS.get(type(event))
    return None if describer is None else describer(event, subject)


def _transferred_in(e: MarginAccount.TransferredIn, subject: Subject) -> Line:
    figures = {"quantity": plain(e.quantity), "holding_after": plain(e.holding_after)}
    return Line(
        kind=TimelineKind.TRANSFER_IN,
        account=subject.account,
        asset=e.asset,
        figures=figures | cap_figures(e.decision),
        text=f"{subject.account} transferred in {plain(e.quantity)} {e.asset}"
        f"{cap_text(e.decision)}",
    )


def _transfer_in_rejected(e: MarginAccount.TransferInRejected, subject: Subject) -> Line:
    figures: dict[str, Figure] = {"requested": plain(e.quantity_requested), "reason": e.reason}
    return Line(
        kind=TimelineKind.TRANSFER_IN_REFUSED,
        account=subject.account,
        asset=e.asset,
        figures=figures | cap_figures(e.decision),
        text=f"{subject.account} refused a transfer-in of {plain(e.quantity_requested)} {e.asset}: "
        f"{e.reason}{cap_text(e.decision)}",
    )


def _transferred_out(e: MarginAccount.TransferredOut, subject: Subject) -> Line:
    return Line(
        kind=TimelineKind.TRANSFER_OUT,
        account=subject.account,
        asset=e.asset,
        figures={"quantity": plain(e.quantity), "holding_after": plain(e.holding_after)},
        text=f"{subject.account} transferred out {plain(e.quantity)} {e.asset}",
    )


def _borrowed(e: MarginAccount.Borrowed, subject: Subject) -> Line:
    how = "auto-borrowed" if e.is_auto else "borrowed"
    return Line(
        kind=TimelineKind.BORROW,
        account=subject.account,
        asset=e.asset,
        figures={
            "quantity": plain(e.quantity),
            "liability_after": plain(e.liability_after),
            "is_auto": e.is_auto,
        },
        text=f"{subject.account} {how} {plain(e.quantity)} {e.asset} "
        f"(owes {plain(e.liability_after)})",
    )


def _repaid(e: MarginAccount.Repaid, subject: Subject) -> Line:
    how = "auto-repaid" if e.is_auto else "repaid"
    return Line(
        kind=TimelineKind.REPAY,
        account=subject.account,
        asset=e.asset,
        figures={
            "quantity": plain(e.quantity),
            "interest_paid": plain(e.interest_paid),
            "principal_paid": plain(e.principal_paid),
            "liability_after": plain(e.liability_after),
            "is_auto": e.is_auto,
        },
        text=f"{subject.account} {how} {plain(e.quantity)} {e.asset} (interest "
        f"{plain(e.interest_paid)}, principal {plain(e.principal_paid)})",
    )


def _trade(e: MarginAccount.TradeSettled, subject: Subject) -> Line:
    return Line(
        kind=TimelineKind.TRADE,
        account=subject.account,
        asset=None,
        figures={
            "sell_asset": e.sell_asset,
            "sell_quantity": plain(e.sell_quantity),
            "buy_asset": e.buy_asset,
            "buy_quantity": plain(e.buy_quantity),
        },
        text=f"{subject.account} sold {plain(e.sell_quantity)} {e.sell_asset} for "
        f"{plain(e.buy_quantity)} {e.buy_asset}",
    )


def _opened(e: MarginAccount.Opened, subject: Subject) -> Line:
    return Line(
        kind=TimelineKind.ACCOUNT_OPENED,
        account=subject.account,
        asset=None,
        figures={"mode": None if e.mode is None else e.mode.value},
        text=f"{subject.account} opened",
    )


def _mode_switched(e: MarginAccount.ModeSwitched, subject: Subject) -> Line:
    forced = " (forced by an administrator)" if e.is_forced else ""
    return Line(
        kind=TimelineKind.MODE_SWITCH,
        account=subject.account,
        asset=None,
        figures={"from": e.from_mode.value, "to": e.to_mode.value, "is_forced": e.is_forced},
        text=f"{subject.account} switched from {e.from_mode.value} to {e.to_mode.value}{forced}",
    )


def _quota_overridden(e: MarginAccount.QuotaOverridden, subject: Subject) -> Line:
    return _parameter(
        f"{subject.account} fixed quota of {e.asset} set to {plain(e.fixed_quota_usdt)} USDT",
        account=subject.account,
        asset=e.asset,
        fixed_quota_usdt=plain(e.fixed_quota_usdt),
    )


def _price_marked(e: Asset.PriceMarked, subject: Subject) -> Line:
    symbol = subject.symbol
    return Line(
        kind=TimelineKind.PRICE_MARK,
        account=None,
        asset=symbol,
        figures={"price_usdt": plain(e.price_usdt)},
        text=f"{symbol} marked at {plain(e.price_usdt)} USDT",
    )


def _listed(e: Asset.Listed, subject: Subject) -> Line:
    return _parameter(
        f"{e.symbol} listed at collateral rank {e.collateral_rank}",
        account=None,
        asset=e.symbol,
        collateral_rank=str(e.collateral_rank),
    )


def _borrow_terms(e: Asset.BorrowTermsSet, subject: Subject) -> Line:
    symbol = subject.symbol
    terms = e.borrow_terms
    return _parameter(
        f"{symbol} borrow terms: hourly rate {plain(terms.hourly_interest_rate)}, "
        f"borrowable {terms.borrowable}",
        account=None,
        asset=symbol,
        hourly_interest_rate=plain(terms.hourly_interest_rate),
        borrowable=terms.borrowable,
    )


def _maintenance(e: Asset.MaintenanceBracketsSet, subject: Subject) -> Line:
    symbol = subject.symbol
    return _parameter(
        f"{symbol} maintenance brackets set ({len(e.maintenance_brackets)})",
        account=None,
        asset=symbol,
    )


def _cap_set(e: AssetPool.CapSet, subject: Subject) -> Line:
    cap = e.cap_params
    symbol = subject.symbol
    return _parameter(
        f"{symbol} cap set: upper limit {plain(cap.upper_limit)}, fixed quota "
        f"{plain(cap.fixed_quota_usdt)} USDT",
        account=None,
        asset=symbol,
        upper_limit=plain(cap.upper_limit),
        fixed_quota_usdt=plain(cap.fixed_quota_usdt),
        band_b_ratio_min=plain(cap.band_b_ratio_min),
        band_c_ratio_min=plain(cap.band_c_ratio_min),
    )


def _thresholds(e: RiskParameters.ThresholdsSet, subject: Subject) -> Line:
    values = {k: plain(v) for k, v in e.thresholds.model_dump().items()}
    listed = ", ".join(f"{k} {v}" for k, v in values.items())
    return _parameter(f"{e.mode} thresholds set: {listed}", account=None, asset=None, **values)


def _platform_rules(e: RiskParameters.PlatformRulesSet, subject: Subject) -> Line:
    return _parameter("platform rules set", account=None, asset=None)


def _default_brackets(e: RiskParameters.DefaultMaintenanceBracketsSet, subject: Subject) -> Line:
    return _parameter("default maintenance brackets set", account=None, asset=None)


def _parameter(text: str, *, account: str | None, asset: str | None, **figures: Figure) -> Line:
    return Line(
        kind=TimelineKind.PARAMETER_CHANGE,
        account=account,
        asset=asset,
        figures=figures,
        text=text,
    )


Describer = Callable[[Any, Subject], Line]
DESCRIBERS: dict[type[Any], Describer] = {
    MarginAccount.TransferredIn: _transferred_in,
    MarginAccount.TransferInRejected: _transfer_in_rejected,
    MarginAccount.TransferredOut: _transferred_out,
    MarginAccount.Borrowed: _borrowed,
    MarginAccount.Repaid: _repaid,
    MarginAccount.TradeSettled: _trade,
    MarginAccount.MarginCalled: margin_called,
    MarginAccount.ToppedUp: topped_up,
    MarginAccount.TopUpBlocked: top_up_blocked,
    MarginAccount.Liquidated: liquidated,
    MarginAccount.Opened: _opened,
    MarginAccount.ModeSwitched: _mode_switched,
    MarginAccount.QuotaOverridden: _quota_overridden,
    Asset.Listed: _listed,
    Asset.PriceMarked: _price_marked,
    Asset.BorrowTermsSet: _borrow_terms,
    Asset.MaintenanceBracketsSet: _maintenance,
    AssetPool.CapSet: _cap_set,
    RiskParameters.ThresholdsSet: _thresholds,
    RiskParameters.PlatformRulesSet: _platform_rules,
    RiskParameters.DefaultMaintenanceBracketsSet: _default_brackets,
    InsuranceFund.Funded: funded,
    InsuranceFund.DeficitCovered: deficit_covered,
}
