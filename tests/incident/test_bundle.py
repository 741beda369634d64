"""`ledger bundle` and `ledger bundle verify` (ledger/incident/bundle*.py) on both backends: the
archive of the whatif incident's window (tests/incident/test_whatif.py) is written, verifies
offline, and names what was altered: any member, one event's stored bytes, one exported row."""

import base64
import hashlib
import importlib
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger
from ledger.audit.chain import Digest
from ledger.audit.verify import verify_chain
from ledger.incident.bundle import (
    EVENTS_JSONL,
    MANIFEST,
    STORED_EVENTS,
    BundleManifest,
    write_bundle,
)
from ledger.incident.bundle_verify import verify_bundle
from ledger.times import parse_time
from tests.cli.cli_support import (
    EXIT_CANNOT_RUN,
    EXIT_INVALID,
    EXIT_OK,
    UNREACHABLE_POSTGRES_FAST_URL,
    invoke,
)
from tests.conftest import POSTGRES_URL, postgres_required
from tests.incident.test_whatif import SINCE, UNTIL, build_incident
from tests.support import at

importlib.import_module("ledger.cli.whatif")  # `bundle` registers on the app

EXIT_ALTERED = EXIT_INVALID


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def bundled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, BundleManifest]]:
    """The incident's store and its window's bundle, per backend (the tests alter copies)."""
    folder = tmp_path_factory.mktemp("bundle")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder}/ledger.sqlite3"
    else:
        if not postgres_required():
            pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
        schema = f"test_{uuid.uuid4().hex[:16]}"
        url = f"{POSTGRES_URL}?schema={schema}"
    try:
        with Ledger(url) as ledger:
            build_incident(ledger)
            out = folder / "incident.zip"
            manifest = write_bundle(
                ledger, since=parse_time(SINCE), until=parse_time(UNTIL), out=out
            )
        yield url, out, manifest
    finally:
        if schema is not None:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(path: Path, contents: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return path


def with_manifest_updated(contents: dict[str, bytes], name: str, data: bytes) -> dict[str, bytes]:
    """`name` replaced by `data`, and the manifest rewritten to match: only the chain and the
    cross-checks between members can tell."""
    manifest = json.loads(contents[MANIFEST])
    manifest["members"][name] = hashlib.sha256(data).hexdigest()
    return contents | {name: data, MANIFEST: json.dumps(manifest).encode()}


def test_bundle_holds_the_window_and_verifies(bundled: tuple[str, Path, BundleManifest]) -> None:
    url, path, manifest = bundled
    report = verify_bundle(path)
    assert report.is_intact, report
    assert report.events_checked == manifest.events > 0
    with Ledger(url) as ledger:
        chain = verify_chain(ledger, digest=Digest.parse(manifest.chain_end))
    assert chain.is_intact  # the bundle's end is the store's own link at that position
    contents = members(path)
    rows = [json.loads(line) for line in contents[EVENTS_JSONL].decode().splitlines()]
    request_ids = {row["request_id"] for row in rows}
    assert {"t-a", "t-b", "t-c", "sweep-1", "cap-up", "t-d"} <= request_ids
    assert not request_ids & {"t-late"}  # after the window
    assert all(SINCE <= row["effective_at"] <= UNTIL for row in rows)
    positions = [row["position"] for row in rows]
    assert positions == sorted(set(positions))
    assert (positions[0], positions[-1]) == (manifest.first_position, manifest.last_position)
    refusals = json.loads(contents["refusals.json"])
    assert [(r["request_id"], r["reason"]) for r in refusals] == [("t-b", "collateral_cap")]
    assert refusals[0]["figures"]["q_max"] == "100"
    parameters = json.loads(contents["parameters.json"])
    assert parameters["since"]["assets"]["ABC"]["cap"]["upper_limit"] == "6000"
    assert parameters["until"]["assets"]["ABC"]["cap"]["upper_limit"] == "7000"
    state = json.loads(contents["state.json"])
    totals = {a["asset"]: a["total"] for a in state["until"]["assets"]}
    assert totals["ABC"] == "4000"
    accounts = {a["account"]: a for a in state["since"]["accounts"]}
    assert accounts["u1:cross"]["holdings"] == {"ABC": "2500"}
    bands = json.loads(contents["bands.json"])
    assert [(b["band_before"], b["band_after"]) for b in bands] == [("A", "B"), ("B", "A")]


def test_any_altered_member_is_named(
    bundled: tuple[str, Path, BundleManifest], tmp_path: Path
) -> None:
    _url, path, _manifest = bundled
    contents = members(path)
    for name in sorted(set(contents) - {MANIFEST}):
        altered = rezip(tmp_path / f"{name}.zip", contents | {name: contents[name] + b" "})
        report = verify_bundle(altered)
        assert (report.is_intact, report.member) == (False, name), report
    missing = rezip(
        tmp_path / "missing.zip", {k: v for k, v in contents.items() if k != "bands.json"}
    )
    assert verify_bundle(missing).member == "bands.json"


def _replace_in_record(
    contents: dict[str, bytes], request_id: str, change: Callable[[bytes], bytes]
) -> tuple[dict[str, bytes], int]:
    """The first stored event of `request_id` with its stored bytes changed; its position."""
    lines = contents[STORED_EVENTS].decode().splitlines()
    for index, line in enumerate(lines):
        record: dict[str, Any] = json.loads(line)
        state = base64.b64decode(record["state_base64"])
        if f'"request_id":"{request_id}"'.encode() in state:
            record["state_base64"] = base64.b64encode(change(state)).decode()
            lines[index] = json.dumps(record, sort_keys=True)
            data = ("\n".join(lines) + "\n").encode()
            return with_manifest_updated(contents, STORED_EVENTS, data), record["position"]
    raise AssertionError(f"no stored event of {request_id}")


def test_altered_event_bytes_are_named_by_position(
    bundled: tuple[str, Path, BundleManifest], tmp_path: Path
) -> None:
    """One event's stored bytes changed (and the manifest made to match): the chain no longer
    recomputes at that event's position."""
    _url, path, _manifest = bundled
    contents, position = _replace_in_record(
        members(path), "t-a", lambda state: state.replace(b'"t-a"', b'"t-z"', 1)
    )
    report = verify_bundle(rezip(tmp_path / "event.zip", contents))
    assert (report.is_intact, report.member, report.position) == (False, STORED_EVENTS, position)


def test_altered_exported_row_is_named_by_position(
    bundled: tuple[str, Path, BundleManifest], tmp_path: Path
) -> None:
    """A JSON lines row that no longer says what the stored event says (manifest made to
    match): named with its position, as events.parquet disagrees with it first."""
    _url, path, _manifest = bundled
    contents = members(path)
    lines = contents[EVENTS_JSONL].decode().splitlines()
    row = json.loads(lines[3])
    row["actor"] = "admin:someone-else"
    lines[3] = json.dumps(row)
    data = ("\n".join(lines) + "\n").encode()
    altered = rezip(tmp_path / "row.zip", with_manifest_updated(contents, EVENTS_JSONL, data))
    report = verify_bundle(altered)
    assert (report.is_intact, report.position) == (False, row["position"])
    assert report.member in ("events.parquet", EVENTS_JSONL)


def test_bundle_cli_writes_and_verifies_with_no_database(
    bundled: tuple[str, Path, BundleManifest], tmp_path: Path
) -> None:
    url, path, manifest = bundled
    out = tmp_path / "cli.zip"
    result = invoke(
        "bundle", "--db", url, "--from", SINCE, "--to", UNTIL, "--out", str(out), "--json"
    )
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["chain_end"] == manifest.chain_end
    assert out.read_bytes() == path.read_bytes()  # the same window gives the same archive
    no_database = {"LEDGER_DATABASE_URL": UNREACHABLE_POSTGRES_FAST_URL}
    checked = invoke("bundle", "verify", str(out), "--json", env=no_database)
    assert checked.exit_code == EXIT_OK, checked.output
    assert json.loads(checked.stdout)["is_intact"] is True
    pinned = invoke("bundle", "verify", str(out), "--digest", manifest.chain_end)
    assert pinned.exit_code == EXIT_OK, pinned.output
    other = Digest.parse(manifest.chain_end).model_copy(update={"hash": "0" * 64})
    wrong = invoke("bundle", "verify", str(out), "--digest", str(other))
    assert wrong.exit_code == EXIT_ALTERED
    assert "chain.json" in wrong.stderr
    contents = members(out)
    altered = rezip(tmp_path / "altered.zip", contents | {"state.json": b"{}"})
    result = invoke("bundle", "verify", str(altered))
    assert result.exit_code == EXIT_ALTERED
    assert result.stderr.startswith("error: state.json")


def test_bundle_cli_cannot_run_exits_2(
    bundled: tuple[str, Path, BundleManifest], tmp_path: Path
) -> None:
    url, _path, _manifest = bundled
    empty = invoke(
        "bundle",
        "--db",
        url,
        "--from",
        at(2000),
        "--to",
        at(3000),
        "--out",
        str(tmp_path / "e.zip"),
    )
    assert empty.exit_code == EXIT_CANNOT_RUN
    assert "no event dated" in empty.stderr
    no_out = invoke("bundle", "--db", url, "--from", SINCE, "--to", UNTIL)
    assert no_out.exit_code == EXIT_CANNOT_RUN and "--out" in no_out.stderr


def test_bundle_verify_unreadable_file_exits_2(tmp_path: Path) -> None:
    not_zip = tmp_path / "not.zip"
    not_zip.write_text("hello")
    assert invoke("bundle", "verify", str(not_zip)).exit_code == EXIT_CANNOT_RUN
    no_manifest = rezip(tmp_path / "empty.zip", {"events.jsonl": b""})
    result = invoke("bundle", "verify", str(no_manifest))
    assert result.exit_code == EXIT_CANNOT_RUN
    assert "manifest.json" in result.stderr
    assert invoke("bundle", "verify", str(tmp_path / "absent.zip")).exit_code == EXIT_CANNOT_RUN


def test_bundle_help_has_examples() -> None:
    assert "Example: ledger bundle --from" in invoke("bundle", "--help").stdout
    assert "Example: ledger bundle verify" in invoke("bundle", "verify", "--help").stdout
