"""`ledger digest` and `ledger verify`: tamper evidence over the whole event log."""

from typing import Annotated, Any

import typer

from ledger.audit.chain import Digest
from ledger.audit.decisions import DecisionReport, verify_decisions
from ledger.audit.snapshots import SnapshotReport, verify_snapshots
from ledger.audit.verify import ChainReport, head_digest, verify_chain
from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, print_json, progress_bar, stdout, table
from ledger.views import digest_json

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
        print_json(digest_json(head))
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
    decisions: Annotated[
        bool,
        typer.Option(
            "--decisions",
            help="Also decide every recorded request again, in log order, against a scratch "
            "store, and check each recorded outcome; and that no capped pool's T ever passed U.",
        ),
    ] = False,
    snapshots: Annotated[
        bool,
        typer.Option(
            "--snapshots",
            help="Also check every stored snapshot against a replay of its aggregate's events "
            "(snapshots are outside the chain).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute the hash chain from the first event and report the first log position where
    the stored log or the stored chain disagrees. With --decisions, also re-decide every
    request (re-execution verification) and report the first one decided differently; with
    --snapshots, also check every snapshot against a replay.

    Exit code 0 intact (and right), 1 tampered (or a decision differs), 2 could not run.

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
    if not decisions and not snapshots:
        _print_report(report, as_json=as_json)
        raise typer.Exit(EXIT_INTACT if report.is_intact else EXIT_TAMPERED)
    sections: dict[str, Any] = {"chain": report.model_dump(mode="json")}
    is_right = report.is_intact
    if not as_json:
        _print_report(report, as_json=False)
    if decisions:
        # Re-deciding needs a scratch store to write to: not for a read-only role.
        with open_ledger(db) as ledger, progress_bar("re-deciding", quiet=quiet) as advance:
            decided = verify_decisions(ledger, progress=advance)
        sections["decisions"] = decided.model_dump(mode="json")
        is_right = is_right and decided.is_right
        if not as_json:
            _print_decisions(decided)
    if snapshots:
        with open_ledger(db, read_only=True) as ledger:
            checked = verify_snapshots(ledger)
        sections["snapshots"] = checked.model_dump(mode="json")
        is_right = is_right and checked.is_right
        if not as_json:
            _print_snapshots(checked)
    if as_json:
        print_json(sections)
    raise typer.Exit(EXIT_INTACT if is_right else EXIT_TAMPERED)


def _print_snapshots(report: SnapshotReport) -> None:
    rows: list[tuple[str, object]] = [
        ("result", "right" if report.is_right else "WRONG"),
        ("snapshots checked", report.snapshots_checked),
    ]
    if not report.is_right:
        rows += [
            ("aggregate", report.aggregate_id),
            ("version", report.version),
            ("problem", report.problem),
        ]
    stdout.print(table("Snapshots", ["", ""], rows))


def _print_decisions(report: DecisionReport) -> None:
    rows: list[tuple[str, object]] = [
        ("result", "right" if report.is_right else "WRONG"),
        ("requests decided again", report.requests_checked),
        ("capped pools past U", len(report.cap_overshoots)),
    ]
    if not report.is_right:
        rows += [
            ("first bad position", report.first_bad_position),
            ("request", report.request_id),
            ("problem", report.problem),
        ]
    stdout.print(table("Decisions", ["", ""], rows))


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
