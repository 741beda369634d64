"""collateral-ledger: an event-sourced, platform-wide collateral ledger for margin trading.

The public API is `Ledger` (one method per command, returning a typed outcome) and the command
models of `ledger.commands`.
"""

import decimal

if not __debug__:  # pragma: no cover - the guard itself
    raise RuntimeError(
        "collateral-ledger refuses to run under `python -O`: its assertions are part of its safety"
    )

from ledger import limits

# A float mixed into Decimal arithmetic is a bug: make it fail loudly in every thread. Inexact
# results stay possible (a ratio, a price conversion) but never from too few digits: see limits.
for _context in (decimal.DefaultContext, decimal.getcontext()):
    _context.traps[decimal.FloatOperation] = True
    _context.prec = limits.DECIMAL_PRECISION

from ledger.application import Ledger  # noqa: E402
from ledger.outcomes import Outcome  # noqa: E402

__all__ = ["Ledger", "Outcome"]
