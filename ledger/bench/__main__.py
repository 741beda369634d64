"""`python -m ledger.bench` (what scripts/bench runs)."""

from ledger.bench.cli import main

main()
