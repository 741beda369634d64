"""`ledger submit FILE|-`: one JSON command per line in, one JSON outcome per line out."""

import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from ledger import limits
from ledger.application import Ledger
from ledger.cli.main import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK, DbOption, app, open_ledger
from ledger.cli.output import error, note, print_json_line
from ledger.commands import CommandInvalid, parse_line
from ledger.outcomes import Outcome, Status


@app.command()
def submit(
    file: Annotated[str, typer.Argument(help="A JSON-lines file of commands, or - for stdin.")],
    db: DbOption = None,
) -> None:
    """Decide and record commands, one JSON object per line; print one outcome per line.

    Example: echo '{"type": "transfer_in", "request_id": "r1", "user": "u1", "account": "cross",
    "asset": "ABC", "quantity": "100"}' | ledger submit -

    Exit code 0 when every line was processed (accepted, rejected and pending are normal
    outcomes), 1 when at least one line was invalid (the others were still processed), 2 when the
    command could not run (unreadable file, unreachable database).
    """
    try:
        # Bytes, decoded line by line: a line that is not UTF-8 is one invalid line, not a crash.
        stream: BinaryIO = sys.stdin.buffer if file == "-" else Path(file).open("rb")  # noqa: SIM115
    except OSError as exc:
        error(f"cannot read {file}: {exc.strerror}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    with stream, open_ledger(db) as ledger:
        invalid = run_lines(ledger, stream)
    raise typer.Exit(EXIT_INVALID if invalid else EXIT_OK)


def run_lines(ledger: Ledger, stream: BinaryIO) -> int:
    """Process every line; returns how many were invalid."""
    invalid = 0
    for number, text in enumerate(stream, start=1):
        if number > limits.SUBMIT_LINES_MAX:
            error(f"more than {limits.SUBMIT_LINES_MAX} lines: split the input")
            raise typer.Exit(EXIT_CANNOT_RUN)
        if not text.strip():
            continue
        try:
            outcome = ledger.execute(parse_line(text))
        except CommandInvalid as exc:
            invalid += 1
            outcome = Outcome(
                request_id=exc.request_id, status=Status.INVALID, line=number, errors=exc.errors
            )
            for field_error in exc.errors:
                note(f"line {number}: {field_error.field}: {field_error.problem}")
        print_json_line(outcome.to_json_dict())
    return invalid
