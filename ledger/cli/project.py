"""`ledger project` (catch up, or --follow) and `ledger projections status|rebuild`."""

import signal
from collections.abc import Callable
from types import FrameType
from typing import Annotated

import typer

from ledger import limits
from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, note, print_json, progress_bar, stdout, table
from projections.runner import ProjectionStatus, ReadModels, UnknownProjection

QuietOption = Annotated[
    bool, typer.Option("--quiet", help="No progress bar (shown only on a terminal anyway).")
]

projections_app = typer.Typer(
    help="The read models: their positions in the log, and rebuilding them.",
    no_args_is_help=True,
)
app.add_typer(projections_app, name="projections")


def print_status(statuses: list[ProjectionStatus], *, as_json: bool) -> None:
    if as_json:
        print_json([s.model_dump(mode="json") for s in statuses])
        return
    stdout.print(
        table(
            "Projections",
            ["projection", "position", "log head", "lag (events)", "holds"],
            [(s.name, s.position, s.head, s.lag, s.description) for s in statuses],
        )
    )


@app.command()
def project(
    db: DbOption = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Keep applying new events until Ctrl-C or SIGTERM."),
    ] = False,
    poll_seconds: Annotated[
        float,
        typer.Option("--poll", min=0.05, max=3600, help="Seconds between looks at the log."),
    ] = limits.PROJECTION_POLL_SECONDS,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Catch every read model up with the event log, then print where each one stands.

    With --follow it keeps them up to date as events arrive; stop it with Ctrl-C (or SIGTERM)
    and start it again: it resumes where it left off, never applying an event twice.

    Example: ledger project --follow
    """
    # A follower stops between batches on Ctrl-C or SIGTERM, during its first catch-up too.
    stopping = _stop_on_signals() if follow else (lambda: False)
    with open_ledger(db) as ledger, ReadModels(ledger) as read_models:
        with progress_bar("projecting", quiet=quiet) as advance:
            read_models.catch_up(progress=advance, should_stop=stopping)
        if follow and not stopping():
            if not quiet:
                note("following the log; Ctrl-C to stop")
            read_models.follow(poll_seconds=poll_seconds, should_stop=stopping)
        print_status(read_models.status(), as_json=as_json)


def _stop_on_signals() -> Callable[[], bool]:
    """Ctrl-C or SIGTERM ends the follow loop between batches, never inside one."""
    stop = {"requested": False}

    def request(_signum: int, _frame: FrameType | None) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request)
    signal.signal(signal.SIGTERM, request)
    return lambda: stop["requested"]


@projections_app.command("status")
def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Each read model's position in the log, the log's head, and how far behind it is.

    Example: ledger projections status --json
    """
    with open_ledger(db) as ledger, ReadModels(ledger) as read_models:
        print_status(read_models.status(), as_json=as_json)


@projections_app.command("rebuild")
def rebuild(
    name: Annotated[
        str | None,
        typer.Argument(help="One projection (see `ledger projections status`); default all."),
    ] = None,
    db: DbOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Drop a read model (or all) and build it again from the first event, in batches.

    Example: ledger projections rebuild accounts
    """
    with open_ledger(db) as ledger, ReadModels(ledger) as read_models:
        try:
            names = None if name is None else read_models.selected([name])
        except UnknownProjection as exc:
            error(str(exc))
            raise typer.Exit(EXIT_CANNOT_RUN) from None
        with progress_bar("rebuilding", quiet=quiet) as advance:
            read_models.rebuild(
                None if names is None else [m.name for m in names], progress=advance
            )
        print_status(read_models.status(), as_json=as_json)
