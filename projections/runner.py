"""Catching projections up by pulling the notification log in bounded batches.

The library's ProjectionRunner follows PostgreSQL by LISTEN/NOTIFY, but SQLite has no
subscriptions (notes/eventsourcing-9.5.md §6); pulling works on both, exactly once, resumably.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.utils import Environment

from ledger import limits
from ledger.application import Ledger
from ledger.persistence import schema_setup_lock
from projections.asset_totals import (
    AssetTotalsProjection,
    AssetTotalsView,
    PostgresAssetTotalsView,
    SQLiteAssetTotalsView,
)


def tracking_key(ledger: Ledger, projection_name: str) -> str:
    # SQLite keeps one tracking table per file, keyed by this name: one key per projection.
    return f"{ledger.name}:{projection_name}"


@contextmanager
def open_asset_totals(ledger: Ledger) -> Iterator[AssetTotalsProjection]:
    """The asset totals projection over the ledger's database; its connections closed after."""
    env = dict(ledger.env)
    # Named after the projection, so on PostgreSQL its tracking table is <name>_tracking.
    factory = InfrastructureFactory.construct(Environment(AssetTotalsProjection.name, env))
    view_class: type[Any] = (
        PostgresAssetTotalsView
        if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
        else SQLiteAssetTotalsView
    )
    with schema_setup_lock(env):
        view = factory.tracking_recorder(view_class)
    assert isinstance(view, AssetTotalsView)
    try:
        yield AssetTotalsProjection(view=view)
    finally:
        factory.close()


def catch_up(ledger: Ledger, projection: AssetTotalsProjection) -> int:
    """Apply every event not yet applied; returns the log position reached."""
    key = tracking_key(ledger, projection.name)
    view: Any = projection.view
    position = view.max_tracking_id(key) or 0
    for _batch in range(limits.PROJECTION_BATCHES_MAX):
        notifications = ledger.recorder.select_notifications(
            start=position,
            limit=limits.PROJECTION_BATCH_SIZE,
            topics=projection.topics,
            inclusive_of_start=False,
        )
        if not notifications:
            return position
        events = [ledger.mapper.to_domain_event(n) for n in notifications]
        position = notifications[-1].id
        projection.process_batch(events, Tracking(key, position))
        if len(notifications) < limits.PROJECTION_BATCH_SIZE:
            return position
    raise RuntimeError(f"catch-up passed {limits.PROJECTION_BATCHES_MAX} batches")
