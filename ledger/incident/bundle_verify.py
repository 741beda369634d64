"""`ledger bundle verify FILE`: check a bundle offline, with no database.

1. every member the manifest lists is there, nothing else is, and each one's SHA-256 matches;
2. the chain recomputes: from the link before the segment (`chain.json` start), each stored
   event's link is sha256(previous link, position, aggregate id, version, topic, stored bytes)
   exactly as `ledger verify` computes it, equals the link stored beside it, and the last one is
   the `end` link (and, with `--digest`, the digest an auditor wrote down);
3. `events.jsonl` and `events.parquet` hold the same rows, and those rows are the stored events:
   same positions, ids and versions, and (when the stored bytes are the events' JSON) the same
   payload decoded from the stored bytes.
The first problem found is reported with the member and, for an event, its position.
"""

import base64
import binascii
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, ValidationError

from ledger import limits
from ledger.audit.chain import Digest, chain_link
from ledger.audit.explain import COMMON_FIELDS
from ledger.audit.plain import event_fields
from ledger.domain.registry import event_name
from ledger.incident.bundle import (
    BUNDLE_FORMAT,
    CHAIN,
    EVENTS_JSONL,
    EVENTS_PARQUET,
    MANIFEST,
    STORED_EVENTS,
    BundleManifest,
)
from ledger.times import format_time


class BundleUnreadable(ValueError):
    """Not a bundle this ledger can read: not a zip, no manifest, a member that is not JSON."""


class BundleReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    is_intact: bool
    file: str
    events_checked: int
    chain_start: str | None = None
    chain_end: str | None = None
    member: str | None = None  # the member found altered
    position: int | None = None  # the first event found altered
    problem: str | None = None


class _Altered(Exception):
    def __init__(self, member: str, problem: str, position: int | None = None) -> None:
        super().__init__(problem)
        self.member, self.problem, self.position = member, problem, position


def verify_bundle(path: Path, *, digest: Digest | None = None) -> BundleReport:
    """Check the bundle at `path`; raises BundleUnreadable when it cannot be read at all."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise BundleUnreadable(f"{path}: not a readable zip archive ({error})") from None
    with archive:
        manifest = _manifest(archive, path)
        checked = 0
        try:
            _check_members(archive, manifest)
            chain = _json(archive, CHAIN)
            start, end = Digest.parse(chain["start"]), Digest.parse(chain["end"])
            if (str(start), str(end)) != (manifest.chain_start, manifest.chain_end):
                raise _Altered(CHAIN, "the chain's ends differ from the manifest's")
            checked = _check_chain(archive, start, end)
            if digest is not None and digest != end:
                raise _Altered(
                    CHAIN, f"the segment ends at {end}, not at the digest written down {digest}"
                )
            _check_exports(archive, manifest)
        except _Altered as altered:
            return BundleReport(
                is_intact=False,
                file=str(path),
                events_checked=checked,
                chain_start=manifest.chain_start,
                chain_end=manifest.chain_end,
                member=altered.member,
                position=altered.position,
                problem=altered.problem,
            )
        except (KeyError, ValueError, TypeError, binascii.Error) as error:
            raise BundleUnreadable(f"{path}: {error}") from None
    return BundleReport(
        is_intact=True,
        file=str(path),
        events_checked=checked,
        chain_start=manifest.chain_start,
        chain_end=manifest.chain_end,
    )


def _manifest(archive: zipfile.ZipFile, path: Path) -> BundleManifest:
    try:
        manifest = BundleManifest.model_validate(_json(archive, MANIFEST))
    except (KeyError, ValueError) as error:
        raise BundleUnreadable(f"{path}: no readable {MANIFEST} ({error})") from None
    if manifest.format != BUNDLE_FORMAT:
        raise BundleUnreadable(f"{path}: format {manifest.format!r}, expected {BUNDLE_FORMAT}")
    return manifest


def _check_members(archive: zipfile.ZipFile, manifest: BundleManifest) -> None:
    present = set(archive.namelist()) - {MANIFEST}
    for name in sorted(set(manifest.members) | present):
        if name not in present:
            raise _Altered(name, "listed in the manifest but missing from the archive")
        if name not in manifest.members:
            raise _Altered(name, "in the archive but not listed in the manifest")
        digest = hashlib.sha256()
        with archive.open(name) as member:
            for block in iter(lambda member=member: member.read(1 << 20), b""):  # type: ignore[misc]
                digest.update(block)
        if digest.hexdigest() != manifest.members[name]:
            raise _Altered(name, "its SHA-256 differs from the manifest's")


def _check_chain(archive: zipfile.ZipFile, start: Digest, end: Digest) -> int:
    previous, last, checked = start.hash, start.position, 0
    for record in _stored(archive):
        position = int(record["position"])
        if position <= last:
            raise _Altered(STORED_EVENTS, "positions out of order", position)
        link = chain_link(
            previous,
            position,
            UUID(record["originator_id"]),
            int(record["originator_version"]),
            str(record["topic"]),
            base64.b64decode(record["state_base64"], validate=True),
        )
        if link != record["link"]:
            raise _Altered(
                STORED_EVENTS,
                "the stored event or its link was altered: the chain does not recompute",
                position,
            )
        previous, last, checked = link, position, checked + 1
    if Digest(position=last, hash=previous) != end:
        raise _Altered(CHAIN, f"the chain recomputes to {last}:{previous}, not to {end}")
    return checked


def _check_exports(archive: zipfile.ZipFile, manifest: BundleManifest) -> None:
    """Row by row (bounded memory): JSONL, Parquet and the stored events side by side."""
    count = 0
    rows = zip_longest(_jsonl(archive), _parquet(archive), _stored(archive))
    for event, row, record in rows:
        if event is None or row is None or record is None:
            missing = EVENTS_JSONL if event is None else EVENTS_PARQUET if row is None else None
            raise _Altered(missing or STORED_EVENTS, f"fewer events than the others after {count}")
        count += 1
        position = int(record["position"])
        if event != _parquet_as_jsonl(row):
            raise _Altered(EVENTS_PARQUET, "differs from events.jsonl", position)
        same = (event["position"], event["originator_id"], event["originator_version"]) == (
            position,
            record["originator_id"],
            record["originator_version"],
        )
        if not same:
            raise _Altered(EVENTS_JSONL, "not the stored event at this place", position)
        if manifest.states_plain_json and _decoded(record) != (
            event["event_type"],
            event["payload"],
        ):
            raise _Altered(EVENTS_JSONL, "its payload is not the stored event's", position)
    if count != manifest.events:
        raise _Altered(EVENTS_JSONL, f"{count} events, the manifest says {manifest.events}")


def _jsonl(archive: zipfile.ZipFile) -> Iterator[dict[str, Any]]:
    with archive.open(EVENTS_JSONL) as member:
        for line in io.TextIOWrapper(member, encoding="utf-8"):
            yield json.loads(line)


def _parquet(archive: zipfile.ZipFile) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    with archive.open(EVENTS_PARQUET) as member:
        # Parquet reads its footer first: the member is copied to a seekable buffer.
        parquet = pq.ParquetFile(io.BytesIO(member.read()))
        for batch in parquet.iter_batches(batch_size=limits.PROJECTION_BATCH_SIZE):
            yield from batch.to_pylist()


def _decoded(record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    from eventsourcing.utils import resolve_topic

    try:
        event_class: Any = resolve_topic(str(record["topic"]))
        event = event_class.model_validate_json(base64.b64decode(record["state_base64"]))
    except (ValueError, ValidationError, ImportError, AttributeError):
        return None
    return event_name(event), event_fields(event, COMMON_FIELDS)


def _parquet_as_jsonl(row: dict[str, Any]) -> dict[str, Any]:
    return row | {
        "effective_at": format_time(row["effective_at"]),
        "recorded_at": format_time(row["recorded_at"]),
        "payload": json.loads(row["payload"]),
    }


def _stored(archive: zipfile.ZipFile) -> Iterator[dict[str, Any]]:
    with archive.open(STORED_EVENTS) as member:
        for line in io.TextIOWrapper(member, encoding="utf-8"):
            if line.strip():
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"{STORED_EVENTS}: a line that is not a JSON object")
                yield record


def _json(archive: zipfile.ZipFile, name: str) -> Any:
    return json.loads(archive.read(name).decode("utf-8"))
