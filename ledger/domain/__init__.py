"""Aggregates: they record decided facts; they never decide."""
