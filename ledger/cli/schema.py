"""`ledger schema`: JSON Schema of every command, event, the outcome and the query answers
(from pydantic)."""

from typing import Any

from pydantic import BaseModel, TypeAdapter

from ledger.cli.main import app
from ledger.cli.output import print_json
from ledger.commands import COMMAND_TYPES
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import DomainEvent
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.request import Request
from ledger.domain.risk_parameters import RiskParameters
from ledger.domain.user_profile import UserProfile
from ledger.outcomes import Outcome
from ledger.queries import AccountView
from projections.band_timeline import BandChange
from projections.journal import TrialBalanceLine
from projections.queries import AssetView
from projections.runner import ProjectionStatus

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
QUERY_ANSWERS: dict[str, type[BaseModel]] = {
    "account": AccountView,
    "asset": AssetView,
    "band_change": BandChange,
    "trial_balance_line": TrialBalanceLine,
    "projection_status": ProjectionStatus,
}


def event_classes() -> dict[str, type[DomainEvent]]:
    """Every event class, by "<Aggregate>.<Event>" (MarginAccount's mixins' events included)."""
    found = {}
    for aggregate in AGGREGATES:
        for name in dir(aggregate):
            value = getattr(aggregate, name)
            if (
                isinstance(value, type)
                and issubclass(value, DomainEvent)
                and value.__name__ == name  # not the base classes Event and Created
                and name not in ("Event", "Created")
            ):
                found[f"{aggregate.__name__}.{name}"] = value
    return found


def schema_document() -> dict[str, Any]:
    return {
        "commands": {
            cls.model_fields["type"].annotation.__args__[0]: TypeAdapter(cls).json_schema(  # type: ignore[union-attr]
                mode="validation"
            )
            for cls in COMMAND_TYPES
        },
        "events": {
            name: cls.model_json_schema(mode="serialization")
            for name, cls in sorted(event_classes().items())
        },
        "outcome": Outcome.model_json_schema(mode="serialization"),
        "queries": {
            name: model.model_json_schema(mode="serialization")
            for name, model in QUERY_ANSWERS.items()
        },
    }


@app.command()
def schema() -> None:
    """Print the JSON Schema of every command, event, the outcome and the query answers
    (`ledger account/assets/bands/trial-balance/projections status --json`), one JSON document.

    Example: ledger schema | jq '.commands.transfer_in'
    """
    print_json(schema_document())
