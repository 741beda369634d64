"""`ledger demo`: the README's main job: a fresh store, a scenario through the bands and the
opening check, the outcomes and the per-asset band table."""

import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.cli.main import EXIT_CANNOT_RUN, app, open_ledger
from ledger.cli.output import error, print_json, stdout, table
from ledger.cli.show import asset_table
from ledger.cli.simulate import SIMULATION_START, render, run_commands
from ledger.commands import parse_command
from ledger.simulate import generate, summarize
from ledger.times import format_time
from projections.queries import assets_view


def scenario() -> list[dict[str, Any]]:
    """A morning on the platform: ABC (rank 8, 1,000,000 cap, price 0.5) goes from band A to D."""
    at = iter(f"2026-03-02T09:{minute:02d}:00Z" for minute in range(60))

    def cmd(type_: str, request_id: str, **fields: Any) -> dict[str, Any]:
        return {"type": type_, "request_id": request_id, "effective_at": next(at), **fields}

    def move(
        request_id: str, user: str, quantity: str, account: str = "cross", **kw: Any
    ) -> dict[str, Any]:
        return cmd(
            "transfer_in",
            request_id,
            user=user,
            account=account,
            asset="ABC",
            quantity=quantity,
            **kw,
        )

    ladder = [
        {"up_to_usdt": "100000", "ratio": "1"},
        {"up_to_usdt": "250000", "ratio": "0.8"},
        {"up_to_usdt": "500000", "ratio": "0.6"},
        {"up_to_usdt": "700000", "ratio": "0.3"},
        {"up_to_usdt": "1000000", "ratio": "0.1"},
        {"up_to_usdt": None, "ratio": "0"},
    ]
    return [
        cmd("list_asset", "demo-list-usdt", asset="USDT", collateral_rank=1, actor="admin:ops"),
        cmd(
            "list_asset",
            "demo-list-abc",
            asset="ABC",
            collateral_rank=8,
            collateral_ladder=ladder,
            actor="admin:ops",
        ),
        cmd(
            "set_collateral_cap",
            "demo-cap-abc",
            asset="ABC",
            upper_limit="1000000",
            actor="admin:ops",
        ),
        cmd("mark_prices", "demo-price-1", prices={"ABC": "0.5"}, actor="job:prices"),
        move("demo-a1", "alice", "600000"),  # band A: q_max = 800,000 - 0
        move("demo-a2", "bob", "250000"),  # band A: q_max = 800,000 - 600,000 = 200,000: refused
        move("demo-a3", "bob", "200000"),  # exactly to 80%: band B from now on
        move("demo-b1", "carol", "150000", account="portfolio"),  # B: F = 50,000/0.5 = 100,000
        move("demo-b2", "carol", "100000", account="portfolio"),  # to 90%: band C
        cmd(
            "set_account_quota",
            "demo-quota-dave",
            user="dave",
            account="cross",
            asset="ABC",
            fixed_quota_usdt="20000",
            actor="admin:risk",
        ),
        move("demo-c1", "dave", "50000"),  # C with dave's own quota: 20,000/0.5 = 40,000
        move("demo-c2", "dave", "40000"),
        move("demo-iso", "erin", "500000", account="isolated:ABCUSDT"),  # isolated: not limited
        move("demo-c3", "frank", "60000.5"),  # U - T = 60,000: refused
        move("demo-c4", "frank", "60000"),  # T = U: band D
        move("demo-d1", "grace", "1"),  # blocked
        cmd(
            "transfer_out", "demo-out", user="alice", account="cross", asset="ABC", quantity="75000"
        ),  # T back to 92.5%: band C
        cmd("mark_prices", "demo-price-2", prices={"ABC": "0.4"}, actor="job:prices"),
        move("demo-c5", "grace", "80000"),  # C: min(125,000, 75,000) = 75,000: refused
        cmd(
            "transfer_in",
            "demo-risk-api",
            user="heidi",
            account="cross",
            asset="USDT",
            quantity="1000",
            risk_flagged=True,
        ),  # opening check, API: refused
        cmd(
            "transfer_in",
            "demo-risk-client",
            user="heidi",
            account="cross",
            asset="USDT",
            quantity="1000",
            channel="client",
            risk_flagged=True,
        ),  # pending verification
        cmd(
            "complete_verification",
            "demo-verify",
            user="heidi",
            account="cross",
            transfer_request_id="demo-risk-client",
            passed=True,
        ),
        cmd(
            "transfer_in",
            "demo-risk-later",
            user="heidi",
            account="cross",
            asset="USDT",
            quantity="500",
            risk_flagged=True,
        ),  # only the first transfer is checked
        cmd(
            "transfer_in",
            "demo-risk-ivan",
            user="ivan",
            account="isolated:ABCUSDT",
            asset="USDT",
            quantity="300",
            channel="client",
            risk_flagged=True,
        ),
        cmd(
            "complete_verification",
            "demo-verify-ivan",
            user="ivan",
            account="isolated:ABCUSDT",
            transfer_request_id="demo-risk-ivan",
            passed=False,
        ),
    ]


@app.command()
def demo(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Where to build the demo store (must be empty); "
            "default: a new SQLite file in a temporary folder",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Outcomes as JSON lines.")] = False,
    day: Annotated[
        bool,
        typer.Option(
            "--day/--no-day",
            help="Also simulate a small platform day (60 accounts, 24 hours, a crash) in a "
            "second temporary store; tables only, not with --json.",
        ),
    ] = True,
) -> None:
    """Run a built-in scenario on a fresh store: the cap's bands A to D, a per-account quota,
    an isolated account, and the opening risk check on both channels; then a small simulated
    platform day (borrows, trades, interest, a crash, margin calls, top-ups, liquidations).

    Example: ledger demo
    """
    with tempfile.TemporaryDirectory(prefix="ledger-demo-") as folder:
        url = db or f"sqlite:///{Path(folder) / 'demo.sqlite3'}"
        with open_ledger(url) as ledger:
            if ledger.recorder.max_notification_id():
                error(f"{url} already holds events; the demo needs an empty store")
                raise typer.Exit(EXIT_CANNOT_RUN)
            outcomes = [ledger.execute(parse_command(c)).to_json_dict() for c in scenario()]
            views = assets_view(ledger)
    if as_json:
        for outcome in outcomes:
            print_json(outcome)
        return
    stdout.print(
        table(
            "Outcomes",
            [
                "request",
                "status",
                "reason",
                "account",
                "asset",
                "requested",
                "band",
                "T before",
                "q_max",
                "detail",
            ],
            [
                (
                    o["request_id"],
                    o["status"],
                    o.get("reason"),
                    o.get("account"),
                    o["context"].get("asset"),
                    o["context"].get("requested"),
                    o["context"].get("band"),
                    o["context"].get("total"),
                    o["context"].get("q_max"),
                    _detail(o["context"]),
                )
                for o in outcomes
            ],
        )
    )
    for o in outcomes:
        if o.get("message"):
            stdout.print(f"[bold]{o['request_id']}[/]: {o['message']}", highlight=False)
    stdout.print(asset_table(views))
    if day:
        simulated_day()


def _detail(context: dict[str, Any]) -> str:
    details = []
    if context.get("opening_check") not in (None, "passed", "not_checked"):
        details.append(f"opening check: {context['opening_check']}")
    if context.get("fixed_quota_source") == "account":
        details.append(f"account quota {context['fixed_quota_usdt']} USDT")
    if "transfer" in context:
        details.append(f"transfer {context['transfer']}")
    if "prices" in context:
        details.append(", ".join(f"{a} = {p}" for a, p in context["prices"].items()))
    return "; ".join(details)


def simulated_day() -> None:
    """The `ledger simulate` generator's small day, in a store of its own."""
    commands = list(
        generate(DAY_SEED, accounts=DAY_ACCOUNTS, hours=DAY_HOURS, start=SIMULATION_START)
    )
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="ledger-demo-day-") as folder,
        open_ledger(f"sqlite:///{Path(folder) / 'day.sqlite3'}") as ledger,
    ):
        outcomes = run_commands(ledger, commands, show_progress=sys.stderr.isatty())
        views = assets_view(ledger)
    summary = {
        "seed": DAY_SEED,
        "accounts": DAY_ACCOUNTS,
        "hours": DAY_HOURS,
        "start": format_time(SIMULATION_START),
        **summarize(commands, outcomes),
    }
    render(summary, views, time.monotonic() - started, None)


DAY_SEED, DAY_ACCOUNTS, DAY_HOURS = 1, 60, 24
