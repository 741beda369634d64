"""`ledger timeline` and `ledger postmortem`: what happened to an asset or an account between
two moments."""

from ledger.cli.main import app  # noqa: F401  (commands register on it)
