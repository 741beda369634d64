"""Hot asset (figure 3, PostgreSQL only): 1, 2, 4 worker processes, each with its own Ledger on
the same fresh schema, all transferring the same capped asset for distinct users.

A fixed total of commands is split among the workers, who start together at a barrier. The
upper limit is set so that the workload crosses it (about a quarter of the transfers are
refused), then the cap is checked: the pool's T never above U, T equal to the sum of the accepted
quantities, and no transfer-in in the log that left T above U (`cap_overshoots`).

Retries: the write path holds the log's write lock from its first read to its commit, so
writers queue instead of conflicting; `Ledger.write_statistics` counts the transactions, the
retries (decided again after a conflicting append: none are expected) and the time spent
waiting for the lock, which is what a hot asset costs now.
"""

import multiprocessing
import queue
import time
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import IntegrityError, Recording
from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.bench.core import (
    BenchConfig,
    Figure,
    Timing,
    Unavailable,
    fresh_store,
    progress,
    rate,
)

SECTION = "hot"
QUANTITY = Decimal(10)
WARMUP_PER_WORKER = 5
ACCEPTED_SHARE = Decimal("0.75")  # of all transfers, what U lets in
BARRIER_SECONDS = 120
RESULT_SECONDS = 900


class CountingLedger(Ledger):
    """A Ledger that also counts the library path's conflicts (jobs and tools that call save);
    the write path's own are in `write_statistics`."""

    name = Ledger.name  # the library names tables after the class unless told

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.saves = 0
        self.library_conflicts = 0
        self.counted_by = "Ledger.write_statistics.retries, and save() calls that raised"

    @property
    def conflicts(self) -> int:
        return self.write_statistics.retries + self.library_conflicts

    def reset_counts(self) -> None:
        self.saves = self.library_conflicts = 0
        self.write_statistics = type(self.write_statistics)()

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        self.saves += 1
        try:
            return super().save(*objs, **kwargs)
        except IntegrityError:
            self.library_conflicts += 1
            raise


class WorkerResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    worker: int
    started: float  # perf_counter (CLOCK_MONOTONIC on Linux: one clock for all processes)
    finished: float
    commands: int
    accepted: int
    rejected: int
    gave_up: int  # SaveRetriesExhausted: conflicts past the ledger's retry bound
    accepted_quantity: str  # of all this worker's transfers, warm-up included
    saves: int
    conflicts: int
    counted_by: str
    lock_wait_seconds: float  # in the write path's begin: the queue for the log's write lock
    transactions: int = 0  # committed by this worker (its own commands and those it served)
    handed_off: int = 0  # its commands another worker decided (ledger/handoff.py)
    speculated: int = 0  # transactions decided before taking the lock (LogWriter.speculate)
    speculation_misses: int = 0  # of those, found the log moved at commit: decided again
    error: str | None = None


def serve(index: int, tasks: Any, results: Any, barriers: dict[int, Any]) -> None:
    """A worker process: for each task (url, transfers, workers) it runs one worker's part of
    a run, meeting the run's other workers at the barrier for that many workers."""
    while (task := tasks.get()) is not None:
        url, count, workers = task
        barrier = barriers[workers]
        try:
            results.put(_work(url, index, count, barrier).model_dump())
        except Exception as error:  # reported to the parent, which fails the section
            barrier.abort()
            results.put({"worker": index, "error": f"{type(error).__name__}: {error}"})


def _work(url: str, index: int, count: int, barrier: Any) -> WorkerResult:
    from ledger.bench.commands import capped_transfers
    from ledger.errors import SaveRetriesExhausted

    warmup = capped_transfers(WARMUP_PER_WORKER, f"hot{index}w", quantity=str(QUANTITY))
    commands = capped_transfers(count, f"hot{index}", quantity=str(QUANTITY))
    accepted_quantity = Decimal(0)
    with CountingLedger(url) as ledger:
        for command in warmup:
            if ledger.execute(command).is_accepted:
                accepted_quantity += QUANTITY
        ledger.reset_counts()
        barrier.wait(timeout=BARRIER_SECONDS)
        accepted = rejected = gave_up = 0
        started = time.perf_counter()
        for command in commands:
            try:
                outcome = ledger.execute(command)
            except SaveRetriesExhausted:
                gave_up += 1
                continue
            if outcome.is_accepted:
                accepted += 1
                accepted_quantity += QUANTITY
            else:
                rejected += 1
        finished = time.perf_counter()
        return WorkerResult(
            worker=index,
            started=started,
            finished=finished,
            commands=count,
            accepted=accepted,
            rejected=rejected,
            gave_up=gave_up,
            accepted_quantity=str(accepted_quantity),
            saves=ledger.saves,
            conflicts=ledger.conflicts,
            counted_by=ledger.counted_by,
            lock_wait_seconds=ledger.write_statistics.lock_wait_seconds,
            transactions=ledger.write_statistics.transactions,
            handed_off=ledger.write_statistics.handed_off,
            speculated=ledger.write_statistics.speculated,
            speculation_misses=ledger.write_statistics.speculation_misses,
        )


class Workers:
    """Worker processes started once for the whole section (a spawned interpreter costs seconds
    of imports), each with a task queue; a run with N workers uses the first N of them."""

    def __init__(self, counts: list[int]) -> None:
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited pools
        # Held here for the processes' lifetime: a spawned child unpickles its arguments after
        # start() returns, and a semaphore the parent let go of is gone by then.
        self.barriers = {count: context.Barrier(count) for count in counts}
        self.results: Any = context.Queue()
        self.tasks: list[Any] = [context.Queue() for _ in range(max(counts))]
        self.processes = [
            context.Process(
                target=serve, args=(index, tasks, self.results, self.barriers), daemon=True
            )
            for index, tasks in enumerate(self.tasks)
        ]
        for process in self.processes:
            process.start()

    def run(self, url: str, shares: list[int]) -> list[WorkerResult]:
        for tasks, count in zip(self.tasks, shares, strict=False):
            tasks.put((url, count, len(shares)))
        answers: list[dict[str, Any]] = []
        try:
            for _ in shares:
                answers.append(self.results.get(timeout=RESULT_SECONDS))
        except queue.Empty:
            raise RuntimeError("a hot-asset worker gave no result") from None
        errors = [a["error"] for a in answers if a.get("error")]
        if errors:
            raise RuntimeError(f"hot-asset worker failed: {errors[0]}")
        return sorted((WorkerResult.model_validate(a) for a in answers), key=lambda r: r.worker)

    def close(self) -> None:
        for tasks in self.tasks:
            tasks.put(None)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


class HotRun(BaseModel):
    """One run with N workers: throughput, conflicts, and the cap check."""

    model_config = ConfigDict(frozen=True)

    workers: int
    rate: float
    commands: int
    accepted: int
    rejected: int
    gave_up: int
    saves: int
    conflicts: int
    counted_by: str
    lock_wait_ms_per_command: float
    transactions: int
    handed_off: int
    speculated: int
    speculation_misses: int
    upper_limit: str
    pool_total: str
    accepted_quantity: str
    overshoots: int  # transfer-ins in the log that left T above U, plus 1 if T > U at the end
    consistent: bool  # T equals the sum of the accepted quantities


def hot_run(config: BenchConfig, processes: Workers, workers: int) -> HotRun:
    from ledger.audit.decisions import cap_overshoots
    from ledger.bench.commands import CAPPED, set_up_capped_asset
    from ledger.domain.asset_pool import AssetPool

    total = config.hot_commands
    shares = [total // workers + (1 if n < total % workers else 0) for n in range(workers)]
    transfers = total + WARMUP_PER_WORKER * workers
    # A multiple of 5 transfers: 80% of U is then a whole number of them, so T reaches band B
    # (where the fixed quota, not 80% of U, limits a transfer) and the workload ends at U.
    upper_limit = QUANTITY * 5 * int(transfers * ACCEPTED_SHARE / 5)
    with fresh_store("postgres", config) as url:
        with Ledger(url) as ledger:
            set_up_capped_asset(ledger, upper_limit=str(upper_limit))
        results = processes.run(url, shares)
        with Ledger(url) as ledger:
            pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(CAPPED))
            found = cap_overshoots(ledger)
    pool_total: Decimal = pool.platform_total
    accepted_quantity = sum((Decimal(r.accepted_quantity) for r in results), Decimal(0))
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    return HotRun(
        workers=workers,
        rate=rate(total, elapsed),
        commands=total,
        accepted=sum(r.accepted for r in results),
        rejected=sum(r.rejected for r in results),
        gave_up=sum(r.gave_up for r in results),
        saves=sum(r.saves for r in results),
        conflicts=sum(r.conflicts for r in results),
        counted_by=results[0].counted_by,
        lock_wait_ms_per_command=1000 * sum(r.lock_wait_seconds for r in results) / total,
        transactions=sum(r.transactions for r in results),
        handed_off=sum(r.handed_off for r in results),
        speculated=sum(r.speculated for r in results),
        speculation_misses=sum(r.speculation_misses for r in results),
        upper_limit=str(upper_limit),
        pool_total=str(pool_total),
        accepted_quantity=str(accepted_quantity),
        overshoots=len(found) + (1 if pool_total > upper_limit else 0),
        consistent=pool_total == accepted_quantity,
    )


def run(config: BenchConfig) -> list[Figure] | Unavailable:
    if "postgres" not in config.backends:
        return Unavailable(
            section=SECTION,
            name="hot asset",
            backend=None,
            reason="PostgreSQL only (SQLite has one writer at a time); not asked for",
        )
    counts = sorted(set(config.hot_workers))
    measured: dict[int, list[HotRun]] = {}
    processes = Workers(counts)
    try:
        # Round after round of every worker count, not all runs of one count and then the next:
        # the disk's speed drifts within minutes, and the ratio to 1 worker must not carry it.
        for number in range(config.runs):
            for workers in counts:
                progress(f"postgres: hot asset, {workers} worker(s), run {number + 1}")
                measured.setdefault(workers, []).append(hot_run(config, processes, workers))
    finally:
        processes.close()
    return _figures(measured)


def _figures(measured: dict[int, list[HotRun]]) -> list[Figure]:
    base_workers = min(measured)
    base = Timing.of([r.rate for r in measured[base_workers]])
    figures = []
    for workers, runs in measured.items():
        timing = Timing.of([r.rate for r in runs])
        last = runs[-1]
        notes: dict[str, str | int | float] = {
            "accepted": last.accepted,
            "rejected": last.rejected,
            "gave_up": last.gave_up,
            "upper_limit": last.upper_limit,
            "pool_total": last.pool_total,
            "accepted_quantity": last.accepted_quantity,
            # Commands decided by another worker than their own (ledger/handoff.py), and
            # commands per commit, in the last run.
            "handed_off": last.handed_off,
            "commands_per_transaction": round(last.commands / max(last.transactions, 1), 2),
            "speculated": last.speculated,
            "speculation_misses": last.speculation_misses,
        }
        figures.append(
            Figure.judged(
                section=SECTION,
                name=f"{workers} worker(s), total",
                backend="postgres",
                unit="cmds/s",
                value=timing,
                ceiling_name=f"{base_workers} worker(s) cmds/s",
                ceiling=base,
                target=0.7 if workers == 4 else None,
                notes=notes,
            )
        )
        figures.append(_retries(workers, runs))
        figures.append(_overshoot(workers, runs))
    return figures


def _retries(workers: int, runs: list[HotRun]) -> Figure:
    last = runs[-1]
    notes: dict[str, str | int | float] = {
        "counted_by": last.counted_by,
        "conflicts_last_run": last.conflicts,
        "lock_wait_ms_per_command_last_run": round(last.lock_wait_ms_per_command, 3),
    }
    return Figure.judged(
        section=SECTION,
        name=f"{workers} worker(s), retries per command",
        backend="postgres",
        unit="retries/cmd",
        value=Timing.of([r.conflicts / r.commands for r in runs]),
        better="lower",
        notes=notes,
    )


def _overshoot(workers: int, runs: list[HotRun]) -> Figure:
    """Zero is the only right answer: the figure is met when no run overshot and every run's
    T equals what was accepted."""
    worst = max(r.overshoots for r in runs)
    consistent = all(r.consistent for r in runs)
    return Figure(
        section=SECTION,
        name=f"{workers} worker(s), cap overshoots",
        backend="postgres",
        unit="count",
        value=Timing.of([float(r.overshoots) for r in runs]),
        target=0.0,
        better="lower",
        met=worst == 0 and consistent,
        notes={
            "pool_total_equals_accepted": "yes" if consistent else "NO",
            "pool_total_le_upper_limit": "yes"
            if all(Decimal(r.pool_total) <= Decimal(r.upper_limit) for r in runs)
            else "NO",
        },
    )
