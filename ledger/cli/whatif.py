"""`ledger whatif` and `ledger bundle`: counterfactual replay, and an archive an auditor checks
offline."""

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ledger.audit.chain import Digest
from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, print_json, progress_bar, stdout, table
from ledger.incident.bundle import ChainMissing, EmptyWindow, write_bundle
from ledger.incident.bundle_verify import BundleReport, BundleUnreadable, verify_bundle
from ledger.incident.overrides import PARAM_NAMES_HELP, OverrideInvalid, parse_overrides
from ledger.incident.whatif import what_if
from ledger.incident.whatif_report import WhatIfReport
from ledger.times import NotATime, parse_time

EXIT_INTACT = 0
EXIT_ALTERED = 1

QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from", help="Start of the window: a business time (RFC 3339).", show_default=False
    ),
]
ToOption = Annotated[
    str | None,
    typer.Option(
        "--to", help="End of the window: a business time (RFC 3339), inclusive.", show_default=False
    ),
]


@app.command()
def whatif(
    since: FromOption = None,
    until: ToOption = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help=f"PARAM=VALUE, repeatable. PARAM is one of: {PARAM_NAMES_HELP}.",
            show_default=False,
        ),
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option(
            "--chart",
            help="Also draw the comparison chart (recorded against what if) into this PNG file.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Decide every request of the window (--from, --to] again under changed parameters,
    starting from the true state at --from, in a scratch store (the real log is only read),
    and report the decisions that differ (accepted <-> rejected, another q_max, margin calls,
    top-ups and liquidations that would or would not have happened) and the platform totals
    and insurance-fund flows at --to, recorded against counterfactual.

    The state at --from is every request dated up to it, decided again as recorded. The
    overrides are in force from --from and keep holding over parameter changes recorded inside
    the window. Without --set, every decision is reproduced (zero differences).

    Exit code 0 the replay ran (differences are its result, not an error), 2 it could not run
    (bad or unknown --set, bad times, database).

    Example: ledger whatif --from 2026-03-02T09:00:00Z --to 2026-03-02T12:00:00Z
    --set ABC.upper_limit=500000 --set classic_3x.liquidation_level=1.05 --json
    """
    start, end = _window(since, until)
    try:
        overrides = parse_overrides(settings or [])
    except OverrideInvalid as exc:
        error(str(exc))
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    with open_ledger(db) as ledger, progress_bar("replaying", quiet=quiet) as advance:
        try:
            report = what_if(ledger, since=start, until=end, overrides=overrides, progress=advance)
        except OverrideInvalid as exc:
            error(str(exc))
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if chart is not None:
        from ledger.incident.whatif_chart import comparison_chart  # matplotlib: only here

        try:
            comparison_chart(report, chart)
        except OSError as exc:
            error(f"--chart: {exc}")
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        _print_whatif(report)


bundle_app = typer.Typer()
app.add_typer(bundle_app, name="bundle")


@bundle_app.callback(invoke_without_command=True)
def bundle(
    context: typer.Context,
    since: FromOption = None,
    until: ToOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="The archive to write (a zip).", show_default=False)
    ] = None,
    db: DbOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Write one zip archive of the window [--from, --to]: its events (JSON lines and Parquet,
    `ledger export`'s columns) and their stored bytes with the chain links at both ends, the
    parameters in force and the as-of state at both ends, the band timeline, the explanations
    of every refused request, and a manifest with the SHA-256 of every member.
    `ledger bundle verify FILE` checks it with no database.

    Exit code 0 written, 2 could not run (bad times, no event in the window, database).

    Example: ledger bundle --from 2026-03-02T09:00:00Z --to 2026-03-02T12:00:00Z --out incident.zip
    """
    if context.invoked_subcommand is not None:
        return
    start, end = _window(since, until)
    if out is None:
        error("--out: the archive to write is required")
        raise typer.Exit(EXIT_CANNOT_RUN)
    with open_ledger(db) as ledger, progress_bar("bundling", quiet=quiet) as advance:
        try:
            manifest = write_bundle(ledger, since=start, until=end, out=out, progress=advance)
        except (EmptyWindow, ChainMissing, OSError) as exc:
            error(str(exc))
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json({"file": str(out), **manifest.model_dump(mode="json")})
        return
    rows = [
        ("file", str(out)),
        ("events", manifest.events),
        ("positions", f"{manifest.first_position}-{manifest.last_position}"),
        ("chain start", manifest.chain_start),
        ("chain end", manifest.chain_end),
    ]
    stdout.print(table("Bundle", ["", ""], rows))


@bundle_app.command("verify")
def bundle_verify(
    file: Annotated[Path, typer.Argument(help="The bundle (from `ledger bundle`).")],
    against: Annotated[
        str | None,
        typer.Option(
            "--digest",
            help="POSITION:HASH written down earlier: the segment must end at it.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a bundle offline (no database): every member's SHA-256 against the manifest, the
    hash chain recomputed over the stored events from the link before the window to the link
    at its end, and the JSON lines and Parquet events equal to the stored ones.

    Exit code 0 intact, 1 altered (naming the member and the first event position), 2 the file
    could not be read as a bundle.

    Example: ledger bundle verify incident.zip --json
    """
    try:
        pinned = None if against is None else Digest.parse(against)
    except ValueError as exc:
        error(f"--digest: {exc}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    try:
        report = verify_bundle(file, digest=pinned)
    except BundleUnreadable as exc:
        error(str(exc))
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        _print_bundle_report(report)
    if not report.is_intact and not as_json:
        where = "" if report.position is None else f" at position {report.position}"
        error(f"{report.member}{where}: {report.problem}")
    raise typer.Exit(EXIT_INTACT if report.is_intact else EXIT_ALTERED)


def _window(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    times = []
    for option, value in (("--from", since), ("--to", until)):
        if value is None:
            error(f"{option}: a business time (RFC 3339) is required")
            raise typer.Exit(EXIT_CANNOT_RUN)
        try:
            times.append(parse_time(value))
        except NotATime as exc:
            error(f"{option} {exc}")
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if times[0] > times[1]:
        error("--to: must not be before --from")
        raise typer.Exit(EXIT_CANNOT_RUN)
    return times[0], times[1]


def _print_whatif(report: WhatIfReport) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in report.overrides.items()) or "none"
    stdout.print(
        table(
            "What if",
            ["", ""],
            [
                ("window", f"{report.since} .. {report.until}"),
                ("overrides", shown),
                ("requests decided again", report.requests_replayed),
                *((k.replace("_", " "), v) for k, v in report.summary.items()),
            ],
        )
    )
    rows = []
    for d in report.differences:
        if d.accounts:
            for part in d.accounts:
                rows.append(
                    (
                        d.position,
                        d.request_id,
                        d.command_type,
                        part.account,
                        _actions(part.recorded),
                        _actions(part.counterfactual),
                    )
                )
            continue
        rows.append(
            (
                d.position,
                d.request_id,
                d.command_type,
                d.recorded.account or "",
                _brief(d.recorded.status, d.recorded.reason, d.recorded.q_max),
                _brief(d.counterfactual.status, d.counterfactual.reason, d.counterfactual.q_max),
            )
        )
    if rows:
        columns = ["position", "request", "type", "account", "recorded", "counterfactual"]
        stdout.print(table("Decisions that differ", columns, rows))
    totals = [
        (
            asset,
            "T",
            t.platform_total.recorded,
            t.platform_total.counterfactual,
            t.platform_total.difference,
        )
        for asset, t in report.totals.assets.items()
    ] + [
        ("insurance fund", name, c.recorded, c.counterfactual, c.difference)
        for name, c in report.totals.insurance_fund.items()
    ]
    columns = ["", "figure", "recorded", "counterfactual", "difference"]
    stdout.print(table(f"Totals at {report.until}", columns, totals))


def _brief(status: str, reason: str | None, q_max: str | None) -> str:
    text = status if reason is None else f"{status} ({reason})"
    return text if q_max is None else f"{text}, q_max {q_max}"


def _actions(actions: list[dict[str, object]]) -> str:
    if not actions:
        return "nothing"
    return "; ".join(
        " ".join([str(a["event"]), *(f"{k}={v}" for k, v in a.items() if k != "event")])
        for a in actions
    )


def _print_bundle_report(report: BundleReport) -> None:
    rows: list[tuple[str, object]] = [
        ("result", "intact" if report.is_intact else "ALTERED"),
        ("file", report.file),
        ("events checked", report.events_checked),
        ("chain start", report.chain_start),
        ("chain end", report.chain_end),
    ]
    if not report.is_intact:
        rows += [("member", report.member), ("position", report.position)]
        rows.append(("problem", report.problem))
    stdout.print(table("Bundle", ["", ""], rows))
