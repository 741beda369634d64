"""Keeping the read models up to date: pull the notification log in bounded batches and apply
each batch to every model that has not seen it, with the model's tracking row, in one
transaction (exactly once, resumable after a crash at any point).

The library's ProjectionRunner follows PostgreSQL by LISTEN/NOTIFY one event per transaction,
and SQLite has no subscriptions at all (notes/eventsourcing-9.5.md §6); pulling batches works
on both backends and is what makes a rebuild run near the speed of reading the log.
"""

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

from eventsourcing.persistence import InfrastructureFactory, IntegrityError
from eventsourcing.utils import Environment
from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.persistence import (
    is_postgres,
    raw_position_column,
    raw_rows,
    raw_table,
    schema_setup_lock,
)
from projections.accounts import Accounts
from projections.asset_totals import AssetTotals
from projections.band_timeline import BandTimeline
from projections.event_index import EventIndex
from projections.journal import Journal
from projections.sql import Table
from projections.store import Positioned, PostgresReadStore, ReadModel, ReadStore, SQLiteReadStore

MODELS: tuple[type[ReadModel], ...] = (EventIndex, Accounts, AssetTotals, BandTimeline, Journal)
STORE_NAME = "read_models"  # PostgreSQL: the tracking table is read_models_tracking

Progress = Callable[[int, int], None]  # (position reached, log head)


class ProjectionStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    position: int  # the last log position applied
    head: int  # the log's last position
    lag: int  # events in the log after `position`


class UnknownProjection(ValueError):
    """A projection name that is not one of MODELS."""


# Where `ledger reconcile` notes the log position of each clean run (--since-checkpoint).
RECONCILE_CHECKPOINTS = Table(
    name="reconcile_checkpoints",
    columns=(("position", "int"), ("checked_at", "text")),
    primary_key=("position",),
)
STORE_TABLES = (*(table for model in MODELS for table in model.tables), RECONCILE_CHECKPOINTS)


class _SQLiteStore(SQLiteReadStore):
    tables = STORE_TABLES


class _PostgresStore(PostgresReadStore):
    tables = STORE_TABLES


class ReadModels:
    """The read models of one ledger's store, beside its events."""

    def __init__(self, ledger: Ledger, *, store_env: dict[str, str] | None = None) -> None:
        """The read models of `ledger`'s events, kept beside them; or, given `store_env` (the
        library settings of another store), kept there: a scratch replay to compare with."""
        self.ledger = ledger
        env = dict(ledger.env) if store_env is None else store_env
        self.is_postgres = is_postgres(env)
        self._factory = InfrastructureFactory.construct(Environment(STORE_NAME, env))
        with schema_setup_lock(env):
            store = self._factory.tracking_recorder(
                _PostgresStore if self.is_postgres else _SQLiteStore
            )
        assert isinstance(store, ReadStore)
        self.store: ReadStore = store
        self.models = {model.name: model(view=store) for model in MODELS}
        self._ensure_tracked(self.models)

    def _ensure_tracked(self, names: Iterable[str]) -> None:
        with self.store.transaction() as db:
            for name in names:
                self.store.ensure_tracked(db, self.key(name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._factory.close()

    def key(self, name: str) -> str:
        # SQLite keeps one tracking table per file: one key per model, named after the ledger.
        return f"{self.ledger.name}:{name}"

    def selected(self, names: Iterable[str] | None) -> list[ReadModel]:
        if names is None:
            return list(self.models.values())
        unknown = [n for n in names if n not in self.models]
        if unknown:
            raise UnknownProjection(
                f"no projection named {', '.join(unknown)}; there are: {', '.join(self.models)}"
            )
        return [self.models[n] for n in names]

    def positions(self) -> dict[str, int]:
        return {
            name: self.store.max_tracking_id(self.key(name)) or 0  # type: ignore[attr-defined]
            for name in self.models
        }

    def head(self) -> int:
        return self.ledger.recorder.max_notification_id() or 0

    # --- catching up ------------------------------------------------------------------------------

    def catch_up(
        self,
        names: Iterable[str] | None = None,
        *,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        until: int | None = None,
    ) -> int:
        """Apply every event the models have not seen (up to position `until` if given);
        returns the position they all reached. `should_stop` is asked between batches (a
        follower told to stop ends after one)."""
        models = self.selected(names)
        positions = self.positions()
        start = min(positions[m.name] for m in models)
        head = self.head() if until is None else until
        for _batch in range(limits.PROJECTION_BATCHES_MAX):
            notifications = self.ledger.recorder.select_notifications(
                start=start,
                limit=limits.PROJECTION_BATCH_SIZE,
                stop=until,
                inclusive_of_start=False,
            )
            if not notifications:
                break
            events = [(n.id, self.ledger.mapper.to_domain_event(n)) for n in notifications]
            last = notifications[-1].id
            try:
                self._apply(models, positions, events, last)
            except IntegrityError:
                # Another runner applied some of these first: carry on from where it got to.
                positions = self.positions()
                start = min(positions[m.name] for m in models)
                continue
            start = last
            if progress is not None:
                progress(last, max(head, last))
            if len(notifications) < limits.PROJECTION_BATCH_SIZE or should_stop():
                break
        else:
            raise RuntimeError(f"catch-up passed {limits.PROJECTION_BATCHES_MAX} batches")
        self._finish(models)
        return start

    def _apply(
        self,
        models: Sequence[ReadModel],
        positions: dict[str, int],
        events: list[Positioned],
        last: int,
    ) -> None:
        with self.store.transaction() as db:
            for model in models:
                # Another runner may have moved on since `positions` was read: ask again, under
                # the lock, which of these events this model has not seen.
                position = self.store.locked_position(db, self.key(model.name))
                unseen = [(p, e) for p, e in events if p > position]
                if unseen:
                    self.store.advance(db, self.key(model.name), last)
                    model.apply(db, unseen)
        for model in models:
            positions[model.name] = max(positions[model.name], last)

    def _finish(self, models: Sequence[ReadModel]) -> None:
        for model in models:
            for _chunk in range(limits.PROJECTION_BATCHES_MAX):
                with self.store.transaction() as db:
                    # Write-lock first (SQLite): a read-then-write transaction fails at once
                    # when another runner commits between the read and the write.
                    self.store.locked_position(db, self.key(model.name))
                    if not model.finish(db):
                        break

    def rebuild(
        self, names: Iterable[str] | None = None, *, progress: Progress | None = None
    ) -> int:
        """Drop the models' tables and tracking, and build them again from the first event."""
        models = self.selected(names)
        with self.store.transaction() as db:
            for model in models:
                self.store.drop_tables(db, model.tables)
                self.store.forget(db, self.key(model.name))
                self.store.ensure_tracked(db, self.key(model.name))
                self.store.create_tables(db, model.tables)
        return self.catch_up([m.name for m in models], progress=progress)

    def follow(
        self,
        *,
        poll_seconds: float = limits.PROJECTION_POLL_SECONDS,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Progress | None = None,
    ) -> None:
        """Catch up again and again until told to stop (SQLite has no notifications: poll)."""
        while not should_stop():
            self.catch_up(progress=progress, should_stop=should_stop)
            deadline = time.monotonic() + poll_seconds
            while not should_stop() and time.monotonic() < deadline:
                time.sleep(min(poll_seconds, limits.PROJECTION_STOP_CHECK_SECONDS))

    def status(self) -> list[ProjectionStatus]:
        positions = self.positions()
        head = self.head()
        return [
            ProjectionStatus(
                name=name,
                description=model.description,
                position=positions[name],
                head=head,
                lag=self._count_after(positions[name]),
            )
            for name, model in self.models.items()
        ]

    def _count_after(self, position: int) -> int:
        """Events after `position` (PostgreSQL positions have gaps: count, don't subtract)."""
        recorder: Any = self.ledger.recorder
        column = raw_position_column(recorder)
        [(count,)] = raw_rows(
            recorder,
            f"SELECT count(*) FROM {raw_table(recorder)} WHERE {column} > ?",
            (position,),
        )
        return int(count)
