"""Recording a movement of a cap-eligible asset on its pool, the platform total T (DOMAIN.md §3)."""

from decimal import Decimal
from typing import Any

from ledger.domain.asset_pool import AssetPool
from ledger.domain.base import Stamp
from ledger.unit_of_work import UnitOfWork


def move_platform_total(
    unit: UnitOfWork,
    pool: AssetPool | None,
    *,
    account_id: str,
    movement: str,
    change: Decimal,
    stamp: Stamp,
    decision: dict[str, Any] | None = None,
) -> None:
    """Add `change` (negative: remove) to T; nothing for an untracked asset or no change."""
    if pool is None or change == 0:
        return
    move = pool.increase if change > 0 else pool.decrease
    move(
        account_id=account_id,
        movement=movement,
        quantity=abs(change),
        decision=decision,
        stamp=stamp,
    )
    unit.change(pool)
