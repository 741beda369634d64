"""Figure 8 of `scripts/bench`: the CPU work of a decided command, counted in instructions.

The rates of figures 1-3 move with this machine's disk and neighbours (docs/performance.md: a
ceiling moved by a third between two runs minutes apart), so a change that saves 5% of the
Python per command cannot be told from noise by timing it. What the ledger's code costs does not
move: this section runs the capped transfer-ins of figures 1 and 2 in a child process under
valgrind's callgrind, which counts the instructions the child executes, the same count for the
same code and inputs however loaded the machine is. The child zeroes the count on entering
`getppid` and has it written out on entering `getpgrp`, which it calls just before and just
after each measured part, so start-up, imports, set-up and warm-up are not counted.

The ceilings are the same counts for the raw transactions of the ceilings section: a 2-row
INSERT + COMMIT (per transaction) and 1,000-row batches (per row), written by the database
driver alone. Only the client process is counted: PostgreSQL's server works in processes of its
own, and an fsync costs time, not instructions. Lower is better; there is no target.

The backends' children run side by side (the counts do not depend on load). `--quick` counts
SQLite only, with few commands: a child takes ~30 s to start under valgrind.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ledger.bench import ceilings
from ledger.bench.core import (
    Backend,
    BenchConfig,
    Figure,
    Timing,
    Unavailable,
    fresh_store,
    progress,
)

SECTION = "instructions"
# The parts the child counts, in the order it counts them (one callgrind dump each).
PARTS = ("one by one", "batched", "raw 2-row txn", "raw batch row")
WARMUP_COMMANDS = 20
QUICK_COMMANDS = 20
COMMANDS_MAX = 500  # under valgrind a command takes ~10 ms: enough for a stable count
ROW_BYTES = 600  # the raw rows' state, about a capped transfer-in's median stored event
CHILD_TIMEOUT_SECONDS = 1800
START_COUNTING = "getppid"  # libc functions the child calls only around what it counts
WRITE_COUNT = "getpgrp"


def run(config: BenchConfig) -> list[Figure] | Unavailable:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return Unavailable(
            section=SECTION,
            name="instructions per command",
            backend=None,
            reason="valgrind is not installed (Debian's package valgrind)",
        )
    backends = [b for b in config.backends if b == "sqlite"] if config.quick else config.backends
    commands = QUICK_COMMANDS if config.quick else min(config.commands, COMMANDS_MAX)
    figures = []
    with tempfile.TemporaryDirectory(prefix="ledger-bench-instructions-") as folder:
        children = {
            backend: _start(valgrind, backend, config, commands, Path(folder))
            for backend in backends or config.backends[:1]
        }
        progress(
            f"instructions: {commands} capped transfer-ins under callgrind on "
            f"{', '.join(children)} (a child takes ~30 s to start)"
        )
        for backend, child in children.items():
            counts = _finish(child, backend, Path(folder))
            figures += _figures(backend, counts, commands, config)
    return figures


def _start(
    valgrind: str, backend: Backend, config: BenchConfig, commands: int, folder: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            valgrind,
            "--tool=callgrind",
            f"--zero-before={START_COUNTING}",
            f"--dump-before={WRITE_COUNT}",
            f"--callgrind-out-file={folder / backend}.out",
            sys.executable,
            "-m",
            "ledger.bench.instructions",
            backend,
            str(commands),
            config.model_dump_json(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The same hashes every run: set and dict layouts, hence the count, do not vary.
        env=os.environ | {"PYTHONHASHSEED": "0"},
    )


def _finish(child: subprocess.Popen[str], backend: Backend, folder: Path) -> list[int]:
    """The instructions of each part, from the child's dumps (NAME.out.1, .2, ...)."""
    _, errors = child.communicate(timeout=CHILD_TIMEOUT_SECONDS)
    if child.returncode != 0:
        raise RuntimeError(f"the {backend} instructions child failed: {errors.strip()[-2000:]}")
    dumps = sorted(folder.glob(f"{backend}.out.*"), key=lambda p: int(p.suffix[1:]))
    if len(dumps) != len(PARTS):
        raise RuntimeError(f"{len(dumps)} callgrind dumps for {len(PARTS)} parts: {dumps}")
    return [_total(dump) for dump in dumps]


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def _figures(
    backend: Backend, counts: list[int], commands: int, config: BenchConfig
) -> list[Figure]:
    one, batched, two_row, batch_rows = counts
    batch_size = config.batch_size
    raw_txn = _once(two_row / commands)
    raw_row = _once(batch_rows / config.ceiling_batch_rows)
    notes: dict[str, str | int | float] = {
        "commands_counted": commands,
        "counted_by": "valgrind --tool=callgrind, the client process only",
    }
    return [
        Figure.judged(
            section=SECTION,
            name="capped transfer-ins, one by one",
            backend=backend,
            unit="instructions/cmd",
            value=_once(one / commands),
            ceiling_name="raw 2-row INSERT+COMMIT instructions/txn",
            ceiling=raw_txn,
            better="lower",
            notes=notes,
        ),
        Figure.judged(
            section=SECTION,
            name=f"capped transfer-ins, batched ({min(batch_size, commands)})",
            backend=backend,
            unit="instructions/cmd",
            value=_once(batched / commands),
            ceiling_name=f"raw {ceilings.BATCH}-row batch INSERT instructions/row",
            ceiling=raw_row,
            better="lower",
            notes=notes | {"batch_size": batch_size},
        ),
    ]


def _once(value: float) -> Timing:
    """A count: the same every run, so measured once."""
    return Timing(median=value, low=value, high=value, runs=1)


# --- the child, under valgrind ------------------------------------------------------------------


def counted(work: Callable[[], object]) -> None:
    """Count the instructions of `work` alone (the parent gave valgrind these two functions)."""
    os.getppid()
    work()
    os.getpgrp()


def child(backend: Backend, commands: int, config: BenchConfig) -> None:
    from ledger.application import Ledger
    from ledger.bench.commands import (
        UPPER_LIMIT_LARGE,
        capped_transfers,
        in_batches,
        one_by_one,
        set_up_capped_asset,
    )

    with fresh_store(backend, config) as url, Ledger(url) as ledger:
        set_up_capped_asset(ledger, upper_limit=UPPER_LIMIT_LARGE)
        one_by_one(ledger, capped_transfers(WARMUP_COMMANDS, "warm"))
        alone = capped_transfers(commands, "alone")
        batched = capped_transfers(commands, "batched")
        counted(lambda: one_by_one(ledger, alone))
        counted(lambda: in_batches(config.batch_size)(ledger, batched))
    table = ceilings.raw_table_of(backend)
    warm = ceilings.rows_of(2 * ceilings.WARMUP_ROWS, ROW_BYTES, backend)
    two_rows = ceilings.rows_of(2 * commands, ROW_BYTES, backend)
    batch_rows = ceilings.rows_of(config.ceiling_batch_rows, ROW_BYTES, backend)
    with table(config) as connection:
        ceilings.two_row_txns(backend)(connection, warm)
        counted(lambda: ceilings.two_row_txns(backend)(connection, two_rows))
        counted(lambda: ceilings.batches(backend)(connection, batch_rows))


if __name__ == "__main__":
    backend_given, commands_given, config_given = sys.argv[1:4]
    assert backend_given in ("sqlite", "postgres"), backend_given
    backend: Backend = "sqlite" if backend_given == "sqlite" else "postgres"
    child(backend, int(commands_given), BenchConfig.model_validate(json.loads(config_given)))
