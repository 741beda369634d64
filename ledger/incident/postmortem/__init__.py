"""`ledger postmortem`: a self-contained incident report of one asset over a window — an HTML
page with PNG charts and the same figures as JSON (figures.py computes, charts.py draws,
report.py writes). matplotlib is imported only when charts are drawn."""
