"""Keeping the read models up to date: pull the notification log in bounded batches and apply
each batch to every model that has not seen it, with the model's tracking row, in one
transaction (exactly once, resumable after a crash at any point).

The library's ProjectionRunner follows PostgreSQL by LISTEN/NOTIFY one event per transaction,
and SQLite has no subscriptions at all (notes/eventsourcing-9.5.md §6); pulling batches works
on both backends and is what makes a rebuild run near the speed of reading the log.
"""

import gc
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

from eventsourcing.persistence import InfrastructureFactory, IntegrityError
from eventsourcing.utils import Environment
from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.log import is_plain_json, notification_page, raw_page
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
from projections.events import Record, decode
from projections.journal import Journal
from projections.sql import Db, Table, Writer
from projections.store import PostgresReadStore, ReadModel, ReadStore, SQLiteReadStore

MODELS: tuple[type[ReadModel], ...] = (EventIndex, Accounts, AssetTotals, BandTimeline, Journal)
STORE_NAME = "read_models"  # PostgreSQL: the tracking table is read_models_tracking

Progress = Callable[[int, int], None]  # (position reached, log head)
# A rebuild applies this many pages of the log (limits.PROJECTION_BATCH_SIZE events each) per
# transaction: fewer commits and fewer writes of the rows many events change (accounts,
# balances), while a crash loses little and the write lock is never held long.
REBUILD_PAGES_PER_TRANSACTION = 50
REBUILD_GC_THRESHOLD = 100_000  # new containers between collections of the youngest generation
REBUILD_SWITCH_INTERVAL_SECONDS = 0.0002  # sys.setswitchinterval while rebuilding


@contextmanager
def _collecting_less() -> Iterator[None]:
    """Python's cyclic garbage collector, run less often while a rebuild decodes and folds the
    whole log: a collection every 700 new containers, each also walking the objects kept
    alive meanwhile (what the models keep in memory), cost a tenth of a rebuild. Its objects
    are acyclic, freed by reference counting; the collector still runs, less often."""
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.freeze()  # what existed before (modules, classes) is never walked again meanwhile
    gc.set_threshold(REBUILD_GC_THRESHOLD, *thresholds[1:])
    # The writer thread needs the interpreter back after each statement the database ran
    # without it: waiting the default 5 ms for it each time would starve the writes.
    sys.setswitchinterval(REBUILD_SWITCH_INTERVAL_SECONDS)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextmanager
def _writing_behind(db: Db, bulk: bool) -> Iterator[Writer | None]:
    """A writer thread for a rebuild's transaction, stopped before the transaction ends."""
    if not bulk:
        yield None
        return
    writer = Writer()
    try:
        yield writer
    finally:
        db.writer = None
        writer.close()


def _apply_unseen(model: ReadModel, db: Db, records: list[Record], position: int) -> None:
    if records[0].position > position:
        model.apply(db, records)
        return
    unseen = [record for record in records if record.position > position]
    if unseen:
        model.apply(db, unseen)


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
        recorder = ledger.recorder
        self._events = (  # the events table, when the read models are beside it
            (raw_table(recorder), raw_position_column(recorder))
            if store_env is None and is_plain_json(ledger)
            else None
        )
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

    # --- catching up ---------------------------------------------------------------------------

    def catch_up(
        self,
        names: Iterable[str] | None = None,
        *,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        until: int | None = None,
        finish: bool = True,
    ) -> int:
        """Apply every event the models have not seen (up to position `until` if given);
        returns the position they all reached. `should_stop` is asked between batches (a
        follower told to stop ends after one). `finish=False` leaves the models' finishing
        step (the accounts' valuations) to the next catch-up that finishes: for a caller that
        reads no valuation; readers value a row still marked stale themselves."""
        models = self.selected(names)
        position = self._apply_log(
            models, fresh=False, progress=progress, should_stop=should_stop, until=until
        )
        if finish:
            self._finish(models)
        return position

    def rebuild(
        self, names: Iterable[str] | None = None, *, progress: Progress | None = None
    ) -> int:
        """Drop the models' tables and tracking, and build them again from the first event.

        The same models as a catch-up, loading empty tables: many pages per transaction, rows
        nobody can have written yet inserted plainly (COPY on PostgreSQL), the secondary
        indexes created once at the end instead of updated row by row.
        """
        models = self.selected(names)
        with self.store.transaction() as db:
            for model in models:
                self.store.drop_tables(db, model.tables)
                self.store.forget(db, self.key(model.name))
                self.store.ensure_tracked(db, self.key(model.name))
                self.store.create_tables(db, model.tables, indexes=False)
        with _collecting_less():
            position = self._apply_log(
                models, fresh=True, progress=progress, should_stop=lambda: False, until=None
            )
        # (Were it stopped before, opening the read models again creates them.)
        with self.store.transaction() as db:
            for model in models:
                self.store.create_indexes(db, model.tables)
        self._finish(models)
        return position

    def _apply_log(
        self,
        models: Sequence[ReadModel],
        *,
        fresh: bool,
        progress: Progress | None,
        should_stop: Callable[[], bool],
        until: int | None,
    ) -> int:
        """Apply the log after the models' positions, a transaction at a time; the position
        they all reached. `fresh`: the models' tables were just created, empty."""
        positions = self.positions()
        head = self.head() if until is None else until
        pages = REBUILD_PAGES_PER_TRANSACTION if fresh else 1
        for model in models:
            model.begin(fresh=fresh)
        try:
            for _transaction in range(limits.PROJECTION_BATCHES_MAX):
                try:
                    last, is_end = self._apply_pages(models, positions, pages, until, fresh)
                except IntegrityError:
                    # Another runner applied some of these first: carry on from where it got to.
                    for model in models:
                        model.begin(fresh=False)
                    positions = self.positions()
                    continue
                if last is not None and progress is not None:
                    progress(last, max(head, last))
                if is_end or should_stop():
                    return min(positions[m.name] for m in models)
            raise RuntimeError(f"catch-up passed {limits.PROJECTION_BATCHES_MAX} batches")
        finally:
            for model in models:
                model.begin(fresh=False)  # forget what was kept in memory

    def _apply_pages(
        self,
        models: Sequence[ReadModel],
        positions: dict[str, int],
        pages: int,
        until: int | None,
        fresh: bool,
    ) -> tuple[int | None, bool]:
        """One transaction: up to `pages` pages of the log applied to every model that has not
        seen them, with its tracking row. The last position applied (None: nothing was), and
        whether the log ended."""
        size = limits.PROJECTION_BATCH_SIZE
        read = raw_page if fresh else notification_page
        # The first page is read before the write lock is taken, as a follower reads: the
        # lock is only held to apply what was read (and, rebuilding, the pages after it).
        rows = read(
            self.ledger, after=min(positions[m.name] for m in models), limit=size, stop=until
        )
        if not rows:
            return None, True
        try:
            with self.store.transaction() as db, _writing_behind(db, fresh) as writer:
                # Another runner may have moved on since `positions` was read: ask again, under
                # the lock, which events each model has not seen.
                locked = {m.name: self.store.locked_position(db, self.key(m.name)) for m in models}
                for model in models:
                    if locked[model.name] != positions[model.name]:
                        model.begin(fresh=False)  # what it kept is another runner's past
                db.bulk = fresh and locked == {m.name: positions[m.name] for m in models}
                db.events = self._events
                db.writer = writer if db.bulk else None
                last, is_end = rows[-1][0], False
                for page in range(pages):
                    if page:
                        rows = read(self.ledger, after=last, limit=size, stop=until)
                    if rows:
                        records = decode(rows)
                        for model in models:
                            _apply_unseen(model, db, records, locked[model.name])
                        last = rows[-1][0]
                    if len(rows) < size:
                        is_end = True
                        break
                for model in models:
                    if last > locked[model.name]:
                        self.store.advance(db, self.key(model.name), last)
                        model.flush(db)
                db.wait()  # before the commit
        except BaseException:
            for model in models:
                model.begin(fresh=False)  # rolled back: memory no longer matches the tables
            raise
        for model in models:
            positions[model.name] = max(locked[model.name], last)
        return last, is_end

    def _finish(self, models: Sequence[ReadModel]) -> None:
        for model in models:
            for _chunk in range(limits.PROJECTION_BATCHES_MAX):
                with self.store.transaction() as db:
                    # Write-lock first (SQLite): a read-then-write transaction fails at once
                    # when another runner commits between the read and the write.
                    self.store.locked_position(db, self.key(model.name))
                    if not model.finish(db):
                        break

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
