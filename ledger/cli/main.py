"""Entry point: the Typer app, the shared --db option, and exit codes 0 / 1 / 2."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from ledger.application import Ledger
from ledger.cli.output import error
from ledger.errors import DATABASE_ERRORS
from ledger.persistence import DATABASE_URL_DEFAULT

EXIT_OK = 0
EXIT_INVALID = 1  # some input was invalid (the rest was still processed)
EXIT_CANNOT_RUN = 2  # unreadable file, unreachable database, bad flags

app = typer.Typer(
    name="ledger",
    help=(
        "collateral-ledger: an event-sourced, platform-wide collateral ledger for margin "
        "trading.\n\n"
        "Exit codes: 0 every line was processed (accepted, rejected and pending are normal "
        "outcomes); 1 some input was invalid; 2 the command could not run."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="LEDGER_DATABASE_URL",
        help=f"Database URL: sqlite:///path/file.db or postgresql://user@host:port/db "
        f"[default: {DATABASE_URL_DEFAULT}]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


@contextmanager
def open_ledger(db: str | None, *, read_only: bool = False) -> Iterator[Ledger]:
    """The ledger at --db, or exit 2 with a clear message when it cannot be opened or used."""
    try:
        ledger = Ledger(db, read_only=read_only)
    except DATABASE_ERRORS as exc:
        error(f"cannot open the database: {exc}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    try:
        with ledger:
            yield ledger
    except DATABASE_ERRORS as exc:
        error(f"database error: {exc}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None


def main() -> None:
    app()
