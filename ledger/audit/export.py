"""`ledger export`: the event log, filtered, streamed to JSON lines, CSV or Parquet in bounded
memory (one batch of the log at a time).

Every format has the same columns (documented in README "Export"):
position (int), event_id, aggregate, originator_id, originator_version (int), event_type,
effective_at, recorded_at (RFC 3339 UTC; Parquet: timestamp[us, UTC]), actor, request_id, and
payload: the event's own fields as a JSON object text (quantities as decimal strings).
"""

import csv
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.audit.explain import COMMON_FIELDS
from ledger.audit.plain import event_fields
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.domain.registry import event_name
from ledger.log import log_batches
from ledger.queries import parse_account_id
from ledger.times import format_time

COLUMNS = (
    "position",
    "event_id",
    "aggregate",
    "originator_id",
    "originator_version",
    "event_type",
    "effective_at",
    "recorded_at",
    "actor",
    "request_id",
    "payload",
)
ASSET_FIELDS = ("asset", "sell_asset", "buy_asset", "fee_asset", "symbol")
ASSET_MAPS = ("sold", "repaid_principal", "repaid_interest", "prices")


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


class ExportFilter(BaseModel):
    model_config = ConfigDict(frozen=True)

    since: datetime | None = None  # business time, inclusive
    until: datetime | None = None
    account: str | None = None  # "<user>:<account>"
    asset: str | None = None
    event_type: str | None = None  # "MarginAccount.Borrowed" or just "Borrowed"

    def accepts(self, event: Any) -> bool:
        if self.since is not None and event.effective_at < self.since:
            return False
        if self.until is not None and event.effective_at > self.until:
            return False
        if self.account is not None:
            user, name = parse_account_id(self.account)
            if event.originator_id != MarginAccount.create_id(user, name):
                return False
        if self.event_type is not None:
            name = event_name(event)
            if self.event_type not in (name, name.split(".", 1)[-1]):
                return False
        return self.asset is None or mentions_asset(event, self.asset)


def mentions_asset(event: Any, asset: str) -> bool:
    if event.originator_id in (Asset.create_id(asset), AssetPool.create_id(asset)):
        return True
    if any(getattr(event, field, None) == asset for field in ASSET_FIELDS):
        return True
    return any(asset in (getattr(event, field, None) or {}) for field in ASSET_MAPS)


def export_rows(
    ledger: Ledger,
    selection: ExportFilter,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """The selected events in log order, as rows of COLUMNS, one batch in memory at a time."""
    head = ledger.recorder.max_notification_id() or 0
    for notifications in log_batches(ledger):
        for notification in notifications:
            event: Any = ledger.mapper.to_domain_event(notification)
            if selection.accepts(event):
                yield _row(notification.id, event)
        if progress is not None:
            position = notifications[-1].id
            progress(position, max(head, position))


def _row(position: int, event: Any) -> dict[str, Any]:
    name = event_name(event)
    return {
        "position": position,
        "event_id": event.event_id,
        "aggregate": name.split(".", 1)[0],
        "originator_id": str(event.originator_id),
        "originator_version": event.originator_version,
        "event_type": name,
        "effective_at": event.effective_at,
        "recorded_at": event.timestamp,
        "actor": event.actor,
        "request_id": event.request_id,
        "payload": json.dumps(
            event_fields(event, COMMON_FIELDS), sort_keys=True, separators=(",", ":")
        ),
    }


def write_export(rows: Iterator[dict[str, Any]], out: Path, form: ExportFormat) -> int:
    """Write the rows to `out` in the format; returns how many were written."""
    if form is ExportFormat.PARQUET:
        return _write_parquet(rows, out)
    with out.open("w", encoding="utf-8", newline="") as handle:
        return _write_text(rows, handle, form)


def _write_text(rows: Iterator[dict[str, Any]], handle: IO[str], form: ExportFormat) -> int:
    count = 0
    writer = csv.DictWriter(handle, fieldnames=COLUMNS) if form is ExportFormat.CSV else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        text = row | {
            "effective_at": format_time(row["effective_at"]),
            "recorded_at": format_time(row["recorded_at"]),
        }
        if writer is not None:
            writer.writerow(text)
        else:
            handle.write(json.dumps(text | {"payload": json.loads(row["payload"])}) + "\n")
        count += 1
    return count


def _write_parquet(rows: Iterator[dict[str, Any]], out: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("position", pa.int64()),
            ("event_id", pa.string()),
            ("aggregate", pa.string()),
            ("originator_id", pa.string()),
            ("originator_version", pa.int64()),
            ("event_type", pa.string()),
            ("effective_at", pa.timestamp("us", tz="UTC")),
            ("recorded_at", pa.timestamp("us", tz="UTC")),
            ("actor", pa.string()),
            ("request_id", pa.string()),
            ("payload", pa.string()),
        ]
    )
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        group: list[dict[str, Any]] = []
        for row in rows:
            group.append(row)
            if len(group) == limits.PROJECTION_BATCH_SIZE:
                writer.write_table(pa.Table.from_pylist(group, schema=schema))
                count, group = count + len(group), []
        if group or count == 0:
            writer.write_table(pa.Table.from_pylist(group, schema=schema))
            count += len(group)
    return count
