"""`ledger schema`: JSON Schema of every command, event and the outcome (from pydantic)."""

from typing import Any

from pydantic import TypeAdapter

from ledger.cli.main import app
from ledger.cli.output import print_json
from ledger.commands import COMMAND_TYPES
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset, AssetCatalog
from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import DomainEvent
from ledger.domain.request import Request
from ledger.outcomes import Outcome

AGGREGATES = (Asset, AssetCatalog, AssetPool, MarginAccount, Request)


def event_classes() -> list[type[DomainEvent]]:
    found = []
    for aggregate in AGGREGATES:
        for value in vars(aggregate).values():
            if isinstance(value, type) and issubclass(value, DomainEvent):
                found.append(value)
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
            f"{cls.__qualname__}": cls.model_json_schema(mode="serialization")
            for cls in event_classes()
        },
        "outcome": Outcome.model_json_schema(mode="serialization"),
    }


@app.command()
def schema() -> None:
    """Print the JSON Schema of every command, event and of the outcome (one JSON document).

    Example: ledger schema | jq '.commands.transfer_in'
    """
    print_json(schema_document())
