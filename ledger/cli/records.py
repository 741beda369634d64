"""`ledger explain`, `ledger history` and `ledger export`: what the log says, for people and
for tools."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.audit.explain import Explanation, RecordNotFound, explain
from ledger.audit.export import ExportFilter, ExportFormat, export_rows, write_export
from ledger.audit.history import HistoryLine, account_history
from ledger.audit.reconcile import ExternalReportInvalid, reconcile
from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, note, print_json, progress_bar, stdout, table
from ledger.cli.show import parse_option_time
from ledger.queries import AccountIdInvalid, parse_account_id

FromOption = Annotated[
    str | None, typer.Option("--from", help="From this business time (RFC 3339), inclusive.")
]
ToOption = Annotated[
    str | None, typer.Option("--to", help="Up to this business time (RFC 3339), inclusive.")
]


@app.command("explain")
def explain_command(
    key: Annotated[str, typer.Argument(help="A request id, or an event id <uuid>:<version>.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Explain one decision: the request, the rule applied, every figure it was decided on
    (band, T, U, q_max, prices, margin levels, parameters in force) and what was recorded.

    Example: ledger explain t2 --json
    """
    with open_ledger(db) as ledger:
        try:
            explanation = explain(ledger, key)
        except RecordNotFound as exc:
            error(str(exc))
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json(explanation.model_dump(mode="json"))
        return
    _print_explanation(explanation)


def _print_explanation(e: Explanation) -> None:
    outcome = e.status if e.reason is None else f"{e.status}: {e.reason}"
    stdout.print(
        table(
            f"Request {e.request_id}",
            ["", ""],
            [
                ("command", e.command_type),
                ("rule", e.rule),
                ("actor", e.actor),
                ("effective at", e.effective_at),
                ("recorded at", e.recorded_at),
                ("account", e.account),
                ("outcome", outcome),
                ("message", e.message),
            ],
        )
    )
    stdout.print(table("Command", ["field", "value"], _flat(e.command)))
    stdout.print(table("Figures the decision used", ["figure", "value"], _flat(e.figures)))
    listed = f" ({len(e.events)} of {e.events_total})" if e.events_total > len(e.events) else ""
    stdout.print(
        table(
            f"Events recorded{listed}",
            ["position", "event", "id", "fields"],
            [
                (
                    ev.position,
                    ("→ " if ev.event_id == e.focus_event_id else "") + ev.event_type,
                    ev.event_id,
                    json.dumps(ev.fields, sort_keys=True),
                )
                for ev in e.events
            ],
        )
    )


def _flat(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (key, value if isinstance(value, str) else json.dumps(value, sort_keys=True))
        for key, value in values.items()
    ]


@app.command()
def history(
    account_id: Annotated[str, typer.Argument(help="e.g. u1:cross")],
    db: DbOption = None,
    since: FromOption = None,
    until: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """An account's events with what each changed and the running balances after it.

    With --json: one JSON object per line (one per event).

    Example: ledger history u1:cross --from 2026-03-02T00:00:00Z --json
    """
    start, end = parse_option_time("--from", since), parse_option_time("--to", until)
    try:
        parse_account_id(account_id)
    except AccountIdInvalid as exc:
        error(str(exc))
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    with open_ledger(db) as ledger:
        lines = account_history(ledger, account_id, since=start, until=end)
        if as_json:
            for line in lines:
                print_json(line.model_dump(mode="json"))
            return
        stdout.print(_history_table(account_id, list(lines)))


def _history_table(account_id: str, lines: list[HistoryLine]) -> Any:
    def plain(values: dict[str, str]) -> str:
        return " ".join(f"{asset} {quantity}" for asset, quantity in values.items()) or "-"

    return table(
        f"History of {account_id}",
        ["position", "effective at", "event", "request", "changes", "holdings", "debt"],
        [
            (
                line.position,
                line.effective_at,
                line.event_type.split(".", 1)[-1],
                line.request_id,
                "; ".join(f"{field} {plain(moved)}" for field, moved in line.changes.items()),
                plain(line.holdings),
                plain(line.liabilities),
            )
            for line in lines
        ],
    )


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    form: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl, csv or parquet.")
    ] = ExportFormat.JSONL,
    db: DbOption = None,
    since: FromOption = None,
    until: ToOption = None,
    account: Annotated[str | None, typer.Option(help="Only this account's events.")] = None,
    asset: Annotated[str | None, typer.Option(help="Only events that concern this asset.")] = None,
    event_type: Annotated[
        str | None,
        typer.Option("--type", help="Only this event type, e.g. Borrowed or AssetPool.CapSet."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Stream the event log (positions, times, ids, decoded payloads) to a file, filtered, in
    bounded memory. The columns are documented in the README (Export).

    Example: ledger export --asset ABC --format parquet --out abc.parquet
    """
    if account is not None:
        try:
            parse_account_id(account)
        except AccountIdInvalid as exc:
            error(f"--account: {exc}")
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    selection = ExportFilter(
        since=parse_option_time("--from", since),
        until=parse_option_time("--to", until),
        account=account,
        asset=asset,
        event_type=event_type,
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open_ledger(db) as ledger, progress_bar("exporting", quiet=quiet) as advance:
            count = write_export(export_rows(ledger, selection, advance), out, form)
    except OSError as exc:
        error(f"cannot write {out}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    if not quiet and sys.stderr.isatty():
        note(f"{count} events written to {out}")


@app.command("reconcile")
def reconcile_command(
    db: DbOption = None,
    external: Annotated[
        Path | None,
        typer.Option(
            "--external",
            help="A CSV balance report (columns account, asset, balance, as_of) to compare with "
            "the ledger's holdings as of each as_of.",
        ),
    ] = None,
    since_checkpoint: Annotated[
        bool,
        typer.Option(
            "--since-checkpoint",
            help="Instead of replaying the whole log, check the accounts changed since the last "
            "clean run against the write side (the sums, journal and fund checks still run).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Reconcile: read models against a fresh replay, per-asset sums against the totals and
    the pools, the trial balance and journal books, the insurance fund against its flows, and
    (with --external) the ledger's balances against an external report.

    Exit code 0 clean, 1 differences found, 2 could not run.

    Example: ledger reconcile --external balances.csv --json
    """
    with open_ledger(db) as ledger, progress_bar("reconciling", quiet=quiet) as advance:
        try:
            report = reconcile(
                ledger, external=external, since_checkpoint=since_checkpoint, progress=advance
            )
        except ExternalReportInvalid as exc:
            error(f"--external: {exc}")
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        stdout.print(
            table(
                f"Reconciliation at log position {report.position}"
                + (
                    ""
                    if report.since_checkpoint is None
                    else f" (changes since the clean run at {report.since_checkpoint})"
                ),
                ["check", "result", "differences", "first position"],
                [
                    (
                        c.name,
                        "clean" if c.is_clean else "DIFFERENCES",
                        c.difference_count,
                        c.first_divergence_position,
                    )
                    for c in report.checks
                ],
            )
        )
        for check in report.checks:
            if check.differences:
                stdout.print(
                    table(
                        f"{check.name}: differences",
                        ["subject", "expected", "found", "position", "detail"],
                        [
                            (d.subject, d.expected, d.found, d.position, d.detail)
                            for d in check.differences
                        ],
                    )
                )
    raise typer.Exit(0 if report.is_clean else 1)
