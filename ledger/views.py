"""The JSON objects the `--json` queries print, built in one place: `ledger` commands print them
as one line each, the HTTP service answers with the same bytes."""

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ledger.audit.chain import Digest


def json_line(data: Any) -> str:
    """One JSON document as the one line the CLI prints (ASCII, newline-terminated)."""
    return json.dumps(data, ensure_ascii=True) + "\n"


def model_json(model: BaseModel) -> dict[str, Any]:
    """A read model's answer (an account, an explanation, a report): its fields as JSON."""
    return model.model_dump(mode="json")


def models_json(models: Sequence[BaseModel]) -> list[dict[str, Any]]:
    """A list answer (assets, accounts, band changes, the trial balance)."""
    return [model_json(model) for model in models]


def digest_json(head: Digest | None) -> dict[str, Any] | None:
    """`ledger digest --json`: the chain's head, or null for an empty log."""
    if head is None:
        return None
    return {"position": head.position, "hash": head.hash, "digest": str(head)}
