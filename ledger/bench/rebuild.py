"""Figure 4 of `scripts/bench`: a full rebuild of every read model over a generated history,
in events/s against the ceiling of reading and decoding the same rows with the database driver
alone, measured in the same run; and the rebuild's peak memory as the history grows.

For each backend and size, the store is generated once (`simulate.bulk`, untimed; the same
number of users at every size, so that only the history grows). Then each run measures, one
after the other on that store:
- the ceiling: the driver alone reading and decoding the events table (keyset pages of 1,000,
  `json.loads` of each state, and the uuid on SQLite: `ceilings.read_decode_rate`);
- a second ceiling: the library reading the notification log and decoding each event through
  the ledger's mapper (`select_notifications` + `mapper.to_domain_event`), which is what every
  event cost a rebuild before the read models decoded the stored JSON themselves;
- `ReadModels.rebuild()` of all five models, in a child process of its own, so that its peak
  resident memory (VmHWM in the child, ledger/bench/core.py) is that rebuild's alone.
And once per store, after the runs: the bound the writes alone set, the database copying every
row the rebuild wrote into empty copies of its tables (`INSERT ... SELECT`, their indexes, one
commit: no Python, no decoding), in events/s of the log. A rebuild cannot be faster than the
rows it must write; this shows how far the writes alone are from the read ceiling.
Peak memory is judged by its growth: the largest size's over the smallest's (flat: <= 1.2).
"""

import json
import subprocess
import sys
import time
from dataclasses import replace

from pydantic import BaseModel, ConfigDict

from ledger.bench.ceilings import read_decode_rate
from ledger.bench.core import (
    Backend,
    BenchConfig,
    Figure,
    Timing,
    fresh_store,
    peak_rss_mb,
    progress,
    rate,
    timed,
)

SECTION = "rebuild"
TARGET_RATIO = 0.5  # rebuild events/s over the driver's read+decode rows/s
MEMORY_GROWTH_TARGET = 1.2  # peak RSS at the largest size over the smallest: flat
CEILING_NAME = "driver read+decode (json.loads), pages of 1,000"
LIBRARY_CEILING_NAME = "library read+decode (select_notifications + mapper.to_domain_event)"
WRITE_BOUND_NAME = "database alone writing the rebuilt rows (INSERT ... SELECT)"
COPY_SUFFIX = "_bench_copy"
CHILD_TIMEOUT_SECONDS = 3600


class RebuildRun(BaseModel):
    """One rebuild, as its child process reports it."""

    model_config = ConfigDict(frozen=True)

    events: int  # the log's events the read models were rebuilt from
    seconds: float
    peak_rss_mb: float


class SizeResult(BaseModel):
    """One store's runs."""

    model_config = ConfigDict(frozen=True)

    backend: Backend
    events: int  # in the log, the set-up included
    accounts: int
    rebuild: Timing  # events/s
    ceiling: Timing  # rows/s, the driver alone
    library: Timing  # rows/s, through the library and the mapper
    peak_rss_mb: Timing
    rows_written: int  # rows in the read models' tables after the rebuild
    write_bound: Timing  # events/s: the log's events over the time to write those rows


def run(config: BenchConfig) -> list[Figure]:
    figures: list[Figure] = []
    for backend in config.backends:
        results = [measure(backend, config, events) for events in config.rebuild_events]
        for result in results:
            figures.extend(size_figures(result, config))
        if len(results) >= 2:
            figures.append(memory_growth_figure(results[0], results[-1]))
    return figures


def measure(backend: Backend, config: BenchConfig, events: int) -> SizeResult:
    """Generate a store of `events` events, then time `config.runs` rebuilds of it, each with
    both ceilings measured just before it."""
    with fresh_store(backend, config) as url:
        progress(f"rebuild: {backend}: generating {events:,} events")
        accounts = generate(url, events, config)
        rebuilds, ceilings, libraries, peaks = [], [], [], []
        for number in range(max(1, config.runs)):
            progress(f"rebuild: {backend}: {events:,} events, run {number + 1}/{config.runs}")
            ceilings.append(read_decode_rate(backend, url))
            libraries.append(library_decode_rate(url))
            rebuilt = rebuild_in_child(url)
            rebuilds.append(rate(rebuilt.events, rebuilt.seconds))
            peaks.append(rebuilt.peak_rss_mb)
        logged = rebuilt.events
        rows, seconds = write_bound(url)
    return SizeResult(
        backend=backend,
        events=logged,
        accounts=accounts,
        rebuild=Timing.of(rebuilds),
        ceiling=Timing.of(ceilings),
        library=Timing.of(libraries),
        peak_rss_mb=Timing.of(peaks),
        rows_written=rows,
        write_bound=Timing.of([rate(logged, seconds)]),
    )


def generate(url: str, events: int, config: BenchConfig) -> int:
    """The history (untimed); the accounts it opened."""
    from ledger.application import Ledger
    from ledger.simulate.bulk import generate_bulk_history

    with Ledger(url) as ledger:
        summary = generate_bulk_history(
            ledger, events=events, users=config.growth_users, seed=config.seed
        )
    return summary.accounts


def library_decode_rate(url: str) -> float:
    """Rows/s of the library's notification log, every event decoded through the mapper."""
    from ledger.application import Ledger
    from ledger.log import log_batches

    with Ledger(url, read_only=True) as ledger:

        def decode_all() -> int:
            count = 0
            for batch in log_batches(ledger):
                for notification in batch:
                    ledger.mapper.to_domain_event(notification)
                count += len(batch)
            return count

        return timed(decode_all)


def write_bound(url: str) -> tuple[int, float]:
    """(rows, seconds): every row of the rebuilt read models copied by the database itself into
    empty copies of their tables, with their indexes, in one transaction (then dropped)."""
    from ledger.application import Ledger
    from projections.runner import MODELS, ReadModels

    tables = [table for model in MODELS for table in model.tables]
    with Ledger(url) as ledger, ReadModels(ledger) as read_models:
        store = read_models.store
        with store.transaction(commit=False) as db:
            counts = [db.query(f"SELECT count(*) FROM {{{t.name}}}")[0][0] for t in tables]
            copies = [
                (table, replace(table, name=f"{table.name}{COPY_SUFFIX}"), db.names[table.name])
                for table in tables
            ]
        try:
            started = time.perf_counter()
            with store.transaction() as db:
                for table, copy, original in copies:
                    name = _beside(original, copy.name)
                    db.execute(copy.table_statement(name, db.is_postgres))
                    db.execute(f"INSERT INTO {name} SELECT * FROM {{{table.name}}}")
                    for statement in copy.index_statements(name):
                        db.execute(statement)
            seconds = time.perf_counter() - started
        finally:
            with store.transaction() as db:
                for _table, copy, original in copies:
                    db.execute(f"DROP TABLE IF EXISTS {_beside(original, copy.name)}")
    return sum(int(count) for count in counts), seconds


def _beside(original: str, name: str) -> str:
    """`name` in the schema of the table `original` (PostgreSQL's "schema"."table")."""
    schema, dot, _table = original.rpartition(".")
    return f'{schema}{dot}"{name}"' if dot else name


def rebuild_in_child(url: str) -> RebuildRun:
    """`ReadModels.rebuild()` in a fresh interpreter: its peak memory is the rebuild's own."""
    completed = subprocess.run(
        [sys.executable, "-m", "ledger.bench.rebuild", url],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the rebuild child failed: {completed.stderr.strip()[-2000:]}")
    return RebuildRun.model_validate_json(completed.stdout.strip().splitlines()[-1])


def rebuild_here(url: str) -> RebuildRun:
    """The child's work: open the store and its read models, then time the rebuild alone."""
    from ledger.application import Ledger
    from ledger.persistence import raw_rows, raw_table
    from projections.runner import ReadModels

    with Ledger(url) as ledger, ReadModels(ledger) as read_models:
        started = time.perf_counter()
        position = read_models.rebuild()
        seconds = time.perf_counter() - started
        assert position == read_models.head(), (position, read_models.head())
        [(events,)] = raw_rows(
            ledger.recorder, f"SELECT count(*) FROM {raw_table(ledger.recorder)}"
        )
    return RebuildRun(events=int(events), seconds=seconds, peak_rss_mb=peak_rss_mb())


def size_figures(result: SizeResult, config: BenchConfig) -> list[Figure]:
    size = f"{result.events:,} events"
    notes: dict[str, str | int | float] = {
        "events": result.events,
        "accounts": result.accounts,
        "users": config.growth_users,
        "models": "event_index, accounts, asset_totals, band_timeline, journal",
    }
    return [
        Figure.judged(
            section=SECTION,
            name=f"rebuild all read models, {size}",
            backend=result.backend,
            unit="events/s",
            value=result.rebuild,
            ceiling_name=CEILING_NAME,
            ceiling=result.ceiling,
            target=TARGET_RATIO,
            notes=notes,
        ),
        Figure.judged(
            section=SECTION,
            name=f"rebuild all read models, {size}, vs the library's decoding",
            backend=result.backend,
            unit="events/s",
            value=result.rebuild,
            ceiling_name=LIBRARY_CEILING_NAME,
            ceiling=result.library,
            notes=notes,
        ),
        Figure.judged(
            section=SECTION,
            name=f"rows the rebuild writes, {size}: the database alone writing them",
            backend=result.backend,
            unit="events/s",
            value=result.write_bound,
            ceiling_name=CEILING_NAME,
            ceiling=result.ceiling,
            notes={
                "rows_written": result.rows_written,
                "rows_per_event": round(result.rows_written / max(1, result.events), 2),
                "measured": "INSERT ... SELECT into empty copies + their indexes, one commit",
            },
        ),
        Figure.judged(
            section=SECTION,
            name=f"rebuild peak RSS, {size}",
            backend=result.backend,
            unit="MB",
            value=result.peak_rss_mb,
            better="lower",
            notes={"measured": "VmHWM of the child process (/proc/self/status)"},
        ),
    ]


def memory_growth_figure(smallest: SizeResult, largest: SizeResult) -> Figure:
    return Figure.judged(
        section=SECTION,
        name=f"rebuild peak RSS, {largest.events:,} vs {smallest.events:,} events",
        backend=largest.backend,
        unit="MB",
        value=largest.peak_rss_mb,
        ceiling_name=f"rebuild peak RSS, {smallest.events:,} events",
        ceiling=smallest.peak_rss_mb,
        target=MEMORY_GROWTH_TARGET,
        better="lower",
    )


def main() -> None:
    print(json.dumps(rebuild_here(sys.argv[1]).model_dump()))


if __name__ == "__main__":
    main()
