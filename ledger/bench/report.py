"""The results of one run: a table for people on stdout, and JSON for machines (`--out`)."""

import json
import math
import os
import platform
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ledger.bench.core import BenchConfig, Figure, Timing, Unavailable

POSTGRES_SETTINGS = ("server_version", "fsync", "synchronous_commit", "wal_sync_method")


class Failure(BaseModel):
    """A section that raised: the others still ran and are reported."""

    model_config = ConfigDict(frozen=True)

    section: str
    backend: str | None
    error: str


class Results(BaseModel):
    model_config = ConfigDict(frozen=True)

    config: BenchConfig
    sections: list[str]
    machine: dict[str, Any]
    started_at: str
    elapsed_seconds: float
    section_seconds: dict[str, float]  # the first section on a backend includes its ceilings
    figures: list[Figure]
    not_available: list[Unavailable]
    failures: list[Failure]


def machine_facts(config: BenchConfig) -> dict[str, Any]:
    from importlib.metadata import version

    import psycopg

    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "sqlite_settings": "journal_mode=WAL synchronous=FULL (the ledger's and the ceilings')",
        "psycopg": psycopg.__version__,
        "eventsourcing": version("eventsourcing"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if "postgres" in config.backends:
        facts["postgres"] = postgres_settings(config.postgres_url)
    return facts


def postgres_settings(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url, connect_timeout=5, autocommit=True) as connection:
        return {
            name: str(connection.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in POSTGRES_SETTINGS
        }


def write_json(results: Results, path: Path) -> None:
    data = _finite(results.model_dump(mode="json"))
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """JSON has no infinity: a rate over no elapsed time becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


# --- the table ---------------------------------------------------------------------------------


def print_table(results: Results, console: Console) -> None:
    table = Table(title=_title(results), show_lines=False)
    for heading, justify in (
        ("section", "left"),
        ("name", "left"),
        ("backend", "left"),
        (escape("value median [low–high]"), "right"),
        ("unit", "left"),
        ("ceiling", "right"),
        ("ratio", "right"),
        ("target", "right"),
        ("met", "center"),
    ):
        table.add_column(heading, justify=justify)  # type: ignore[arg-type]
    for figure in results.figures:
        cells = [
            figure.section,
            figure.name,
            figure.backend or "",
            _timing(figure.value),
            figure.unit,
            _ceiling(figure),
            "" if figure.ratio is None else f"{figure.ratio:.2f}",
            _target(figure),
        ]
        met = {True: "yes", False: "[bold red]NO[/]", None: ""}[figure.met]
        table.add_row(*(escape(cell) for cell in cells), met)
    console.print(table)
    for missing in results.not_available:
        where = f" ({missing.backend})" if missing.backend else ""
        console.print(
            escape(f"not available: {missing.section}: {missing.name}{where}: {missing.reason}")
        )
    for failure in results.failures:
        where = f" ({failure.backend})" if failure.backend else ""
        console.print(
            f"[bold red]FAILED[/]: {escape(f'{failure.section}{where}: {failure.error}')}"
        )


def _title(results: Results) -> str:
    facts = results.machine
    postgres = facts.get("postgres", {})
    parts = [
        f"ledger benchmarks, {results.started_at}",
        f"{facts.get('nproc')} CPUs",
        f"runs={results.config.runs}",
        f"SQLite {facts.get('sqlite')}",
    ]
    if postgres:
        parts.append(
            f"PostgreSQL {postgres.get('server_version', '?').split()[0]} "
            f"(fsync={postgres.get('fsync')}, synchronous_commit="
            f"{postgres.get('synchronous_commit')})"
        )
    if results.config.quick:
        parts.append("QUICK: smoke sizes, not measurements")
    return ", ".join(parts)


def number(value: float) -> str:
    """Three significant figures at least, thousands separated."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def _timing(timing: Timing) -> str:
    if timing.runs == 1 or timing.low == timing.high:
        return number(timing.median)
    return f"{number(timing.median)} [{number(timing.low)}–{number(timing.high)}]"


def _ceiling(figure: Figure) -> str:
    if figure.ceiling is None:
        return ""
    return f"{figure.ceiling_name}: {number(figure.ceiling.median)}"


def _target(figure: Figure) -> str:
    if figure.target is None:
        return ""
    if figure.ratio is None:  # a target on the value itself (e.g. zero overshoots)
        return f"{'≤' if figure.better == 'lower' else '≥'} {number(figure.target)}"
    return f"{'≥' if figure.better == 'higher' else '≤'} {figure.target:g}×"
