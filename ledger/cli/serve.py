"""`ledger serve` and `ledger keys`: the ledger as an HTTP service with roles by API key."""

from ledger.cli.main import app  # noqa: F401  (commands register on it)
