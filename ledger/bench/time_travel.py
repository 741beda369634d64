"""Figure 5: time travel. `as-of` account queries at random past moments, for accounts with N
events of their own in stores of M events (`histories.generate_focus_history`), median and p99
latency; and whether that stays flat as the store grows: latency(largest store) /
latency(smallest store) for the same account size (issue #8 target: at most 1.5).

A query is `ReadSide.account(account_id, PointInTime(at=moment))`, what `ledger account ID
--as-of` asks, on read models caught up beforehand (untimed): a query first catches the read
models up, and that cost is the lag's, not history's; it is measured once per store as its own
figure (a query behind a lag of LAG_EVENTS events). Moments are business times of the account's
own events, drawn with a seeded generator. Every answer's version and last business time are
checked against the account's events read from the log, so a wrong fast answer fails the run.

The ceiling, measured in the same run on the same store: one indexed point SELECT of one event
row by (originator_id, originator_version), with the library's own connection.

All stores of a backend are generated first and kept open; the runs then go round them in turn,
so that the machine's drift over time falls on every store alike.
"""

import bisect
import math
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from random import Random
from uuid import UUID

from ledger.application import Ledger
from ledger.bench.core import Backend, BenchConfig, Figure, Timing, fresh_store
from ledger.bench.histories import generate_focus_history
from ledger.domain.account import MarginAccount
from ledger.persistence import is_postgres, raw_table
from ledger.queries import AccountView, parse_account_id
from ledger.times import format_time
from projections.queries import PointInTime, ReadSide
from projections.runner import ReadModels

SECTION = "time_travel"
# An account holds at most this share of its store (1 in 10): else the store is mostly the account.
ACCOUNT_SHARE_DIVISOR = 10
# Events left for the first query to catch up: what a query pays for a lagging read side.
LAG_EVENTS = 1_000
# Untimed queries before each timed series: psycopg prepares a statement on its fifth execution
# on a connection, and the first of a series may open a connection; neither is history's cost.
WARM_UP_QUERIES = 8
TARGET_RATIO = 1.5  # as-of latency at the largest store / at the smallest (issue #8)
CEILING_NAME = "indexed point SELECT of one event row by (originator_id, originator_version)"


@dataclass(frozen=True)
class AccountHistory:
    """A focus account and the business time of each of its versions, read from the log."""

    account_id: str
    originator_id: UUID
    times: list[datetime]  # times[v - 1]: effective_at of version v (never decreasing)

    def version_at(self, moment: datetime) -> int:
        """The account's last version at `moment`: its events are in business-time order."""
        return bisect.bisect_right(self.times, moment)


@dataclass
class Store:
    """One generated store, open, its read models caught up."""

    backend: Backend
    events: int
    ledger: Ledger
    reader: ReadSide
    accounts: dict[int, AccountHistory]  # by the account's asked-for event count
    notes: dict[str, str | int | float] = field(default_factory=dict)


@dataclass
class Measurement:
    """One run's queries on one account: latencies (seconds), and the answers they gave."""

    query_seconds: list[float]
    ceiling_seconds: list[float]
    answers: list[tuple[datetime, AccountView]]


def run(config: BenchConfig) -> list[Figure]:
    figures: list[Figure] = []
    for backend in config.backends:
        figures.extend(_backend_figures(backend, config))
    return figures


def accounts_in(store_events: int, account_events: tuple[int, ...]) -> tuple[int, ...]:
    """The account sizes a store of `store_events` holds (each at most a tenth of it)."""
    return tuple(n for n in account_events if n * ACCOUNT_SHARE_DIVISOR <= store_events)


# --- one store ----------------------------------------------------------------------------------


@contextmanager
def open_store(
    backend: Backend, config: BenchConfig, events: int, account_events: tuple[int, ...]
) -> Iterator[Store]:
    """A new store of `events` events with one focus account per entry of `account_events`,
    its read models caught up; dropped afterwards."""
    with (
        fresh_store(backend, config) as url,
        Ledger(url) as ledger,
        ReadModels(ledger) as read_models,
    ):
        started = time.perf_counter()
        summary = generate_focus_history(
            ledger, events=events, account_events=account_events, seed=config.seed
        )
        generated = time.perf_counter() - started
        accounts = {
            wanted: _account_history(ledger, account_id)
            for wanted, account_id in zip(account_events, summary.accounts, strict=True)
        }
        started = time.perf_counter()
        head = read_models.head()
        read_models.catch_up(until=max(0, head - LAG_EVENTS))
        caught_up = time.perf_counter() - started
        lag_seconds = _lagging_query(read_models, accounts[account_events[0]])
        notes: dict[str, str | int | float] = {
            "store_events": summary.log_events,
            "generate_seconds": round(generated, 1),
            "catch_up_seconds": round(caught_up, 1),
            "lagging_query_ms": round(lag_seconds * 1000, 2),
        }
        _say(f"{backend}: store of {summary.log_events:,} events, {notes}")
        reader = ReadSide(read_models, catch_up=False)  # caught up by the lagging query
        yield Store(backend, events, ledger, reader, accounts, notes)


def _account_history(ledger: Ledger, account_id: str) -> AccountHistory:
    user, name = parse_account_id(account_id)
    originator_id = MarginAccount.create_id(user, name)
    times = [
        ledger.mapper.to_domain_event(stored).effective_at  # type: ignore[attr-defined]
        for stored in ledger.recorder.select_events(originator_id)
    ]
    assert times == sorted(times), account_id  # business time never goes back (DOMAIN.md §8)
    return AccountHistory(account_id, originator_id, times)


def _lagging_query(read_models: ReadModels, account: AccountHistory) -> float:
    """Seconds for one as-of query as a fresh reader asks it: catching up the lag first."""
    moment = account.times[len(account.times) // 2]
    started = time.perf_counter()
    answer = ReadSide(read_models).account(account.account_id, PointInTime(at=moment))
    seconds = time.perf_counter() - started
    check_answer(account, moment, answer)
    return seconds


def measure(store: Store, account: AccountHistory, queries: int, rng: Random) -> Measurement:
    """`queries` as-of queries at moments drawn from the account's events, each timed and
    checked; and as many point SELECTs of its event rows (the ceiling)."""
    for _warm_up in range(WARM_UP_QUERIES):
        moment = rng.choice(account.times)
        check_answer(
            account, moment, store.reader.account(account.account_id, PointInTime(at=moment))
        )
    moments = [rng.choice(account.times) for _ in range(queries)]
    query_seconds, answers = [], []
    for moment in moments:
        when = PointInTime(at=moment)
        started = time.perf_counter()
        answer = store.reader.account(account.account_id, when)
        query_seconds.append(time.perf_counter() - started)
        check_answer(account, moment, answer)
        answers.append((moment, answer))
    versions = [rng.randint(1, len(account.times)) for _ in range(queries)]
    ceiling_seconds = point_select_seconds(store.ledger, account.originator_id, versions)
    return Measurement(query_seconds, ceiling_seconds, answers)


def check_answer(account: AccountHistory, moment: datetime, answer: AccountView) -> None:
    """The answer is the account at `moment`: its version and business time then."""
    version = account.version_at(moment)
    assert answer.account == account.account_id, (answer.account, account.account_id)
    assert answer.version == version, (account.account_id, moment, answer.version, version)
    expected_at = format_time(account.times[version - 1])
    assert answer.last_effective_at == expected_at, (answer.last_effective_at, expected_at)


def point_select_seconds(ledger: Ledger, originator_id: UUID, versions: list[int]) -> list[float]:
    """Each indexed SELECT of one event row, timed on its own inside one read transaction."""
    recorder = ledger.recorder
    postgres = is_postgres(ledger.env)
    mark = "%s" if postgres else "?"
    text = (
        f"SELECT originator_version, state FROM {raw_table(recorder)} "
        f"WHERE originator_id = {mark} AND originator_version = {mark}"
    )
    key: UUID | str = originator_id if postgres else originator_id.hex  # SQLite stores hex
    seconds = []
    with recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        for version in versions[:WARM_UP_QUERIES]:
            cursor.execute(text, (key, version))
            cursor.fetchone()
        for version in versions:
            started = time.perf_counter()
            cursor.execute(text, (key, version))
            row = cursor.fetchone()
            seconds.append(time.perf_counter() - started)
            assert row is not None, (originator_id, version)
    return seconds


# --- one backend --------------------------------------------------------------------------------


@dataclass
class _Samples:
    """Per run: the median and p99 of the queries and of the ceiling (seconds)."""

    query_median: list[float] = field(default_factory=list)
    query_p99: list[float] = field(default_factory=list)
    ceiling_median: list[float] = field(default_factory=list)
    ceiling_p99: list[float] = field(default_factory=list)

    def add(self, measurement: Measurement) -> None:
        self.query_median.append(statistics.median(measurement.query_seconds))
        self.query_p99.append(p99(measurement.query_seconds))
        self.ceiling_median.append(statistics.median(measurement.ceiling_seconds))
        self.ceiling_p99.append(p99(measurement.ceiling_seconds))


def p99(samples: list[float]) -> float:
    """The nearest-rank 99th percentile."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def _backend_figures(backend: Backend, config: BenchConfig) -> list[Figure]:
    samples: dict[tuple[int, int], _Samples] = {}
    account_sizes = tuple(sorted(config.time_travel_account_events))
    queries = config.time_travel_queries
    with ExitStack() as stack:
        stores = []
        for events in sorted(config.time_travel_stores):
            held = accounts_in(events, account_sizes)
            if held:
                stores.append(stack.enter_context(open_store(backend, config, events, held)))
        notes = {store.events: store.notes for store in stores}
        rng = Random(config.seed)
        for _run in range(config.runs):
            for store in stores:
                for size, account in store.accounts.items():
                    measured = measure(store, account, queries, rng)
                    samples.setdefault((store.events, size), _Samples()).add(measured)
    return [
        *_latency_figures(backend, samples, notes, queries),
        *_growth_figures(backend, samples),
        *_lag_figures(backend, samples, notes),
    ]


def _ms(seconds: list[float]) -> Timing:
    return Timing.of([s * 1000 for s in seconds])


def _latency_figures(
    backend: Backend,
    samples: dict[tuple[int, int], _Samples],
    notes: dict[int, dict[str, str | int | float]],
    queries: int,
) -> list[Figure]:
    figures = []
    for (events, size), measured in sorted(samples.items()):
        extra = notes[events] | {"account_events": size, "queries_per_run": queries}
        for statistic, value, ceiling in (
            ("median", measured.query_median, measured.ceiling_median),
            ("p99", measured.query_p99, measured.ceiling_p99),
        ):
            figures.append(
                Figure.judged(
                    section=SECTION,
                    name=f"as-of account {statistic}: {size:,}-event account, "
                    f"{events:,}-event store",
                    backend=backend,
                    unit="ms",
                    value=_ms(value),
                    ceiling_name=f"{CEILING_NAME} ({statistic})",
                    ceiling=_ms(ceiling),
                    better="lower",
                    notes=extra,
                )
            )
    return figures


def _growth_figures(backend: Backend, samples: dict[tuple[int, int], _Samples]) -> list[Figure]:
    """For each account size in two stores or more: the largest store's latency against the
    smallest's (the target); and the largest account in the largest store against the smallest
    account in the smallest store (history grown both ways; no target of its own)."""
    figures = []
    sizes_held = sorted({size for _events, size in samples})
    pairs: list[tuple[tuple[int, int], tuple[int, int], float | None]] = []
    for size in sizes_held:
        stores = sorted(events for events, held in samples if held == size)
        if len(stores) > 1:
            pairs.append(((stores[-1], size), (stores[0], size), TARGET_RATIO))
    first, last = min(samples), max(samples)
    if first[1] != last[1] and first[0] != last[0]:
        pairs.append((last, first, None))
    for (big, big_size), (small, small_size), target in pairs:
        for statistic in ("median", "p99"):
            figures.append(
                Figure.judged(
                    section=SECTION,
                    name=f"as-of {statistic} growth: {big_size:,}-event account in "
                    f"{big:,}-event store",
                    backend=backend,
                    unit="ms",
                    value=_ms(getattr(samples[big, big_size], f"query_{statistic}")),
                    ceiling_name=f"{small_size:,}-event account in {small:,}-event store",
                    ceiling=_ms(getattr(samples[small, small_size], f"query_{statistic}")),
                    target=target if statistic == "median" else None,
                    better="lower",
                )
            )
    return figures


def _lag_figures(
    backend: Backend,
    samples: dict[tuple[int, int], _Samples],
    notes: dict[int, dict[str, str | int | float]],
) -> list[Figure]:
    """One query per store asked behind a lag (catching it up first), against the caught-up
    median of the same account."""
    figures = []
    for events, extra in sorted(notes.items()):
        size = min(held for store, held in samples if store == events)
        lagging = float(extra["lagging_query_ms"])
        figures.append(
            Figure.judged(
                section=SECTION,
                name=f"as-of query behind a lag of {LAG_EVENTS:,} events (catch-up included): "
                f"{size:,}-event account, {events:,}-event store",
                backend=backend,
                unit="ms",
                value=Timing.of([lagging]),
                ceiling_name="the same account's caught-up as-of median",
                ceiling=_ms(samples[events, size].query_median),
                better="lower",
            )
        )
    return figures


def _say(text: str) -> None:
    """Progress for people: generating a large store takes minutes."""
    print(f"time travel: {text}", file=sys.stderr, flush=True)
