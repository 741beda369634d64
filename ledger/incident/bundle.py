"""`ledger bundle`: one zip archive an auditor checks offline (`ledger bundle verify`,
ledger/incident/bundle_verify.py).

Members (each one's SHA-256 in `manifest.json`):
- `events.jsonl`, `events.parquet`: the window's log segment in `ledger export`'s columns;
- `stored_events.jsonl`: the same events as stored (position, aggregate id, version, topic, the
  stored bytes in base64) with each one's chain link: what the chain recomputes from;
- `chain.json`: the chain's link just before the segment (`start`) and at its last event
  (`end`), as POSITION:HASH;
- `parameters.json`, `state.json`: the parameters in force and the as-of state (assets, and the
  accounts the window's events touch) at `since` and at `until`;
- `bands.json`: the band timeline of the window; `refusals.json`: `ledger explain` of every
  request refused in it.
The segment is the contiguous run of log positions from the first to the last event dated in
[since, until]: an event dated outside but recorded among them is kept (and counted), so the
chain over the segment has no hole.
"""

import hashlib
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.application import Ledger
from ledger.audit.chain import Digest
from ledger.audit.explain import explain
from ledger.audit.export import ExportFilter, ExportFormat, export_rows, write_export
from ledger.incident.bundle_contents import (
    Segment,
    link_before,
    parameters_at,
    state_at,
    stored_records,
)
from ledger.log import is_plain_json
from ledger.times import format_time

BUNDLE_FORMAT = "ledger-bundle/1"
MANIFEST = "manifest.json"
EVENTS_JSONL = "events.jsonl"
EVENTS_PARQUET = "events.parquet"
STORED_EVENTS = "stored_events.jsonl"
CHAIN = "chain.json"
PARAMETERS = "parameters.json"
STATE = "state.json"
BANDS = "bands.json"
REFUSALS = "refusals.json"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same window gives the same bytes


class EmptyWindow(ValueError):
    """No event of the log is dated in the window."""


class ChainMissing(ValueError):
    """An event of the window has no chain link (written outside the ledger)."""


class BundleManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: str
    since: str
    until: str
    first_position: int
    last_position: int
    events: int
    events_outside_window: int  # recorded among the window's events, dated outside it
    states_plain_json: bool  # stored bytes are the events' JSON (no cipher, no compressor)
    chain_start: str  # POSITION:HASH just before the segment
    chain_end: str  # POSITION:HASH of its last event
    members: dict[str, str]  # name -> SHA-256 of its bytes


def write_bundle(
    ledger: Ledger,
    *,
    since: datetime,
    until: datetime,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
) -> BundleManifest:
    """Write the window's bundle to `out` (a zip); raises EmptyWindow when nothing is in it."""
    from projections.queries import ReadSide
    from projections.runner import ReadModels

    segment = Segment(ledger, since, until)
    if segment.first is None or segment.last is None:
        raise EmptyWindow(f"no event dated from {format_time(since)} to {format_time(until)}")
    first, last = segment.first, segment.last
    start = link_before(ledger, first)
    with tempfile.TemporaryDirectory(prefix="ledger-bundle-") as folder:
        root = Path(folder)
        count = write_export(_rows(ledger, first, last, progress), root / EVENTS_JSONL, _JSONL)
        write_export(_rows(ledger, first, last, None), root / EVENTS_PARQUET, _PARQUET)
        end = _write_stored(ledger, first, last, root / STORED_EVENTS)
        _write_json(root / CHAIN, {"start": str(start), "end": str(end)})
        _write_json(
            root / PARAMETERS,
            {"since": parameters_at(ledger, since), "until": parameters_at(ledger, until)},
        )
        with ReadModels(ledger) as read_models:
            reader = ReadSide(read_models)
            _write_json(
                root / STATE,
                {
                    "since": state_at(reader, ledger, segment.account_ids, since),
                    "until": state_at(reader, ledger, segment.account_ids, until),
                },
            )
            bands = reader.bands(since=since, until=until)
            _write_json(root / BANDS, [b.model_dump(mode="json") for b in bands])
        refusals = [explain(ledger, rid).model_dump(mode="json") for rid in segment.refused]
        _write_json(root / REFUSALS, refusals)
        names = [EVENTS_JSONL, EVENTS_PARQUET, STORED_EVENTS, CHAIN, PARAMETERS, STATE]
        names += [BANDS, REFUSALS]
        manifest = BundleManifest(
            format=BUNDLE_FORMAT,
            since=format_time(since),
            until=format_time(until),
            first_position=first,
            last_position=last,
            events=count,
            events_outside_window=segment.outside,
            states_plain_json=is_plain_json(ledger),
            chain_start=str(start),
            chain_end=str(end),
            members={name: sha256_of(root / name) for name in names},
        )
        _write_json(root / MANIFEST, manifest.model_dump(mode="json"))
        _zip(root, [MANIFEST, *names], out)
    return manifest


_JSONL, _PARQUET = ExportFormat.JSONL, ExportFormat.PARQUET


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rows(
    ledger: Ledger, first: int, last: int, progress: Callable[[int, int], None] | None
) -> Iterator[dict[str, Any]]:
    for row in export_rows(ledger, ExportFilter(), progress):
        if row["position"] > last:
            return
        if row["position"] >= first:
            yield row


def _write_stored(ledger: Ledger, first: int, last: int, path: Path) -> Digest:
    end = None
    with path.open("w", encoding="utf-8") as handle:
        for record in stored_records(ledger, first, last):
            if record["link"] is None:
                raise ChainMissing(
                    f"the event at position {record['position']} has no chain link: "
                    "run `ledger verify`"
                )
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            end = Digest(position=record["position"], hash=record["link"])
    assert end is not None, (first, last)
    return end


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _zip(root: Path, names: list[str], out: Path) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member, (root / name).open("rb") as source:
                for block in iter(lambda source=source: source.read(1 << 20), b""):  # type: ignore[misc]
                    member.write(block)
