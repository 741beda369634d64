"""`ledger whatif` and `ledger bundle`: counterfactual replay, and an archive an auditor checks
offline."""

from ledger.cli.main import app  # noqa: F401  (commands register on it)
