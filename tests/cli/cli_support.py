"""Helpers for the CLI tests: invoke `ledger`, parse its JSON lines, build a small market.

The market (all at T0, 2026-03-02T09:00:00Z):
- USDT (rank 1, the quote asset), ETH (rank 2, price 3000) and DEC2 (rank 3, two quantity
  decimals, price 4): not under the max collateral rule;
- QQQ (rank 9): upper limit U = 50,000 tokens, price 2.5 USDT, the default fixed quota of
  50,000 USDT, so F = 20,000 tokens and band A ends at 0.8 * U = 40,000 tokens.
"""

import importlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from ledger import Ledger
from ledger.cli.main import app
from tests.support import at

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_CANNOT_RUN = 2

# Every number the contract prints: a plain decimal string, no exponent, no trailing zeros.
PLAIN_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d*[1-9])?$")

# A PostgreSQL port nothing listens on; naming a schema makes the failure immediate (the
# library's own pool would retry for its 10 s connect timeout first).
UNREACHABLE_POSTGRES_URL = "postgresql://postgres@127.0.0.1:1/none"
UNREACHABLE_POSTGRES_FAST_URL = "postgresql://postgres@127.0.0.1:1/none?schema=unreachable"

CAP_MESSAGE = (
    "{asset} has reached platform max pledged collateral amount. The max transfer-in quantity is "
    "{q_max}. Please reduce the quantity or try with other tokens"
)
OPENING_RISK_MESSAGE = (
    "Opening a margin account is currently restricted. To proceed, please complete the risk "
    "assessment. Please check Binance Margin Account Opening Risk Assessment FAQ for details."
)

_runner = CliRunner()

# The commands register themselves on `app` when their modules are imported (as main() does).
for _module in ("demo", "schema", "show", "submit"):
    importlib.import_module(f"ledger.cli.{_module}")


def invoke(
    *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    """Run `ledger ARGS...` in-process; an unexpected exception is re-raised, never hidden."""
    result = _runner.invoke(app, list(args), input=input, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def json_lines(text: str) -> list[Any]:
    """Every stdout line as JSON: a line that is not JSON fails the test."""
    return [json.loads(line) for line in text.splitlines()]


@dataclass(frozen=True)
class Submitted:
    exit_code: int
    outcomes: list[dict[str, Any]]
    stderr_lines: list[str]

    @property
    def statuses(self) -> list[str]:
        return [o["status"] for o in self.outcomes]


def jsonl(lines: list[dict[str, Any] | str]) -> str:
    """Commands as JSON lines; a str is written as given (for malformed or exotic lines)."""
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def submit(url: str, lines: list[dict[str, Any] | str]) -> Submitted:
    """`ledger submit - --db URL` with the lines on standard input."""
    result = invoke("submit", "-", "--db", url, input=jsonl(lines))
    return Submitted(
        exit_code=result.exit_code,
        outcomes=json_lines(result.stdout),
        stderr_lines=result.stderr.splitlines(),
    )


def query(*args: str) -> Any:
    """`ledger <query> ... --json`: exit 0 and exactly one JSON document on stdout."""
    result = invoke(*args, "--json")
    assert result.exit_code == EXIT_OK, (result.stdout, result.stderr)
    [document] = json_lines(result.stdout)
    return document


def event_count(url: str) -> int:
    """How many events the store holds (the notification log's last id)."""
    with Ledger(url) as ledger:
        return ledger.recorder.max_notification_id() or 0


def cmd(type_: str, request_id: str, minute: float = 0, **fields: Any) -> dict[str, Any]:
    """A command dated `minute` minutes after T0."""
    return {"type": type_, "request_id": request_id, "effective_at": at(minute), **fields}


def transfer_in(
    request_id: str,
    user: str,
    quantity: Any,
    *,
    asset: str = "QQQ",
    account: str = "cross",
    minute: float = 10,
    **fields: Any,
) -> dict[str, Any]:
    return cmd(
        "transfer_in",
        request_id,
        minute,
        user=user,
        account=account,
        asset=asset,
        quantity=quantity,
        **fields,
    )


def transfer_out(
    request_id: str,
    user: str,
    quantity: Any,
    *,
    asset: str = "QQQ",
    account: str = "cross",
    minute: float = 20,
) -> dict[str, Any]:
    return cmd(
        "transfer_out",
        request_id,
        minute,
        user=user,
        account=account,
        asset=asset,
        quantity=quantity,
    )


MARKET = [
    cmd("list_asset", "list-usdt", asset="USDT", collateral_rank=1, actor="admin:ops"),
    cmd("list_asset", "list-eth", asset="ETH", collateral_rank=2, actor="admin:ops"),
    cmd("list_asset", "list-dec2", asset="DEC2", collateral_rank=3, quantity_decimals=2),
    cmd("list_asset", "list-qqq", asset="QQQ", collateral_rank=9),
    cmd("set_collateral_cap", "cap-qqq", asset="QQQ", upper_limit="50000", actor="admin:risk"),
    cmd(
        "mark_prices",
        "prices-1",
        prices={"QQQ": "2.5", "ETH": "3000", "DEC2": "4"},
        actor="job:prices",
    ),
]


def set_up_market(url: str) -> None:
    submitted = submit(url, MARKET)
    assert submitted.exit_code == EXIT_OK, submitted
    assert submitted.statuses == ["accepted"] * len(MARKET), submitted


def ledger_script() -> Path:
    """The installed console script, next to the virtualenv's python."""
    script = Path(sys.executable).parent / "ledger"
    assert script.exists(), script
    return script
