"""The ledger as an HTTP service (`ledger serve`): commands, queries, roles by API key, the
risk officers' band page and the OpenAPI document. Imported only by `ledger serve` and its tests:
the other commands never pay for FastAPI."""
