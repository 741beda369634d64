"""Decided commands (figure 1), batched commands (figure 2) and their cost growth with history
(figure 6, commands half).

Two workloads, each on a fresh store per run: capped-asset transfer-ins by distinct users (the
request + account + pool transaction) and the simulator's mixed platform day. Commands are
parsed before the timer starts, and a warm-up runs untimed on the same ledger first.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from ledger.application import Ledger
from ledger.bench.core import (
    Backend,
    BenchConfig,
    Figure,
    Timing,
    Unavailable,
    fresh_store,
    progress,
    rate,
    sampled,
)
from ledger.commands import CommandBase, CommandInvalid, parse_command
from ledger.outcomes import Outcome

CAPPED = "ABC"
QUANTITY = "10"  # per capped transfer-in; far below the fixed quota of band B/C
UPPER_LIMIT_LARGE = "1000000000000"  # the cap never refuses: every transfer is decided, accepted
WARMUP_COMMANDS = 20
MIXED_START = datetime(2026, 3, 2, tzinfo=UTC)
GROWTH_USERS_PREFIX = "grow"

# A way to hand commands to the ledger: one by one, or in batches. Returns the statuses.
Submit = Callable[[Ledger, Sequence[CommandBase]], Counter[str]]


# --- workloads ----------------------------------------------------------------------------------


def set_up_capped_asset(
    ledger: Ledger, *, upper_limit: str, price: str = "1", prefix: str = "setup"
) -> None:
    """Through real commands: list USDT and ABC (rank 8), set ABC's cap, mark its price."""
    commands: list[dict[str, Any]] = [
        {"type": "list_asset", "asset": "USDT", "collateral_rank": 1},
        {"type": "list_asset", "asset": CAPPED, "collateral_rank": 8},
        {"type": "set_collateral_cap", "asset": CAPPED, "upper_limit": upper_limit},
        {"type": "mark_prices", "prices": {CAPPED: price}},
    ]
    for number, data in enumerate(commands):
        outcome = ledger.execute(parse_command(data | {"request_id": f"{prefix}-{number}"}))
        if not outcome.is_accepted:
            raise RuntimeError(f"set-up command {data['type']} refused: {outcome.message}")


def capped_transfers(
    count: int, prefix: str, *, quantity: str = QUANTITY, asset: str = CAPPED
) -> list[CommandBase]:
    """`count` transfer-ins of `asset` to the cross accounts of distinct new users, parsed."""
    return [
        parse_command(
            {
                "type": "transfer_in",
                "request_id": f"{prefix}-t{number}",
                "user": f"{prefix}-u{number}",
                "account": "cross",
                "asset": asset,
                "quantity": quantity,
            }
        )
        for number in range(count)
    ]


def mixed_commands(config: BenchConfig) -> tuple[list[CommandBase], list[CommandBase]]:
    """The simulator's platform day, parsed: (its set-up prefix, then at most `commands` of the
    rest: a prefix of a valid history is one too). The set-up (listings, caps, terms, the first
    prices) runs as the untimed warm-up."""
    from ledger.simulate.simulation import generate

    generated = generate(
        config.seed, accounts=config.mixed_accounts, hours=config.mixed_hours, start=MIXED_START
    )
    commands = [parse_command(data) for data in generated]
    first = next(
        (n for n, c in enumerate(commands) if c.command_type == "transfer_in"), len(commands)
    )
    return commands[:first], commands[first : first + config.commands]


# --- submitting ---------------------------------------------------------------------------------


def one_by_one(ledger: Ledger, commands: Sequence[CommandBase]) -> Counter[str]:
    statuses: Counter[str] = Counter()
    for command in commands:
        try:
            statuses[ledger.execute(command).status.value] += 1
        except CommandInvalid:
            statuses["invalid"] += 1
    return statuses


def in_batches(size: int) -> Submit:
    """`Ledger.execute_batch` with `size` commands per call."""

    def submit(ledger: Ledger, commands: Sequence[CommandBase]) -> Counter[str]:
        execute_batch: Callable[[Sequence[CommandBase]], list[Any]] | None = getattr(
            ledger, "execute_batch", None
        )
        assert execute_batch is not None, "checked by has_batch_path()"
        statuses: Counter[str] = Counter()
        for first in range(0, len(commands), size):
            for answer in execute_batch(commands[first : first + size]):
                statuses[answer.status.value if isinstance(answer, Outcome) else "invalid"] += 1
        return statuses

    return submit


def has_batch_path() -> bool:
    return hasattr(Ledger, "execute_batch")


class Tally:
    """What the last timed run of a figure answered (for its notes): a check that the workload
    did what it was meant to (e.g. every capped transfer accepted)."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.events_per_command: float = 0.0

    def notes(self) -> dict[str, str | int | float]:
        found: dict[str, str | int | float] = {f"{k}": v for k, v in sorted(self.statuses.items())}
        if self.events_per_command:
            found["events_per_command"] = round(self.events_per_command, 2)
        return found


def _timed_submit(
    ledger: Ledger, commands: Sequence[CommandBase], submit: Submit, tally: Tally
) -> float:
    before = ledger.recorder.max_notification_id() or 0
    started = time.perf_counter()
    statuses = submit(ledger, commands)
    elapsed = time.perf_counter() - started
    tally.statuses = statuses
    written = (ledger.recorder.max_notification_id() or 0) - before
    tally.events_per_command = written / len(commands) if commands else 0.0
    return rate(len(commands), elapsed)


def capped_rate(backend: Backend, config: BenchConfig, submit: Submit, tally: Tally) -> float:
    """One run: a fresh store, the capped asset, a warm-up, then `config.commands` timed."""
    warmup = capped_transfers(WARMUP_COMMANDS, "warm")
    timed_commands = capped_transfers(config.commands, "bench")
    with fresh_store(backend, config) as url, Ledger(url) as ledger:
        set_up_capped_asset(ledger, upper_limit=UPPER_LIMIT_LARGE)
        one_by_one(ledger, warmup)
        return _timed_submit(ledger, timed_commands, submit, tally)


def mixed_rate(backend: Backend, config: BenchConfig, submit: Submit, tally: Tally) -> float:
    setup, rest = mixed_commands(config)
    with fresh_store(backend, config) as url, Ledger(url) as ledger:
        one_by_one(ledger, setup)
        return _timed_submit(ledger, rest, submit, tally)


# --- figures ------------------------------------------------------------------------------------


class Rates:
    """Figure 1's rates of one backend, measured once and shared with the sections judged
    against them (batched, growth)."""

    def __init__(self, backend: Backend, config: BenchConfig) -> None:
        self.backend, self.config = backend, config
        self._capped: tuple[Timing, Tally] | None = None
        self._mixed: tuple[Timing, Tally] | None = None

    def capped(self) -> tuple[Timing, Tally]:
        if self._capped is None:
            progress(f"{self.backend}: capped transfer-ins, one by one")
            tally = Tally()
            timing = sampled(
                self.config.runs, lambda: capped_rate(self.backend, self.config, one_by_one, tally)
            )
            self._capped = (timing, tally)
        return self._capped

    def mixed(self) -> tuple[Timing, Tally]:
        if self._mixed is None:
            progress(f"{self.backend}: mixed workload, one by one")
            tally = Tally()
            timing = sampled(
                self.config.runs, lambda: mixed_rate(self.backend, self.config, one_by_one, tally)
            )
            self._mixed = (timing, tally)
        return self._mixed


def command_figures(rates: Rates, single_row: Timing, two_row: Timing) -> list[Figure]:
    """Figure 1: both workloads against the raw 2-row and single-row commit ceilings."""
    backend = rates.backend
    figures = []
    for name, (timing, tally), target in (
        ("capped transfer-ins", rates.capped(), 0.5),
        ("mixed workload", rates.mixed(), None),
    ):
        notes = tally.notes()
        figures += [
            Figure.judged(
                section="commands",
                name=name,
                backend=backend,
                unit="cmds/s",
                value=timing,
                ceiling_name="raw 2-row INSERT+COMMIT txns/s",
                ceiling=two_row,
                target=target,
                notes=notes,
            ),
            Figure.judged(
                section="commands",
                name=f"{name} (vs single row)",
                backend=backend,
                unit="cmds/s",
                value=timing,
                ceiling_name="raw single-row INSERT+COMMIT rows/s",
                ceiling=single_row,
                notes=notes,
            ),
        ]
    return figures


def batched_figures(rates: Rates, batch_ceiling: Timing) -> list[Figure] | Unavailable:
    """Figure 2: the same workloads through `Ledger.execute_batch`, `batch_size` per call."""
    backend, config = rates.backend, rates.config
    if not has_batch_path():
        return Unavailable(
            section="batched",
            name="batched commands",
            backend=backend,
            reason="Ledger.execute_batch does not exist (yet): no batch path to measure",
        )
    submit = in_batches(config.batch_size)
    figures: list[Figure] = []
    workloads: list[tuple[str, Callable[[Tally], float], tuple[Timing, Tally], bool]] = [
        (
            "capped transfer-ins",
            lambda tally: capped_rate(backend, config, submit, tally),
            rates.capped(),
            True,
        ),
        (
            "mixed workload",
            lambda tally: mixed_rate(backend, config, submit, tally),
            rates.mixed(),
            False,
        ),
    ]
    for name, measure, (unbatched, _), judged in workloads:
        progress(f"{backend}: {name}, batches of {config.batch_size}")
        tally = Tally()
        timing = sampled(config.runs, partial(measure, tally))
        notes = tally.notes() | {"batch_size": config.batch_size}
        figures += [
            Figure.judged(
                section="batched",
                name=f"{name}, batched (vs unbatched)",
                backend=backend,
                unit="cmds/s",
                value=timing,
                ceiling_name=f"unbatched {name} cmds/s",
                ceiling=unbatched,
                target=5.0 if judged else None,
                notes=notes,
            ),
            Figure.judged(
                section="batched",
                name=f"{name}, batched (vs raw batch)",
                backend=backend,
                unit="cmds/s",
                value=timing,
                ceiling_name="raw 1000-row batch INSERT rows/s",
                ceiling=batch_ceiling,
                target=0.1 if judged else None,
                notes=notes,
            ),
        ]
    return figures


# --- cost growth ----------------------------------------------------------------------------------


def growth_figures(backend: Backend, config: BenchConfig, two_row: Timing) -> list[Figure]:
    """Figure 1's capped transfer-ins again on stores pre-filled with each size of generated
    history. The history is built once per size (the costly part); every run then times new
    users' transfers on it, so the store grows by `commands` per run (small against the sizes)."""
    sizes = sorted(config.growth_events)
    measured: list[tuple[int, Timing, Tally, int]] = []
    for events in sizes:
        progress(f"{backend}: growth, generating {events:,} events of history")
        tally = Tally()
        with fresh_store(backend, config) as url, Ledger(url) as ledger:
            written = _prefilled(ledger, events, config)
            progress(f"{backend}: growth, capped transfer-ins after {events:,} events")
            runs = iter(range(config.runs))
            once = partial(_growth_run, ledger, config, runs, tally)
            measured.append((events, sampled(config.runs, once), tally, written))
    smallest = measured[0][1]
    return [
        Figure.judged(
            section="growth",
            name=f"capped transfer-ins after {events:,} events",
            backend=backend,
            unit="cmds/s",
            value=timing,
            ceiling_name=f"the same at {sizes[0]:,} events",
            ceiling=smallest,
            notes=tally.notes()
            | {
                "history_events": written,
                "ratio_to_raw_2_row": round(timing.median / two_row.median, 4),
            },
        )
        for events, timing, tally, written in measured
    ]


def _growth_run(ledger: Ledger, config: BenchConfig, runs: Iterator[int], tally: Tally) -> float:
    """One timed run on a pre-filled store: new users each run (a warm-up of their own first)."""
    prefix = f"{GROWTH_USERS_PREFIX}{next(runs)}"
    one_by_one(ledger, capped_transfers(WARMUP_COMMANDS, f"{prefix}w"))
    return _timed_submit(ledger, capped_transfers(config.commands, prefix), one_by_one, tally)


def _prefilled(ledger: Ledger, events: int, config: BenchConfig) -> int:
    """Generate the history, then lift ABC's cap (the history fills it) so the timed transfers
    are all decided in band A, as in figure 1."""
    from ledger.simulate.bulk import generate_bulk_history

    summary = generate_bulk_history(
        ledger, events=events, users=config.growth_users, seed=config.seed
    )
    outcome = ledger.execute(
        parse_command(
            {
                "type": "set_collateral_cap",
                "request_id": "growth-cap",
                "asset": CAPPED,
                "upper_limit": UPPER_LIMIT_LARGE,
            }
        )
    )
    if not outcome.is_accepted:
        raise RuntimeError(f"lifting the cap was refused: {outcome.message}")
    return summary.events + summary.setup_events
