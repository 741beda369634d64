"""`ledger history`: an account's events, each with what it changed and the running balances
after it, between two business times."""

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.domain.account import MarginAccount
from ledger.domain.registry import event_name
from ledger.money import format_plain
from ledger.queries import parse_account_id
from ledger.times import format_time


class HistoryLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    position: int
    version: int
    event_id: str
    event_type: str
    effective_at: str
    request_id: str
    actor: str
    changes: dict[str, dict[str, str]]  # {"holding"|"liability"|"interest": {asset: signed}}
    holdings: dict[str, str]  # after the event
    liabilities: dict[str, str]
    interest: dict[str, str]
    status: str
    mode: str | None


def account_history(
    ledger: Ledger,
    account_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[HistoryLine]:
    """The account's events dated in [since, until], in order, with running balances."""
    from projections.runner import ReadModels
    from projections.sql import time_key

    user, name = parse_account_id(account_id)
    originator_id = MarginAccount.create_id(user, name)
    where, params = ["originator_id = ?"], [str(originator_id)]
    if since is not None:
        where.append("effective_at >= ?")
        params.append(time_key(since))
    if until is not None:
        where.append("effective_at <= ?")
        params.append(time_key(until))
    with ReadModels(ledger) as read_models:
        read_models.catch_up(["event_index"])
        with read_models.store.transaction(commit=False) as db:
            rows = db.query(
                "SELECT MIN(originator_version), MAX(originator_version) FROM {event_index} "
                f"WHERE {' AND '.join(where)}",
                params,
            )
            first, last = rows[0] if rows else (None, None)
            if first is None:
                return
            positions = dict(
                db.query(
                    "SELECT originator_version, position FROM {event_index} "
                    "WHERE originator_id = ? AND originator_version BETWEEN ? AND ?",
                    (str(originator_id), first, last),
                )
            )
    account: Any = (
        None if first == 1 else ledger.repository.get(originator_id, version=int(first) - 1)
    )
    version = int(first) - 1
    while version < last:
        batch = ledger.recorder.select_events(
            originator_id, gt=version, lte=last, limit=limits.PROJECTION_BATCH_SIZE
        )
        assert batch, (originator_id, version, last)
        for stored in batch:
            event: Any = ledger.mapper.to_domain_event(stored)
            before = _figures(account)
            account = event.mutate(account)
            after = _figures(account)
            version = event.originator_version
            yield HistoryLine(
                position=int(positions[version]),
                version=version,
                event_id=event.event_id,
                event_type=event_name(event),
                effective_at=format_time(event.effective_at),
                request_id=event.request_id,
                actor=event.actor,
                changes=_changes(before, after),
                holdings=_plain(after["holding"]),
                liabilities=_plain(after["liability"]),
                interest=_plain(after["interest"]),
                status=account.status.value,
                mode=None if account.mode is None else account.mode.value,
            )


def _figures(account: Any) -> dict[str, dict[str, Decimal]]:
    if account is None:
        return {"holding": {}, "liability": {}, "interest": {}}
    return {
        "holding": dict(account.holdings),
        "liability": dict(account.liabilities),
        "interest": dict(account.interest),
    }


def _changes(
    before: dict[str, dict[str, Decimal]], after: dict[str, dict[str, Decimal]]
) -> dict[str, dict[str, str]]:
    changes = {}
    for field in ("holding", "liability", "interest"):
        assets = sorted(set(before[field]) | set(after[field]))
        moved = {
            asset: after[field].get(asset, Decimal(0)) - before[field].get(asset, Decimal(0))
            for asset in assets
        }
        moved = {asset: delta for asset, delta in moved.items() if delta}
        if moved:
            changes[field] = {asset: format_plain(delta) for asset, delta in moved.items()}
    return changes


def _plain(quantities: dict[str, Decimal]) -> dict[str, str]:
    return {asset: format_plain(q) for asset, q in sorted(quantities.items()) if q}
