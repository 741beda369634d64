"""`ledger simulate`: a seeded, deterministic platform history, produced as ledger commands.

Pure: no I/O, no clock, no global random and no floats. The same seed and sizes give the same
commands, dict for dict. The generator keeps a rough model of the ledger (holdings, debt, the
cap's platform totals T, margin levels) only to size realistic requests; the ledger decides every
outcome, and a wrong guess by the model yields a rejection, never an invalid command: whatever
the model believes, a command is only sent when it is valid in every state the ledger can be in
(mode switches, verifications and asset choices never depend on a guessed outcome).

The story: USDT, BTC, ETH and a few capped assets (ranks 7-10, collateral ladders, upper limits)
are listed; users open cross, portfolio and isolated accounts (some through the opening risk
check), fill the capped assets past their caps, borrow and trade into leveraged positions, switch
modes; mid-run one capped asset crashes 40-60% over a few hours, and the hourly risk sweep after
every price mark finds margin calls, auto top-ups and liquidations, some with deficits for the
insurance fund. Afterwards users repay, de-risk, withdraw or buy the dip.
"""

from ledger.simulate.simulation import (
    ACCOUNTS_MAX,
    ACCOUNTS_MIN,
    HOURS_MAX,
    HOURS_MIN,
    SEED_MAX,
    generate,
)
from ledger.simulate.summary import summarize

__all__ = [
    "ACCOUNTS_MAX",
    "ACCOUNTS_MIN",
    "HOURS_MAX",
    "HOURS_MIN",
    "SEED_MAX",
    "generate",
    "summarize",
]
