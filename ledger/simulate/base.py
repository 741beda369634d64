"""The simulation's shared clock, random source, command ids and agenda of planned steps."""

import heapq
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from random import Random
from typing import Any

from ledger.money import format_plain
from ledger.simulate.accounts import Account
from ledger.times import format_time

ADMIN = "admin:ops"
RISK_ADMIN = "admin:risk"
ENGINE = "engine:matching"


@dataclass(order=True)
class Step:
    hour: int
    minute: int
    seq: int
    index: int = field(compare=False)  # the account, or -1 for the platform
    action: str = field(compare=False)


class SimulationBase:
    """The state every part of the simulation shares, and the commands it writes."""

    rng: Random
    seed: int
    hours: int
    start: datetime
    crash_start: int
    crash_end: int
    count: int
    seq: int
    agenda: list[Step]

    def _command(self, type_: str, hour: int, minute: int, **fields: Any) -> dict[str, Any]:
        self.count += 1
        at = self.start + timedelta(hours=hour, minutes=minute)
        return {
            "type": type_,
            "request_id": f"s{self.seed}-{self.count:06d}",
            "effective_at": format_time(at),
            **fields,
        }

    def _schedule(self, hour: int, minute: int, index: int, action: str) -> None:
        assert 0 <= hour < self.hours and 0 <= minute < 60, (hour, minute, action)
        self.seq += 1
        heapq.heappush(self.agenda, Step(hour, minute, self.seq, index, action))

    def _on(
        self, type_: str, account: Account, hour: int, minute: int, **fields: Any
    ) -> dict[str, Any]:
        """A command on one account; Decimal fields are written as plain decimal strings."""
        plain = {k: format_plain(v) if isinstance(v, Decimal) else v for k, v in fields.items()}
        return self._command(type_, hour, minute, user=account.user, account=account.name, **plain)

    def _by_user(
        self, type_: str, account: Account, hour: int, minute: int, **fields: Any
    ) -> dict[str, Any]:
        return self._command(type_, hour, minute, user=account.user, **fields)
