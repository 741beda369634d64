"""`ledger submit FILE --batch-size N`: how many commands share a transaction changes nothing a
client can see. The same lines give byte-identical outcomes and notes for every N and on standard
input, with the exit codes of COMMANDS.md "Transport"; a batch size out of bounds is a bad flag
(exit 2, nothing recorded); a file submitted again is answered line by line with first outcomes;
a database failure mid-file exits 2 with the batches before it recorded and nothing of its own."""

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger, limits
from ledger.log import log_events
from tests.cli.cli_support import (
    EXIT_CANNOT_RUN,
    EXIT_INVALID,
    EXIT_OK,
    MARKET,
    cmd,
    event_count,
    invoke,
    json_lines,
    jsonl,
    set_up_market,
    transfer_in,
    transfer_out,
)
from tests.conftest import POSTGRES_URL
from tests.failures import failing_inserts
from tests.support import at

# The market, then a bit of everything: a cap refusal, duplicates, a request id reused with
# another payload, lines invalid as JSON and as commands, a loan, jobs (which run on their own,
# between batches) and a pending first transfer. Read with COMMANDS.md and cli_support's market.
LINES: list[dict[str, Any] | str] = [
    *MARKET,
    cmd("set_borrow_terms", "terms-usdt", asset="USDT", hourly_interest_rate="0.0001"),
    transfer_in("t-1", "u1", "30000", minute=10),  # band A: q_max 40,000
    "{not json",
    transfer_in("t-2", "u2", "15000", minute=11),  # q_max 10,000: refused
    transfer_in("t-1", "u1", "30000", minute=10),  # the same request again: a duplicate
    transfer_in("t-3", "u3", "10", asset="ETH", minute=12),
    transfer_in("t-zzz", "u3", "10", asset="ZZZ", minute=12),  # not a listed asset
    cmd("borrow", "b-1", 13, user="u3", account="cross", asset="USDT", quantity="5000"),
    transfer_in("t-1", "u1", "30001", minute=10),  # the same id, another payload
    cmd("accrue_interest", "job-1", 120, until=at(120)),
    transfer_out("t-4", "u1", "100", minute=130),
    "   ",
    transfer_in("p-1", "u4", "500", asset="USDT", minute=131, channel="client", risk_flagged=True),
    transfer_in("t-5", "u5", "9000", minute=140),  # T 29,900: q_max 10,100
    cmd("accrue_interest", "job-1", 120, until=at(120)),  # the job again: a duplicate
    cmd("check_margins", "job-2", 150),
    transfer_in("t-6", "u6", "0", minute=150),  # a quantity must be above 0
    json.dumps({"type": "transfer_sideways", "request_id": "t-7"}),
]
INVALID_LINES = [9, 13, 15, 23, 24]  # 1-based, as the outcomes number them
BATCH_SIZES = (1, 3, 1000)


@pytest.fixture
def new_store(database_url: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Fresh stores on the test's backend (schemas dropped afterwards)."""
    schemas: list[str] = []
    count = itertools.count()

    def make() -> str:
        if database_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path}/store-{next(count)}.sqlite3"
        schema = f"test_{uuid.uuid4().hex[:16]}"
        schemas.append(schema)
        return f"{POSTGRES_URL}?schema={schema}"

    yield make
    if schemas:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            for schema in schemas:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


@dataclass(frozen=True)
class Run:
    exit_code: int
    stdout: str
    stderr: str


def submit_file(url: str, path: Path, *flags: str) -> Run:
    result = invoke("submit", str(path), "--db", url, *flags)
    return Run(result.exit_code, result.stdout, result.stderr)


def submit_stdin(url: str, text: str, *flags: str) -> Run:
    result = invoke("submit", "-", "--db", url, *flags, input=text)
    return Run(result.exit_code, result.stdout, result.stderr)


def test_every_batch_size_and_stdin_give_the_same_bytes(
    database_url: str, new_store: Callable[[], str], tmp_path: Path
) -> None:
    path = tmp_path / "commands.jsonl"
    path.write_text(jsonl(LINES), encoding="utf-8")
    runs = {
        "stdin": submit_stdin(database_url, path.read_text(encoding="utf-8")),
        "file, default size": submit_file(new_store(), path),
    }
    for size in BATCH_SIZES:
        runs[f"file, size {size}"] = submit_file(new_store(), path, "--batch-size", str(size))
    reference = runs["stdin"]
    for name, run in runs.items():
        assert run == reference, name
    assert reference.exit_code == EXIT_INVALID
    outcomes = json_lines(reference.stdout)
    assert len(outcomes) == len([line for line in LINES if str(line).strip()])
    assert [o["line"] for o in outcomes if o["status"] == "invalid"] == INVALID_LINES
    by_id = {o["request_id"]: o for o in outcomes if o["status"] != "invalid"}
    assert by_id["t-2"]["reason"] == "collateral_cap"
    assert by_id["p-1"]["status"] == "pending"
    assert by_id["t-5"]["status"] == "accepted", by_id["t-5"]
    assert by_id["job-1"]["context"]["hours_charged"] == 2, by_id["job-1"]  # 10:00 and 11:00
    duplicates = [o["request_id"] for o in outcomes if o.get("duplicate")]
    assert duplicates == ["t-1", "job-1"]
    assert [line.split(":")[0] for line in reference.stderr.splitlines()] == [
        f"line {n}" for n in INVALID_LINES
    ]


def test_a_file_submitted_again_is_answered_with_first_outcomes(
    database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "commands.jsonl"
    path.write_text(jsonl(LINES), encoding="utf-8")
    first = submit_file(database_url, path, "--batch-size", "1000")
    recorded = event_count(database_url)
    again = submit_file(database_url, path, "--batch-size", "3")
    assert event_count(database_url) == recorded
    assert (first.exit_code, again.exit_code) == (EXIT_INVALID, EXIT_INVALID)
    assert again.stderr == first.stderr
    for before, after in zip(json_lines(first.stdout), json_lines(again.stdout), strict=True):
        if before["status"] == "invalid":
            assert after == before
        else:
            assert after == before | {"duplicate": True}


def test_a_file_of_valid_lines_exits_0_in_batches(
    database_url: str, new_store: Callable[[], str], tmp_path: Path
) -> None:
    valid: list[dict[str, Any] | str] = [
        line
        for line in LINES
        if isinstance(line, dict)
        and line["request_id"] != "t-zzz"
        and line.get("quantity") not in ("0", "30001")
    ]
    path = tmp_path / "valid.jsonl"
    path.write_text(jsonl(valid), encoding="utf-8")
    batched = submit_file(database_url, path, "--batch-size", "3")
    one_by_one = submit_file(new_store(), path, "--batch-size", "1")
    assert batched == one_by_one
    assert batched.exit_code == EXIT_OK, batched.stderr
    assert batched.stderr == ""


@pytest.mark.parametrize("size", ["0", "-1", str(limits.BATCH_SIZE_MAX + 1), "many"])
def test_a_batch_size_out_of_bounds_is_a_bad_flag_and_records_nothing(
    database_url: str, tmp_path: Path, size: str
) -> None:
    path = tmp_path / "commands.jsonl"
    path.write_text(jsonl(LINES), encoding="utf-8")
    run = submit_file(database_url, path, "--batch-size", size)
    assert run.exit_code == EXIT_CANNOT_RUN, run
    assert run.stdout == ""
    assert "--batch-size" in run.stderr
    assert event_count(database_url) == 0


@contextmanager
def failing_inserts_of(url: str, marker: str) -> Iterator[None]:
    """Inserting an event whose stored JSON holds `marker` (e.g. its request id) fails with a
    database error; the store must already exist."""
    with Ledger(url) as ledger:
        table: str = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    with failing_inserts(url, table, marker=marker):
        yield


def events_stored(url: str) -> int:
    """How many events the log holds (on PostgreSQL a rolled-back insert leaves a gap in the
    positions, so the last position is not a count)."""
    with Ledger(url) as ledger:
        return sum(1 for _ in log_events(ledger))


def test_a_database_failure_mid_file_exits_2_and_records_nothing_of_its_batch(
    database_url: str, new_store: Callable[[], str], tmp_path: Path
) -> None:
    """Batches of 3: lines 1-6 are committed and printed; line 8 fails the database, so lines 7-9
    are not recorded and nothing after them is read. Submitted again once the database is well,
    lines 1-6 are duplicates and the rest are decided as a run that never failed decides them."""
    lines: list[dict[str, Any] | str] = [
        transfer_in(f"t-{n}", f"u{n}", "1000", minute=10 + n)
        if n != 8
        else transfer_in("doomed", "u8", "1000", minute=18)
        for n in range(1, 13)
    ]
    path = tmp_path / "commands.jsonl"
    path.write_text(jsonl(lines), encoding="utf-8")
    set_up_market(database_url)
    market_events = events_stored(database_url)
    with failing_inserts_of(database_url, "doomed"):
        failed = submit_file(database_url, path, "--batch-size", "3")
    assert failed.exit_code == EXIT_CANNOT_RUN, failed
    assert "database error" in failed.stderr
    printed = json_lines(failed.stdout)
    assert [o["request_id"] for o in printed] == [f"t-{n}" for n in range(1, 7)]
    assert events_stored(database_url) - market_events == sum(len(o["events"]) for o in printed)

    again = submit_file(database_url, path, "--batch-size", "3")
    clean_store = new_store()
    set_up_market(clean_store)
    clean = submit_file(clean_store, path, "--batch-size", "3")
    assert (again.exit_code, clean.exit_code) == (EXIT_OK, EXIT_OK)
    assert json_lines(again.stdout) == [
        o | {"duplicate": n < 6} for n, o in enumerate(json_lines(clean.stdout))
    ]
    assert json_lines(again.stdout)[:6] == [o | {"duplicate": True} for o in printed]
    assert events_stored(database_url) == events_stored(clean_store)
