"""`scripts/bench` (`python -m ledger.bench`): run the sections, print the table, write JSON.

Exit codes: 0 the run completed (targets missed are reported, not an error); 1 a section failed
with an error (the others still ran and are reported); 2 the run could not start (bad flags,
PostgreSQL unreachable when asked for, an --out folder that does not exist).
"""

import importlib
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ledger.bench import ceilings as ceilings_module
from ledger.bench import commands, hot_asset
from ledger.bench.core import (
    BACKENDS,
    POSTGRES_URL_DEFAULT,
    SECTIONS,
    Backend,
    BenchConfig,
    Figure,
    Unavailable,
    progress,
)
from ledger.bench.report import Failure, Results, machine_facts, print_table, write_json

EXIT_RAN = 0
EXIT_SECTION_FAILED = 1
EXIT_CANNOT_RUN = 2

# Sections written by others: a module not there yet is reported as not available.
EXTERNAL = {
    "rebuild": "ledger.bench.rebuild",
    "time-travel": "ledger.bench.time_travel",
    "http": "ledger.bench.http_load",
    "instructions": "ledger.bench.instructions",
}
BESIDE_CEILINGS = ("ceilings", "commands", "batched")

app = typer.Typer(add_completion=False, rich_markup_mode=None)


class Suite:
    """One run: the sections asked for, on each backend, sharing what several sections judge
    against (each backend's ceilings and unbatched rates) so it is measured once."""

    def __init__(self, config: BenchConfig, sections: list[str]) -> None:
        self.config, self.sections = config, sections
        self.figures: list[Figure] = []
        self.not_available: list[Unavailable] = []
        self.failures: list[Failure] = []
        self.seconds: dict[str, float] = {}  # per section (and backend): where a run's time goes
        self._row_bytes: int | None = None
        self._ceilings: dict[Backend, ceilings_module.Ceilings] = {}
        self._rates = {backend: commands.Rates(backend, config) for backend in config.backends}

    def row_bytes(self) -> int:
        if self._row_bytes is None:
            self._row_bytes = ceilings_module.ledger_event_bytes(self.config)
        return self._row_bytes

    def ceilings(self, backend: Backend) -> ceilings_module.Ceilings:
        if backend not in self._ceilings:
            measured = ceilings_module.measure(backend, self.config, self.row_bytes())
            self._ceilings[backend] = measured
        return self._ceilings[backend]

    def run(self) -> None:
        """Each backend's ceilings, commands and batched figures one after the other (the
        machine's load drifts: a ceiling is best measured next to what it judges), then the
        sections that take their own stores, growth last (the slowest)."""
        for backend in self.config.backends:
            for section in self._asked(BESIDE_CEILINGS):
                self._guard(section, backend, partial(self._per_backend, section, backend))
        for section in self._asked(("hot", *EXTERNAL)):
            work = partial(hot_asset.run, self.config)
            if section in EXTERNAL:
                work = partial(self._external, section)
            self._guard(section, None, work)
        for backend in self.config.backends:
            for section in self._asked(("growth",)):
                self._guard(section, backend, partial(self._per_backend, section, backend))

    def _asked(self, sections: tuple[str, ...]) -> list[str]:
        return [section for section in SECTIONS if section in sections and section in self.sections]

    def _per_backend(self, section: str, backend: Backend) -> list[Figure] | Unavailable:
        ceilings = self.ceilings(backend)
        rates = self._rates[backend]
        if section == "ceilings":
            return ceilings.figures()
        if section == "commands":
            return commands.command_figures(rates, ceilings.single_row, ceilings.two_row)
        if section == "batched":
            return commands.batched_figures(rates, ceilings.batch)
        assert section == "growth", section
        return commands.growth_figures(backend, self.config, ceilings.two_row)

    def _external(self, section: str) -> list[Figure] | Unavailable:
        name = EXTERNAL[section]
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise  # the module is there but something it imports is not: a failure
            return Unavailable(
                section=section, name=section, backend=None, reason=f"{name} is not written yet"
            )
        progress(f"{section}: {name}.run")
        found: list[Figure] = module.run(self.config)
        return found

    def _guard(
        self,
        section: str,
        backend: Backend | None,
        work: Callable[[], list[Figure] | Unavailable],
    ) -> None:
        started = time.perf_counter()
        try:
            found = work()
        except Exception as error:  # reported, and the run goes on with the other sections
            traceback.print_exc(file=sys.stderr)
            self.failures.append(
                Failure(section=section, backend=backend, error=f"{type(error).__name__}: {error}")
            )
            return
        finally:
            where = section if backend is None else f"{section} {backend}"
            self.seconds[where] = round(time.perf_counter() - started, 1)
        if isinstance(found, Unavailable):
            self.not_available.append(found)
        else:
            self.figures.extend(found)


def postgres_unreachable(url: str) -> str | None:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as error:
        return str(error).strip()
    return None


def build_config(quick: bool, given: dict[str, Any]) -> BenchConfig:
    """The defaults, or --quick's sizes, with every size given as a flag on top."""
    base: dict[str, Any] = BenchConfig.quick_sizes() if quick else {}
    chosen = {name: value for name, value in given.items() if value is not None}
    for name, value in chosen.items():
        if isinstance(value, list):
            chosen[name] = tuple(value)
    return BenchConfig(**(base | chosen))


def _check_sizes(config: BenchConfig) -> None:
    for name, value in config.model_dump().items():
        values = value if isinstance(value, tuple | list) else [value]
        if any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values):
            raise typer.BadParameter(f"--{name.replace('_', '-')} must be at least 1")
        if isinstance(value, tuple) and not value:
            raise typer.BadParameter(f"--{name.replace('_', '-')} needs a value")


@app.command()
def bench(
    backend: Annotated[
        list[str] | None,
        typer.Option(help="sqlite or postgres; repeat for both (the default).", show_default=False),
    ] = None,
    postgres_url: Annotated[
        str, typer.Option(help="A libpq URL (each store gets a schema of its own in it).")
    ] = POSTGRES_URL_DEFAULT,
    runs: Annotated[int | None, typer.Option(help="Runs of each figure (default 3).")] = None,
    quick: Annotated[
        bool, typer.Option(help="Every size tiny: a smoke run in under a minute.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help=f"A section to run, repeatable: {', '.join(SECTIONS)}.", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write every figure, the config and the machine as JSON.")
    ] = None,
    commands_: Annotated[
        int | None, typer.Option("--commands", help="Timed commands per run (default 2000).")
    ] = None,
    mixed_accounts: Annotated[int | None, typer.Option(help="Simulator accounts (200).")] = None,
    mixed_hours: Annotated[int | None, typer.Option(help="Simulator hours (24).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Commands per batch (1000).")] = None,
    hot_workers: Annotated[
        list[int] | None,
        typer.Option(help="Hot-asset worker counts, repeatable (1, 2, 4).", show_default=False),
    ] = None,
    hot_commands: Annotated[
        int | None, typer.Option(help="Hot-asset commands, all workers together (1000).")
    ] = None,
    rebuild_events: Annotated[
        list[int] | None,
        typer.Option(help="Rebuild store sizes, repeatable (100000, 1000000).", show_default=False),
    ] = None,
    time_travel_stores: Annotated[
        list[int] | None,
        typer.Option(
            help="Time-travel store sizes, repeatable (10000, 1000000).", show_default=False
        ),
    ] = None,
    time_travel_account_events: Annotated[
        list[int] | None,
        typer.Option(
            help="Events of the queried account, repeatable (1000, 100000).", show_default=False
        ),
    ] = None,
    time_travel_queries: Annotated[int | None, typer.Option(help="As-of queries (200).")] = None,
    growth_events: Annotated[
        list[int] | None,
        typer.Option(
            help="History before the growth figures, repeatable (100000, 1000000).",
            show_default=False,
        ),
    ] = None,
    growth_users: Annotated[int | None, typer.Option(help="Users of that history.")] = None,
    ceiling_rows: Annotated[
        int | None, typer.Option(help="Raw single-row commits and 2-row txns per run (2000).")
    ] = None,
    ceiling_batch_rows: Annotated[
        int | None, typer.Option(help="Raw rows in 1,000-row transactions per run (20000).")
    ] = None,
    read_rows: Annotated[int | None, typer.Option(help="Raw rows read+decoded (100000).")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator and history seed (1).")] = None,
) -> None:
    """Measure the ledger against the database's own ceilings, measured in the same run.

    Example: scripts/bench --only ceilings --only commands --backend sqlite --out results.json
    """
    backends = _choices("--backend", backend, BACKENDS)
    sections = _choices("--only", only, SECTIONS)
    config = build_config(
        quick,
        {
            "backends": backends,
            "postgres_url": postgres_url,
            "runs": runs,
            "commands": commands_,
            "mixed_accounts": mixed_accounts,
            "mixed_hours": mixed_hours,
            "batch_size": batch_size,
            "hot_workers": hot_workers,
            "hot_commands": hot_commands,
            "rebuild_events": rebuild_events,
            "time_travel_stores": time_travel_stores,
            "time_travel_account_events": time_travel_account_events,
            "time_travel_queries": time_travel_queries,
            "growth_events": growth_events,
            "growth_users": growth_users,
            "ceiling_rows": ceiling_rows,
            "ceiling_batch_rows": ceiling_batch_rows,
            "read_rows": read_rows,
            "seed": seed,
        },
    )
    _check_sizes(config)
    if out is not None and not out.resolve().parent.is_dir():
        _cannot_run(f"--out: no folder {out.resolve().parent}")
    if "postgres" in config.backends:
        problem = postgres_unreachable(config.postgres_url)
        if problem is not None:
            _cannot_run(f"PostgreSQL unreachable at {config.postgres_url}: {problem}")
    raise typer.Exit(run_and_report(config, sections, out))


def run_and_report(config: BenchConfig, sections: list[str], out: Path | None) -> int:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_facts(config)
    started = time.perf_counter()
    suite = Suite(config, sections)
    suite.run()
    results = Results(
        config=config,
        sections=sections,
        machine=machine,
        started_at=started_at,
        elapsed_seconds=round(time.perf_counter() - started, 1),
        section_seconds=suite.seconds,
        figures=suite.figures,
        not_available=suite.not_available,
        failures=suite.failures,
    )
    console = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)
    print_table(results, console)
    spent = ", ".join(f"{where} {seconds} s" for where, seconds in results.section_seconds.items())
    console.print(f"elapsed: {results.elapsed_seconds} s ({spent})")
    if out is not None:
        write_json(results, out)
    return EXIT_SECTION_FAILED if results.failures else EXIT_RAN


def _choices(flag: str, given: list[str] | None, allowed: tuple[str, ...]) -> list[Any]:
    if not given:
        return list(allowed)
    unknown = [value for value in given if value not in allowed]
    if unknown:
        raise typer.BadParameter(
            f"{unknown[0]!r}: use one of {', '.join(allowed)}", param_hint=flag
        )
    return [value for value in allowed if value in given]  # in run order, once each


def _cannot_run(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr)
    raise typer.Exit(EXIT_CANNOT_RUN)


def main() -> None:
    app()
