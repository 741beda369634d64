"""Incident post-mortems from the event log alone: timelines, reports with charts,
counterfactual replay (what if) and offline bundles."""
