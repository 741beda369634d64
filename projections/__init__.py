"""Read models built from the ledger's event log, each applied exactly once with its tracking."""
