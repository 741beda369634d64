"""`ledger account ID` and `ledger assets`: state for people (tables) or jobs (--json)."""

from decimal import Decimal
from typing import Annotated

import typer
from rich.table import Table

from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, print_json, stdout, table
from ledger.money import format_plain, quantize_down
from ledger.queries import AccountIdInvalid, AssetView, account_view, assets_view


@app.command()
def account(
    account_id: Annotated[str, typer.Argument(help="e.g. u1:cross, u1:isolated:BTCUSDT")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one account: status, mode, holdings, liabilities, interest and margin levels.

    Example: ledger account u1:cross --json
    """
    with open_ledger(db) as ledger:
        try:
            view = account_view(ledger, account_id)
        except AccountIdInvalid as exc:
            error(str(exc))
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json(view.model_dump(mode="json"))
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
def assets(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List every asset with its platform totals, upper limit, ratio and band.

    Example: ledger assets --json
    """
    with open_ledger(db) as ledger:
        views = assets_view(ledger)
    if as_json:
        print_json([v.model_dump(mode="json") for v in views])
        return
    stdout.print(asset_table(views))


def asset_table(views: list[AssetView]) -> Table:
    return table(
        "Assets",
        ["asset", "rank", "capped", "total", "isolated", "upper limit", "ratio", "band", "price"],
        [
            (
                v.asset,
                v.collateral_rank,
                "yes" if v.capped else "no",
                v.total,
                v.isolated_total,
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
