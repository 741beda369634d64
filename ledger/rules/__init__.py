"""Pure decisions: no I/O, no clock, no aggregates, no logging; one module per DOMAIN.md topic."""
