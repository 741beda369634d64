"""The `ledger` command line: it parses, calls Ledger and renders; no rules and no SQL here."""
