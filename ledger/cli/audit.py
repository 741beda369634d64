"""`ledger digest` and `ledger verify`: tamper evidence over the whole event log."""

from typing import Annotated

import typer

from ledger.audit.chain import Digest
from ledger.audit.verify import ChainReport, head_digest, verify_chain
from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, print_json, progress_bar, stdout, table

EXIT_INTACT = 0
EXIT_TAMPERED = 1


@app.command()
def digest(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Print the hash chain's head: the log position and hash an auditor writes down, to prove
    later with `ledger verify --digest POSITION:HASH` that history up to it is unchanged.

    Example: ledger digest --json
    """
    with open_ledger(db, read_only=True) as ledger:  # an auditor's role may only read
        head = head_digest(ledger)
    if as_json:
        print_json(
            None
            if head is None
            else {"position": head.position, "hash": head.hash, "digest": str(head)}
        )
        return
    stdout.print("empty log: no digest yet" if head is None else str(head))


@app.command()
def verify(
    db: DbOption = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--digest",
            help="POSITION:HASH written down earlier (from `ledger digest`): prove the history "
            "up to it is unchanged.",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute the hash chain from the first event and report the first log position where
    the stored log or the stored chain disagrees.

    Exit code 0 intact, 1 tampered, 2 could not run.

    Example: ledger verify --digest "$(ledger digest)"
    """
    try:
        pinned = None if against is None else Digest.parse(against)
    except ValueError as exc:
        error(f"--digest: {exc}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    with (
        open_ledger(db, read_only=True) as ledger,
        progress_bar("verifying", quiet=quiet) as advance,
    ):
        report = verify_chain(ledger, digest=pinned, progress=advance)
    _print_report(report, as_json=as_json)
    raise typer.Exit(EXIT_INTACT if report.is_intact else EXIT_TAMPERED)


def _print_report(report: ChainReport, *, as_json: bool) -> None:
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    rows: list[tuple[str, object]] = [
        ("result", "intact" if report.is_intact else "TAMPERED"),
        ("events checked", report.events_checked),
        ("last good link", "-" if report.head is None else str(report.head)),
    ]
    if report.digest is not None:
        rows.append(("digest checked", str(report.digest)))
    if not report.is_intact:
        rows += [("first bad position", report.first_bad_position), ("problem", report.problem)]
    stdout.print(table("Hash chain", ["", ""], rows))
