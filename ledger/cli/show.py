"""`ledger account`, `accounts`, `assets`, `bands`, `trial-balance`: the read models, now or
at a past moment, for people (tables) or jobs (--json)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import typer
from rich.table import Table

from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, print_json, stdout, table
from ledger.money import format_plain, quantize_down
from ledger.queries import AccountIdInvalid
from ledger.times import NotATime, parse_time
from ledger.views import model_json, models_json
from projections.queries import AssetView, PointInTime, ReadSide
from projections.runner import ReadModels

AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="A past business time (RFC 3339, e.g. 2026-03-01T12:00:00Z): the state then.",
        show_default=False,
    ),
]

AtPositionOption = Annotated[
    int | None,
    typer.Option("--at-position", min=0, help="A log position: the state right after that event."),
]


@contextmanager
def read_side(db: str | None) -> Iterator[ReadSide]:
    """The read models, caught up with the log, for one query."""
    with open_ledger(db) as ledger, ReadModels(ledger) as read_models:
        yield ReadSide(read_models)


def parse_option_time(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except NotATime as exc:
        error(f"{option} {exc}")
        raise typer.Exit(EXIT_CANNOT_RUN) from None


def point_in_time(as_of: str | None, at_position: int | None) -> PointInTime:
    """--as-of or --at-position (not both): where in history a query looks."""
    if as_of is not None and at_position is not None:
        error("give --as-of or --at-position, not both")
        raise typer.Exit(EXIT_CANNOT_RUN)
    return PointInTime(at=parse_option_time("--as-of", as_of), position=at_position)


@app.command()
def account(
    account_id: Annotated[str, typer.Argument(help="e.g. u1:cross, u1:isolated:BTCUSDT")],
    db: DbOption = None,
    as_of: AsOfOption = None,
    at_position: AtPositionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one account: status, mode, holdings, liabilities, interest and margin levels
    (at the prices in force at that moment when --as-of or --at-position is given).

    Example: ledger account u1:cross --as-of 2026-03-01T12:00:00Z --json
    """
    when = point_in_time(as_of, at_position)
    with read_side(db) as reader:
        try:
            view = reader.account(account_id, when)
        except AccountIdInvalid as exc:
            error(str(exc))
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json(model_json(view))
        return
    stdout.print(
        table(
            f"Account {view.account}",
            ["field", "value"],
            [
                ("kind", view.kind),
                ("status", view.status),
                ("mode", view.mode),
                ("total value (USDT)", view.total_value_usdt),
                ("collateral value (USDT)", view.collateral_value_usdt),
                ("debt (USDT)", view.debt_usdt),
                ("margin level", view.margin_level or "∞ (no debt)"),
                ("collateral margin level", view.collateral_margin_level or "-"),
                ("Pro margin level", view.pro_margin_level or "-"),
            ],
        )
    )
    assets = sorted(set(view.holdings) | set(view.liabilities) | set(view.interest))
    stdout.print(
        table(
            "Balances",
            ["asset", "holding", "liability", "interest"],
            [
                (
                    a,
                    view.holdings.get(a, "0"),
                    view.liabilities.get(a, "0"),
                    view.interest.get(a, "0"),
                )
                for a in assets
            ],
        )
    )


@app.command()
def assets(
    db: DbOption = None,
    as_of: AsOfOption = None,
    at_position: AtPositionOption = None,
    as_json: JsonOption = False,
) -> None:
    """List every asset with its platform totals, upper limit, ratio and band (as they stood
    at a past business time with --as-of, or right after a log position with --at-position).

    Example: ledger assets --as-of 2026-03-01T12:00:00Z --json
    """
    when = point_in_time(as_of, at_position)
    with read_side(db) as reader:
        views = reader.assets(when)
    if as_json:
        print_json(models_json(views))
        return
    stdout.print(asset_table(views))


def asset_table(views: list[AssetView]) -> Table:
    return table(
        "Assets",
        [
            "asset",
            "rank",
            "capped",
            "total",
            "isolated",
            "borrowed",
            "upper limit",
            "ratio",
            "band",
            "price",
        ],
        [
            (
                v.asset,
                v.collateral_rank,
                "yes" if v.capped else "no",
                v.total,
                v.isolated_total,
                v.borrowed_total,
                v.upper_limit,
                None if v.ratio is None else _percent(v.ratio),
                v.band,
                v.price_usdt,
            )
            for v in views
        ],
    )


def _percent(ratio: str) -> str:
    """Percent exists only in output (STYLE §2); two places, rounded down."""
    return f"{format_plain(quantize_down(Decimal(ratio) * 100, 2))}%"


@app.command()
def accounts(
    db: DbOption = None,
    user: Annotated[str | None, typer.Option(help="Only this user's accounts.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List accounts with their status, mode, value, debt and margin levels.

    Example: ledger accounts --user u1 --json
    """
    with read_side(db) as reader:
        views = reader.accounts(user=user)
    if as_json:
        print_json(models_json(views))
        return
    stdout.print(
        table(
            "Accounts",
            ["account", "status", "mode", "value (USDT)", "debt (USDT)", "ML", "CML", "Pro ML"],
            [
                (
                    v.account,
                    v.status,
                    v.mode,
                    v.total_value_usdt,
                    v.debt_usdt,
                    v.margin_level,
                    v.collateral_margin_level,
                    v.pro_margin_level,
                )
                for v in views
            ],
        )
    )


@app.command()
def bands(
    asset: Annotated[str | None, typer.Argument(help="One asset; default all.")] = None,
    db: DbOption = None,
    since: Annotated[
        str | None, typer.Option("--from", help="From this business time (RFC 3339).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="Up to this business time (RFC 3339).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The band timeline: every change of a capped asset's band (A/B/C/D), with its time, the
    ratio before and after, and the event that caused it.

    Example: ledger bands ABC --from 2026-03-01T00:00:00Z --json
    """
    start = parse_option_time("--from", since)
    end = parse_option_time("--to", until)
    with read_side(db) as reader:
        changes = reader.bands(asset=asset, since=start, until=end)
    if as_json:
        print_json(models_json(changes))
        return
    stdout.print(
        table(
            "Band changes",
            ["effective at", "asset", "band", "ratio", "T after", "U", "event", "position"],
            [
                (
                    c.effective_at,
                    c.asset,
                    f"{c.band_before or '-'} -> {c.band_after or '-'}",
                    f"{_percent_or_dash(c.ratio_before)} -> {_percent_or_dash(c.ratio_after)}",
                    c.platform_total_after,
                    c.upper_limit,
                    f"{c.event_type} {c.event_id}",
                    c.position,
                )
                for c in changes
            ],
        )
    )


@app.command("trial-balance")
def trial_balance(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Debits and credits of the journal per asset. Exit code 0 when every asset balances,
    1 when one does not.

    Example: ledger trial-balance --json
    """
    with read_side(db) as reader:
        lines = reader.trial_balance()
    if as_json:
        print_json(models_json(lines))
    else:
        stdout.print(
            table(
                "Trial balance",
                ["asset", "debits", "credits", "difference", "balanced"],
                [
                    (
                        line.asset,
                        line.debit_total,
                        line.credit_total,
                        line.difference,
                        "yes" if line.is_balanced else "NO",
                    )
                    for line in lines
                ],
            )
        )
    raise typer.Exit(0 if all(line.is_balanced for line in lines) else 1)


def _percent_or_dash(ratio: str | None) -> str:
    return "-" if ratio is None else _percent(ratio)
