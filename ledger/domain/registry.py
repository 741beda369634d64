"""Every aggregate and event class, by the readable names the schema, exports and explanations
use ("MarginAccount.Borrowed", not the mixin's topic "...account_lending:Lending.Borrowed")."""

from functools import cache
from typing import Any

from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import DomainEvent
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.request import Request
from ledger.domain.risk_parameters import RiskParameters
from ledger.domain.user_profile import UserProfile

AGGREGATES = (
    Asset,
    AssetCatalog,
    AssetPool,
    MarginAccount,
    RiskParameters,
    UserProfile,
    InsuranceFund,
    Request,
)


@cache
def event_classes() -> dict[str, type[DomainEvent]]:
    """Every event class by "<Aggregate>.<Event>" (MarginAccount's mixins' events included)."""
    found = {}
    for aggregate in AGGREGATES:
        for name in dir(aggregate):
            value = getattr(aggregate, name)
            if (
                isinstance(value, type)
                and issubclass(value, DomainEvent)
                and value.__name__ == name
                and name not in ("Event", "Created")
            ):
                found[f"{aggregate.__name__}.{name}"] = value
    return dict(sorted(found.items()))


@cache
def _names_by_class() -> dict[type, str]:
    return {cls: name for name, cls in event_classes().items()}


def event_name(event: Any) -> str:
    """The readable name of an event's class; a snapshot (not an event) is "Snapshot"."""
    return _names_by_class().get(type(event), type(event).__name__)
