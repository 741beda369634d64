"""`ledger timeline` and `ledger postmortem`: what happened to an asset or an account between
two moments."""

import re
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledger.application import Ledger
from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, note, print_json, progress_bar, stdout, table
from ledger.cli.show import parse_option_time
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset
from ledger.incident.timeline import TimelineEntry, timeline
from ledger.queries import AccountIdInvalid, parse_account_id
from ledger.times import format_time

if TYPE_CHECKING:
    from ledger.incident.whatif_report import WhatIfReport

TABLE_PAGE_LINES = 500  # a table is printed per page of lines: memory stays bounded
_DURATION = re.compile(r"^(\d{1,9})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

FromOption = Annotated[
    str, typer.Option("--from", help="From this business time (RFC 3339), inclusive.")
]
ToOption = Annotated[
    str, typer.Option("--to", help="Up to this business time (RFC 3339), inclusive.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]


@app.command("timeline")
def timeline_command(
    since: FromOption,
    until: ToOption,
    asset: Annotated[
        str | None, typer.Option("--asset", help="The asset's story (give --asset or --account).")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="The account's story, e.g. u1:cross.")
    ] = None,
    db: DbOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """The ordered story of an asset or an account between two business times: price marks,
    band transitions (ratio before and after), transfer-ins accepted and refused (with q_max),
    borrows and repays, margin calls, auto top-ups (limited or blocked), liquidations with their
    deficits and insurance-fund movements, parameter changes; each line with its log position
    and event id (`ledger explain EVENT_ID` tells the decision).

    Streams the log in bounded memory. With --json: one JSON object per line (one per event).

    Example: ledger timeline --asset ABC --from 2026-03-02T10:00:00Z --to 2026-03-02T19:00:00Z
    """
    start, end = _window(since, until)
    if (asset is None) == (account is None):
        error("give --asset or --account (one of them)")
        raise typer.Exit(EXIT_CANNOT_RUN)
    if account is not None:
        try:
            parse_account_id(account)
        except AccountIdInvalid as exc:
            error(f"--account: {exc}")
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    # The table itself shows the progress on a terminal; the bar is for a piped --json.
    with (
        open_ledger(db, read_only=True) as ledger,
        progress_bar("reading the log", quiet=quiet or sys.stdout.isatty()) as advance,
    ):
        _known(ledger, asset=asset, account=account)
        entries = timeline(
            ledger, since=start, until=end, asset=asset, account=account, progress=advance
        )
        if as_json:
            for entry in entries:
                print_json(entry.model_dump(mode="json"))
            return
        subject = f"{asset}" if asset is not None else f"{account}"
        printed = 0
        for page in _pages(entries):
            title = f"Timeline of {subject}, {format_time(start)} to {format_time(end)}"
            if printed:
                title += f" (continued from line {printed + 1})"
            stdout.print(_timeline_table(title, page))
            printed += len(page)
        if not printed:
            stdout.print(f"nothing concerning {subject} between {since} and {until}")


@app.command()
def postmortem(
    since: FromOption,
    until: ToOption,
    asset: Annotated[str, typer.Option("--asset", help="The asset of the incident.")],
    out: Annotated[
        Path, typer.Option("--out", help="The folder to write index.html, PNGs, figures.json.")
    ],
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            help="The charts' interval, e.g. 15m, 1h, 1d [default: the window's 1/48th].",
            show_default=False,
        ),
    ] = None,
    whatif: Annotated[
        Path | None,
        typer.Option(
            "--whatif",
            help="The JSON of `ledger whatif --json`: adds its comparison (chart and figures) "
            "to the page.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Write a self-contained incident report of one asset over a window into a folder:
    index.html (open it in a browser) with PNG charts — the platform total against its 80/90/100%
    band lines and the upper limit, the price, refused transfer-ins, margin calls and
    liquidations per interval, the insurance fund — the accounts most involved, every band
    transition and liquidation; and figures.json, the same figures for tools. With --whatif,
    also the comparison of a counterfactual replay (`ledger whatif --json > whatif.json`).

    Example: ledger postmortem --asset ABC --from 2026-03-02T10:00:00Z --to 2026-03-02T19:00:00Z
    --out incident-abc
    """
    from ledger.incident.postmortem.figures import WindowInvalid
    from ledger.incident.postmortem.report import write_postmortem

    start, end = _window(since, until)
    step = _interval(interval)
    comparison = None if whatif is None else _whatif_report(whatif)
    try:
        with (
            open_ledger(db, read_only=True) as ledger,
            progress_bar("reading the log", quiet=quiet) as advance,
        ):
            report = write_postmortem(
                ledger,
                asset=asset,
                since=start,
                until=end,
                out=out,
                interval=step,
                whatif=comparison,
                progress=advance,
            )
    except WindowInvalid as exc:
        error(f"--{exc.field.replace('since', 'from')}: {exc.problem}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except OSError as exc:
        error(f"cannot write {out}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json(report.model_dump(mode="json", exclude={"figures"}))
        return
    if not quiet and sys.stderr.isatty():
        note(f"report written: {report.index} (open it in a browser)")
        note(f"figures: {report.figures_json}")


def _window(since: str, until: str) -> tuple[datetime, datetime]:
    start = parse_option_time("--from", since)
    end = parse_option_time("--to", until)
    assert start is not None and end is not None
    if start > end:
        error("--from: must not be later than --to")
        raise typer.Exit(EXIT_CANNOT_RUN)
    return start, end


def _interval(text: str | None) -> timedelta | None:
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        error(f"--interval: {text!r} is not a positive duration like 30s, 15m, 1h or 1d")
        raise typer.Exit(EXIT_CANNOT_RUN)
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _whatif_report(path: Path) -> "WhatIfReport":
    from pydantic import ValidationError

    from ledger.incident.whatif_report import WhatIfReport

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        error(f"--whatif: cannot read {path}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    try:
        return WhatIfReport.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        error(
            f"--whatif: {path} is not the JSON of `ledger whatif --json` ({where}: {first['msg']})"
        )
        raise typer.Exit(EXIT_CANNOT_RUN) from None


def _known(ledger: Ledger, *, asset: str | None, account: str | None) -> None:
    """An asset or account the ledger never heard of is a typo: say so rather than print an
    empty story."""
    if asset is not None and ledger.get_aggregate(Asset, Asset.create_id(asset)) is None:
        error(f"--asset: {asset} is not a listed asset")
        raise typer.Exit(EXIT_CANNOT_RUN)
    if account is not None:
        user, name = parse_account_id(account)
        if ledger.get_aggregate(MarginAccount, MarginAccount.create_id(user, name)) is None:
            error(f"--account: the ledger has no account {account}")
            raise typer.Exit(EXIT_CANNOT_RUN)


def _pages(entries: Iterable[TimelineEntry]) -> Iterator[list[TimelineEntry]]:
    iterator = iter(entries)
    while page := list(islice(iterator, TABLE_PAGE_LINES)):
        yield page


def _timeline_table(title: str, entries: list[TimelineEntry]) -> object:
    return table(
        title,
        ["position", "effective at", "what", "line", "event id"],
        [
            (
                entry.position,
                format_time(entry.effective_at),
                entry.kind.value.replace("_", " "),
                entry.text,
                entry.event_id,
            )
            for entry in entries
        ],
    )
