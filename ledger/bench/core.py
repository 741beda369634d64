"""What every benchmark section shares: fresh stores, repeated timings, and the figures."""

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Backend = Literal["sqlite", "postgres"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgres")
POSTGRES_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"

# The sections of scripts/bench, in the order they run (`--only NAME`).
SECTIONS = (
    "ceilings",
    "commands",
    "batched",
    "hot",
    "rebuild",
    "time-travel",
    "http",
    "instructions",
    "growth",
)


class BenchConfig(BaseModel):
    """The sizes and switches of one run (every size is a flag of scripts/bench)."""

    model_config = ConfigDict(frozen=True)

    backends: tuple[Backend, ...] = ("sqlite", "postgres")
    postgres_url: str = POSTGRES_URL_DEFAULT
    runs: int = 3  # repetitions of each timed measurement: median and spread
    quick: bool = False
    commands: int = 2000  # decided commands per run (capped transfer-ins)
    mixed_accounts: int = 200  # simulator size for the mixed workload
    mixed_hours: int = 24
    batch_size: int = 1000
    hot_workers: tuple[int, ...] = (1, 2, 4)
    hot_commands: int = 1000  # per worker count, all workers together
    rebuild_events: tuple[int, ...] = (100_000, 1_000_000)
    time_travel_stores: tuple[int, ...] = (10_000, 1_000_000)
    time_travel_account_events: tuple[int, ...] = (1_000, 100_000)
    time_travel_queries: int = 200
    growth_events: tuple[int, ...] = (100_000, 1_000_000)  # history before figure 1 again
    growth_users: int = 1000  # users of that generated history
    ceiling_rows: int = 2000  # raw single-row commits, and 2-row transactions, per run
    ceiling_batch_rows: int = 20_000  # raw rows written 1,000 per transaction, per run
    read_rows: int = 100_000  # raw rows read and decoded, per run
    seed: int = 1  # of the simulator's mixed workload and the generated histories

    @classmethod
    def quick_sizes(cls) -> dict[str, Any]:
        """`--quick`: every size tiny, the whole run (both backends) well under a minute; a
        smoke test of the suite, its figures meaningless as measurements."""
        return {
            "quick": True,
            "runs": 1,
            "commands": 100,
            "mixed_accounts": 30,
            "mixed_hours": 6,
            "batch_size": 50,
            "hot_commands": 80,
            "rebuild_events": (1_000, 5_000),
            "time_travel_stores": (1_000, 5_000),
            "time_travel_account_events": (100, 500),
            "time_travel_queries": 20,
            "growth_events": (1_000, 4_000),
            "growth_users": 100,
            "ceiling_rows": 200,
            "ceiling_batch_rows": 2_000,
            "read_rows": 5_000,
        }


class Unavailable(BaseModel):
    """A section or figure the run could not measure, and why (not a failure: e.g. a ledger
    method not written yet, or a PostgreSQL-only figure on SQLite)."""

    model_config = ConfigDict(frozen=True)

    section: str
    name: str
    backend: Backend | None
    reason: str


class Timing(BaseModel):
    """One measured quantity over several runs."""

    model_config = ConfigDict(frozen=True)

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, samples: list[float]) -> "Timing":
        return cls(
            median=statistics.median(samples),
            low=min(samples),
            high=max(samples),
            runs=len(samples),
        )


class Figure(BaseModel):
    """One row of the report: a ledger figure, and the ceiling it is judged against.

    `ratio` is value / ceiling (both medians of the same run); `target` the ratio the issue asks
    for, when it sets one ("higher is better" for rates, "lower" for latencies).
    """

    model_config = ConfigDict(frozen=True)

    section: str
    name: str
    backend: Backend | None
    unit: str
    value: Timing
    ceiling_name: str | None = None
    ceiling: Timing | None = None
    ratio: float | None = None
    target: float | None = None
    better: Literal["higher", "lower"] = "higher"
    met: bool | None = None
    notes: dict[str, str | int | float] = {}

    @classmethod
    def judged(
        cls,
        *,
        section: str,
        name: str,
        backend: Backend | None,
        unit: str,
        value: Timing,
        ceiling_name: str | None = None,
        ceiling: Timing | None = None,
        target: float | None = None,
        better: Literal["higher", "lower"] = "higher",
        notes: dict[str, str | int | float] | None = None,
    ) -> "Figure":
        ratio = None if ceiling is None or ceiling.median == 0 else value.median / ceiling.median
        met = None
        if target is not None and ratio is not None:
            met = ratio >= target if better == "higher" else ratio <= target
        return cls(
            section=section,
            name=name,
            backend=backend,
            unit=unit,
            value=value,
            ceiling_name=ceiling_name,
            ceiling=ceiling,
            ratio=ratio,
            target=target,
            better=better,
            met=met,
            notes=notes or {},
        )


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def timed(work: Callable[[], int]) -> float:
    """`work` returns how many items it did; the result is items per second."""
    started = time.perf_counter()
    count = work()
    return rate(count, time.perf_counter() - started)


def sampled(runs: int, measure: Callable[[], float]) -> Timing:
    """`measure` run `runs` times (each makes its own fresh store if it needs one)."""
    return Timing.of([measure() for _ in range(max(1, runs))])


def progress(text: str) -> None:
    """A progress line for people watching: on stderr, and only when it is a terminal."""
    if sys.stderr.isatty():
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's own peak resident memory so far, in MiB.

    Linux's VmHWM: the high-water mark of this program's memory. Not getrusage's ru_maxrss,
    which Linux carries across exec: a child started by a large parent (the bench, after it
    generated stores) reports the parent's peak if that was higher than its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere (KiB on Linux)


@contextmanager
def fresh_store(backend: Backend, config: BenchConfig) -> Iterator[str]:
    """A database URL for a new, empty store, removed afterwards: a SQLite file in a temporary
    folder, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="ledger-bench-")
        try:
            yield f"sqlite:///{os.path.join(folder, 'bench.sqlite3')}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    import psycopg
    from psycopg import sql

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in config.postgres_url else "?"
    try:
        yield f"{config.postgres_url}{separator}schema={schema}"
    finally:
        with psycopg.connect(config.postgres_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
