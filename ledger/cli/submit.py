"""`ledger submit FILE|-`: one JSON command per line in, one JSON outcome per line out."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from ledger import limits
from ledger.application import Ledger
from ledger.cli.main import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK, DbOption, app, open_ledger
from ledger.cli.output import error, note, print_json, stderr
from ledger.commands import CommandBase, CommandInvalid, parse_line
from ledger.outcomes import Outcome


@app.command()
def submit(
    file: Annotated[str, typer.Argument(help="A JSON-lines file of commands, or - for stdin.")],
    db: DbOption = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            help="No progress bar (shown on stderr's terminal while stdout goes to a file/pipe).",
        ),
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            max=limits.BATCH_SIZE_MAX,
            help="Commands decided one after another and committed together (each still "
            "atomic in effect). Default: 1000 for a FILE, 1 for - (a producer on stdin may wait "
            "for each outcome before writing the next line).",
        ),
    ] = None,
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
    total_bytes = None if file == "-" else Path(file).stat().st_size
    # A bar on the terminal while the outcomes go to a file or a pipe; never mixed into them.
    show_progress = sys.stderr.isatty() and not sys.stdout.isatty() and not quiet
    with (
        stream,
        open_ledger(db) as ledger,
        Progress(
            TextColumn("submitting"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not show_progress,
            redirect_stdout=False,  # the outcomes are stdout's, line by line, for jobs
            redirect_stderr=False,
        ) as progress,
    ):
        task = progress.add_task("submit", total=total_bytes)
        size = batch_size or (1 if file == "-" else limits.SUBMIT_BATCH_SIZE_DEFAULT)
        invalid = run_lines(ledger, stream, size, lambda n: progress.advance(task, n))
    raise typer.Exit(EXIT_INVALID if invalid else EXIT_OK)


def run_lines(
    ledger: Ledger,
    stream: BinaryIO,
    batch_size: int = 1,
    advance: Callable[[int], None] = lambda _size: None,
) -> int:
    """Process every line, `batch_size` commands per transaction; returns how many lines were
    invalid. Outcomes are printed in line order once their batch is committed; `advance` hears
    each line's size."""
    invalid = 0
    pending: list[tuple[int, CommandBase | CommandInvalid]] = []

    def flush() -> None:
        nonlocal invalid
        commands = [c for _, c in pending if not isinstance(c, CommandInvalid)]
        decided = iter(ledger.execute_batch(commands))
        for number, parsed in pending:
            result = parsed if isinstance(parsed, CommandInvalid) else next(decided)
            if isinstance(result, CommandInvalid):
                invalid += 1
                result = _invalid_outcome(number, result)
            print_json(result.to_json_dict())
        pending.clear()

    for number, text in enumerate(stream, start=1):
        advance(len(text))
        if number > limits.SUBMIT_LINES_MAX:
            flush()
            error(f"more than {limits.SUBMIT_LINES_MAX} lines: split the input")
            raise typer.Exit(EXIT_CANNOT_RUN)
        if not text.strip():
            continue
        try:
            pending.append((number, parse_line(text)))
        except CommandInvalid as exc:
            pending.append((number, exc))
        if len(pending) >= batch_size:
            flush()
    flush()
    return invalid


def _invalid_outcome(number: int, exc: CommandInvalid) -> Outcome:
    for field_error in exc.errors:
        note(f"line {number}: {field_error.field}: {field_error.problem}")
    return Outcome.of_invalid(number, exc)
