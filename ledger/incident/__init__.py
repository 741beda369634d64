"""Incident post-mortems from the event log alone: timelines, reports with charts,
counterfactual replay (what if) and offline bundles. The Python API a notebook uses:

    from ledger.incident import timeline, write_postmortem, what_if, parse_overrides
    for entry in timeline(ledger, asset="ABC", since=t1, until=t2): print(entry.text)
    write_postmortem(ledger, asset="ABC", since=t1, until=t2, out=Path("incident-abc"))
    overrides = parse_overrides(["ABC.upper_limit=500000"])
    report = what_if(ledger, since=t1, until=t2, overrides=overrides)
    write_bundle(ledger, since=t1, until=t2, out=Path("incident.zip")); verify_bundle(path)

Each name is imported on first use: every `ledger` command imports this package (its CLI
lives beside it), and should not pay for matplotlib, jinja2 or pyarrow unless it draws or writes.
"""

from importlib import import_module
from typing import Any

# Eager: the function shares its module's name, which would otherwise shadow it once imported.
from ledger.incident.timeline import timeline as timeline

_EXPORTS = {
    "TimelineEntry": "ledger.incident.timeline",
    "TimelineWindow": "ledger.incident.timeline",
    "TimelineKind": "ledger.incident.timeline_kinds",
    "write_postmortem": "ledger.incident.postmortem.report",
    "PostmortemReport": "ledger.incident.postmortem.report",
    "postmortem_figures": "ledger.incident.postmortem.figures",
    "PostmortemFigures": "ledger.incident.postmortem.figures",
    "what_if": "ledger.incident.whatif",
    "WhatIfReport": "ledger.incident.whatif_report",
    "parse_overrides": "ledger.incident.overrides",
    "ParameterOverrides": "ledger.incident.overrides",
    "write_bundle": "ledger.incident.bundle",
    "verify_bundle": "ledger.incident.bundle_verify",
}
__all__ = sorted([*_EXPORTS, "timeline"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
