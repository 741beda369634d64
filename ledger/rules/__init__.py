"""Pure decisions: no I/O, no clock, no aggregates, no logging. Each module is one DOMAIN.md topic."""
