"""Scheduled jobs as commands: `ledger accrue-interest --until T`."""

from typing import Annotated

import typer

from ledger.cli.main import EXIT_INVALID, DbOption, app, open_ledger
from ledger.cli.output import note, print_json
from ledger.commands import CommandInvalid, parse_command
from ledger.times import NotATime, format_time, parse_time


@app.command("accrue-interest")
def accrue_interest(
    until: Annotated[str, typer.Option("--until", help="RFC 3339 time: charge hours up to it.")],
    request_id: Annotated[
        str | None,
        typer.Option("--request-id", help="Idempotency key [default: accrual:<until>]"),
    ] = None,
    db: DbOption = None,
) -> None:
    """Charge every full hour of interest up to --until on every open loan (once per loan and
    hour: running it twice charges once). Prints the job's outcome as one JSON line.

    Example: ledger accrue-interest --until 2026-03-02T12:00:00Z
    """
    try:  # the default key names the hour in one spelling, whatever offset was typed
        default_request_id = f"accrual:{format_time(parse_time(until))}"
    except NotATime:
        default_request_id = "accrual"  # the command is invalid anyway: `until` says why
    data = {
        "type": "accrue_interest",
        "request_id": request_id or default_request_id,
        "until": until,
        "effective_at": until,
        "actor": "job:accrue-interest",
    }
    with open_ledger(db) as ledger:
        try:
            outcome = ledger.execute(parse_command(data))
        except CommandInvalid as exc:
            for error in exc.errors:
                note(f"{error.field}: {error.problem}")
            raise typer.Exit(EXIT_INVALID) from None
    print_json(outcome.to_json_dict())
