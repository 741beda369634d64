"""Helpers shared by the tests: building commands and running them."""

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger import Ledger
from ledger.commands import parse_command
from ledger.domain.asset import Asset
from ledger.outcomes import Outcome

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_counter = itertools.count(1)


def at(minutes: float = 0) -> str:
    """An RFC 3339 time `minutes` after T0."""
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def command(type_: str, request_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A command as JSON-ready data; effective_at defaults to T0, request_id to a fresh one."""
    return {
        "type": type_,
        "request_id": request_id or f"req-{next(_counter)}",
        "effective_at": fields.pop("effective_at", at()),
        **fields,
    }


def run(ledger: Ledger, data: dict[str, Any]) -> Outcome:
    """Execute one command given as JSON-ready data, through the same parser as the CLI."""
    return ledger.execute(parse_command(json.loads(json.dumps(data))))


def setup_capped_asset(
    ledger: Ledger,
    *,
    asset: str = "ABC",
    rank: int = 8,
    upper_limit: str = "1000000",
    price: str = "1",
    fixed_quota_usdt: str | None = None,
) -> None:
    """List USDT and a capped asset with an upper limit and a price."""
    if ledger.get_aggregate(Asset, Asset.create_id("USDT")) is None:
        assert run(ledger, command("list_asset", asset="USDT", collateral_rank=1)).is_accepted
    assert run(ledger, command("list_asset", asset=asset, collateral_rank=rank)).is_accepted
    cap: dict[str, Any] = {"asset": asset, "upper_limit": upper_limit}
    if fixed_quota_usdt is not None:
        cap["fixed_quota_usdt"] = fixed_quota_usdt
    assert run(ledger, command("set_collateral_cap", **cap)).is_accepted
    assert run(ledger, command("mark_prices", prices={asset: price})).is_accepted


def transfer_in(
    ledger: Ledger,
    user: str,
    quantity: str,
    *,
    asset: str = "ABC",
    account: str = "cross",
    **fields: Any,
) -> Outcome:
    return run(
        ledger,
        command(
            "transfer_in", user=user, account=account, asset=asset, quantity=quantity, **fields
        ),
    )


def event_count(ledger: Ledger) -> int:
    return ledger.recorder.max_notification_id() or 0
