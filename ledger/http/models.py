"""Response models of the HTTP service that no other part of the ledger has (for OpenAPI)."""

from pydantic import BaseModel, ConfigDict


class DigestView(BaseModel):
    """`ledger digest --json`: the hash chain's head."""

    model_config = ConfigDict(frozen=True)

    position: int
    hash: str
    digest: str  # POSITION:HASH, what an auditor writes down


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str
    position: int  # the log's last position
