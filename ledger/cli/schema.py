"""`ledger schema`: JSON Schema of every command, event, the outcome and the query answers
(from pydantic)."""

from typing import Any

from pydantic import BaseModel, TypeAdapter

from ledger.cli.main import app
from ledger.cli.output import print_json
from ledger.commands import COMMAND_TYPES
from ledger.domain.registry import event_classes
from ledger.outcomes import Outcome
from ledger.queries import AccountView
from projections.band_timeline import BandChange
from projections.journal import TrialBalanceLine
from projections.queries import AssetView
from projections.runner import ProjectionStatus

QUERY_ANSWERS: dict[str, type[BaseModel]] = {
    "account": AccountView,
    "asset": AssetView,
    "band_change": BandChange,
    "trial_balance_line": TrialBalanceLine,
    "projection_status": ProjectionStatus,
}


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
            for name, cls in event_classes().items()
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
