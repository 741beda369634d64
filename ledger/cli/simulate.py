"""`ledger simulate`: a seeded platform history run through the ledger's own commands, then a
summary of what the ledger decided (tables for people, one JSON object with --json)."""

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ledger.application import Ledger
from ledger.cli.main import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK, JsonOption, app, open_ledger
from ledger.cli.output import error, note, print_json, stderr, stdout, table
from ledger.cli.show import asset_table
from ledger.commands import CommandInvalid, parse_command
from ledger.outcomes import Outcome, Status
from ledger.simulate import (
    ACCOUNTS_MAX,
    ACCOUNTS_MIN,
    HOURS_MAX,
    HOURS_MIN,
    SEED_MAX,
    generate,
    summarize,
)
from ledger.times import format_time
from projections.queries import AssetView, assets_view

SIMULATION_START = datetime(2026, 3, 2, tzinfo=UTC)  # business time of the first command

QuietOption = Annotated[
    bool, typer.Option("--quiet", help="No progress bar on stderr (it shows only on a terminal).")
]


@app.command()
def simulate(
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, max=SEED_MAX, help="Same seed and sizes: the same history."),
    ] = 1,
    accounts: Annotated[
        int,
        typer.Option("--accounts", min=ACCOUNTS_MIN, max=ACCOUNTS_MAX, help="Margin accounts."),
    ] = 200,
    hours: Annotated[
        int,
        typer.Option(
            "--hours", min=HOURS_MIN, max=HOURS_MAX, help="Hours of business time to simulate."
        ),
    ] = 24,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Where to run it: a database URL of an empty store.",
            show_default="a new SQLite file in a temporary folder",
        ),
    ] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write the generated commands to FILE as JSON lines: `ledger submit FILE` "
            "on an empty store reproduces the same outcomes.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Run a seeded, deterministic platform history through the ledger on an empty store:
    listings, caps, accounts of every kind (some through the opening risk check), transfers over
    the cap, borrows, leveraged trades, mode switches, hourly interest and prices, a crash of one
    capped asset mid-run with the risk sweep's margin calls, auto top-ups and liquidations.
    Prints a summary: commands by type and status, rejection reasons, the sweep's figures, the
    insurance fund and the per-asset bands.

    Example: ledger simulate --seed 7 --accounts 200 --hours 24 --out history.jsonl

    Exit code 0 when every command was processed (rejections are normal outcomes), 1 when the
    ledger found a generated command invalid, 2 when it could not run (a store that already
    holds events, an unwritable --out file, bad flags).
    """
    commands = list(generate(seed, accounts=accounts, hours=hours, start=SIMULATION_START))
    show_progress = sys.stderr.isatty() and not quiet
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ledger-simulate-") as folder:
        url = db or f"sqlite:///{Path(folder) / 'simulate.sqlite3'}"
        with open_ledger(url) as ledger:
            if ledger.recorder.max_notification_id():
                error(f"{url} already holds events; the simulation needs an empty store")
                raise typer.Exit(EXIT_CANNOT_RUN)
            if out is not None:
                write_commands(out, commands)
            outcomes = run_commands(ledger, commands, show_progress=show_progress)
            views = assets_view(ledger)
    elapsed_seconds = time.monotonic() - started
    summary = {
        "seed": seed,
        "accounts": accounts,
        "hours": hours,
        "start": format_time(SIMULATION_START),
        **summarize(commands, outcomes),
        "assets": [view.model_dump(mode="json") for view in views],
    }
    if as_json:
        print_json(summary)
    else:
        render(summary, views, elapsed_seconds, db)
    raise typer.Exit(EXIT_INVALID if summary["invalid"] else EXIT_OK)


def write_commands(path: Path, commands: list[dict[str, Any]]) -> None:
    try:
        with path.open("w", encoding="utf-8") as stream:
            for command in commands:
                stream.write(json.dumps(command, ensure_ascii=True) + "\n")
    except OSError as exc:
        error(f"cannot write {path}: {exc.strerror}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None


def run_commands(
    ledger: Ledger, commands: list[dict[str, Any]], *, show_progress: bool
) -> list[dict[str, Any]]:
    """Every command through the same parser and Ledger.execute as `ledger submit`."""
    outcomes = []
    columns = (
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True, disable=not show_progress) as bar:
        task = bar.add_task("simulate", total=len(commands))
        for number, command in enumerate(commands, start=1):
            try:
                outcome = ledger.execute(parse_command(command))
            except CommandInvalid as exc:
                outcome = Outcome(
                    request_id=exc.request_id or command["request_id"],
                    status=Status.INVALID,
                    line=number,
                    errors=exc.errors,
                )
                for field_error in exc.errors:
                    note(f"command {number}: {field_error.field}: {field_error.problem}")
            outcomes.append(outcome.to_json_dict())
            bar.advance(task)
    return outcomes


def render(
    summary: dict[str, Any], views: list[AssetView], elapsed_seconds: float, db: str | None
) -> None:
    store = db or "a temporary SQLite store"
    stdout.print(
        f"Simulated seed {summary['seed']}: {summary['accounts']} accounts over "
        f"{summary['hours']} hours from {summary['start']}, {summary['commands']} commands "
        f"in {elapsed_seconds:.1f} s on {store}",
        highlight=False,
        markup=False,
    )
    statuses = ("accepted", "rejected", "pending", "invalid")
    stdout.print(
        table(
            "Commands",
            ["type", *statuses, "total"],
            [
                (kind, *(counts.get(s, 0) for s in statuses), sum(counts.values()))
                for kind, counts in summary["by_type"].items()
            ]
            + [
                (
                    "all",
                    *(summary["statuses"].get(s, 0) for s in statuses),
                    summary["commands"],
                )
            ],
        )
    )
    stdout.print(table("Rejections", ["reason", "count"], summary["rejection_reasons"].items()))
    top_ups = summary["top_ups"]
    stdout.print(
        table(
            "Risk sweeps",
            ["figure", "value"],
            [
                ("margin calls", summary["margin_calls"]),
                ("auto top-ups: topped up", top_ups["topped_up"]),
                ("auto top-ups: limited", top_ups["limited"]),
                ("auto top-ups: blocked", top_ups["blocked"]),
                ("liquidations", summary["liquidations"]),
                ("liquidations with a deficit", summary["liquidations_with_deficit"]),
                ("deficits (USDT)", summary["deficit_usdt"]),
                ("not covered by the fund (USDT)", summary["uncovered_usdt"]),
                ("insurance fund balance (USDT)", summary["insurance_fund_usdt"]),
            ],
        )
    )
    stdout.print(asset_table(views))
