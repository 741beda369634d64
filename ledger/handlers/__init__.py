"""Command handlers: load state, call the pure rules, tell the aggregates what was decided."""
