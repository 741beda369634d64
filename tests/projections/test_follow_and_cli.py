"""The read models kept up to date by `ledger project --follow` as a real process, and the CLI
contract of `ledger project`, `ledger projections status|rebuild`, `trial-balance` and `bands`.

A follower killed (SIGKILL) at any moment of its catch-up, then started again, must leave
every read model exactly as a rebuild from the first event builds it: nothing applied twice,
nothing skipped. The simulated history is built once per backend and module (the PostgreSQL
build is the slow part); the kill tests forget the read models before each run.
"""

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger, limits
from ledger.domain.asset import Asset
from ledger.queries import account_view
from projections.queries import ReadSide
from projections.runner import MODELS, ReadModels
from tests.cli.cli_support import (
    EXIT_CANNOT_RUN,
    EXIT_OK,
    UNREACHABLE_POSTGRES_FAST_URL,
    cmd,
    invoke,
    json_lines,
    ledger_script,
    query,
    set_up_market,
    submit,
    transfer_in,
)
from tests.conftest import POSTGRES_URL, postgres_required
from tests.support import command, event_count, run

MODEL_NAMES = [model.name for model in MODELS]
STATUS_KEYS = {"name", "description", "position", "head", "lag"}
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/x"
WAIT_SECONDS = 90  # an upper bound for waiting on another process, never a timing assertion
SIMULATED_ACCOUNTS = "100"  # about 2,500 events: three batches of PROJECTION_BATCH_SIZE
AFTER_SIMULATION = "2026-03-05T00:00:00Z"  # business time after the simulated history


# --- the stores -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def history_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A store holding a simulated history (every event kind), built once per backend."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('history')}/ledger.sqlite3"
    else:
        if not postgres_required():
            pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
        schema = f"test_{uuid.uuid4().hex[:16]}"
        url = f"{POSTGRES_URL}?schema={schema}"
    try:
        result = invoke(
            "simulate",
            "--db",
            url,
            "--accounts",
            SIMULATED_ACCOUNTS,
            "--hours",
            "24",
            "--json",
            "--quiet",
        )
        assert result.exit_code == EXIT_OK, (result.stdout, result.stderr)
        with Ledger(url) as ledger:
            assert event_count(ledger) > 2 * limits.PROJECTION_BATCH_SIZE
        yield url
    finally:
        if schema is not None:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def forget_read_models(url: str) -> None:
    """Every read model back to "never projected": empty tables, no tracking rows."""
    with Ledger(url) as ledger, ReadModels(ledger) as read_models:
        with read_models.store.transaction() as db:
            for model in read_models.models.values():
                read_models.store.drop_tables(db, model.tables)
                read_models.store.forget(db, read_models.key(model.name))
                read_models.store.create_tables(db, model.tables)
        assert set(read_models.positions().values()) == {0}


def table_rows(read_models: ReadModels) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read model's tables, ordered by primary key."""
    rows = {}
    with read_models.store.transaction(commit=False) as db:
        for model in read_models.models.values():
            for table in model.tables:
                rows[table.name] = db.query(
                    f"SELECT {', '.join(table.column_names)} FROM {{{table.name}}} "
                    f"ORDER BY {', '.join(table.primary_key)}"
                )
    return rows


def capped_assets(ledger: Ledger) -> list[str]:
    """The simulation's listed capped assets (it lists a few of CAPPED_SYMBOLS)."""
    from ledger.simulate.market import CAPPED_SYMBOLS

    return [
        symbol
        for symbol in CAPPED_SYMBOLS
        if ledger.get_aggregate(Asset, Asset.create_id(symbol)) is not None
    ]


def late_commands(ledger: Ledger, tag: str, assets: list[str], price: str) -> None:
    """A few commands after the simulated history: a new account, prices that move bands."""
    assert run(
        ledger,
        command(
            "transfer_in",
            effective_at=AFTER_SIMULATION,
            user=f"late-{tag}",
            account="cross",
            asset="USDT",
            quantity="1234.5",
        ),
    ).is_accepted
    assert run(
        ledger,
        command(
            "transfer_in",
            effective_at=AFTER_SIMULATION,
            user=f"late-{tag}",
            account="cross",
            asset=assets[0],
            quantity="10",
        ),
    ).status in ("accepted", "rejected")
    assert run(
        ledger,
        command(
            "mark_prices",
            effective_at=AFTER_SIMULATION,
            prices=dict.fromkeys(assets, price),
        ),
    ).is_accepted


# --- a follower as a real process -----------------------------------------------------------------


def ledger_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LEDGER_DATABASE_URL"}


@dataclass
class Follower:
    """`ledger project --follow` running in its own process, its output in files."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @classmethod
    def start(cls, url: str, folder: Path, tag: str, *, quiet: bool) -> "Follower":
        stdout_path = folder / f"{tag}.stdout"
        stderr_path = folder / f"{tag}.stderr"
        args = [str(ledger_script()), "project", "--follow", "--poll", "0.05", "--db", url]
        if quiet:
            args.append("--quiet")
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(args, stdout=out, stderr=err, env=ledger_env())
        return cls(process, stdout_path, stderr_path)

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def assert_alive(self) -> None:
        assert self.process.poll() is None, (self.process.returncode, self.stderr())

    def wait_until_following(self) -> None:
        """Until it printed its note: the initial catch-up is over, the signals are handled."""
        wait_for(lambda: "following the log" in self.stderr(), self.assert_alive)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=WAIT_SECONDS) == -signal.SIGKILL

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=WAIT_SECONDS)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT_SECONDS)


def wait_for(
    condition: Callable[[], bool],
    check: Callable[[], None] = lambda: None,
    *,
    pause: float = 0.005,
) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        check()
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(pause)


def all_caught_up(read_models: ReadModels) -> bool:
    return all(s.lag == 0 and s.position == s.head for s in read_models.status())


# --- 1. killing a follower ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batches_before_kill", "delay"),
    # Delays short enough to land before the head: catch-up runs ~10k events/s since #8.
    [(1, 0.02), (2, 0.0)],
    ids=["during-batch-2", "during-batch-3"],
)
def test_a_killed_follower_resumes_without_applying_an_event_twice_or_skipping_one(
    history_url: str, tmp_path: Path, batches_before_kill: int, delay: float
) -> None:
    threshold = batches_before_kill * limits.PROJECTION_BATCH_SIZE
    followers: list[Follower] = []
    try:
        with Ledger(history_url) as ledger:
            assets = capped_assets(ledger)
            assert assets
            # A kill that comes after the follower already reached the head proves nothing:
            # start again (from nothing) until one lands mid-way through the catch-up.
            for attempt in range(5):
                forget_read_models(history_url)
                head = event_count(ledger)
                follower = Follower.start(history_url, tmp_path, f"killed-{attempt}", quiet=True)
                followers.append(follower)
                with ReadModels(ledger) as read_models:
                    wait_for(
                        lambda rm=read_models: min(rm.positions().values()) >= threshold,
                        follower.assert_alive,
                    )
                    time.sleep(delay)
                    follower.kill()
                    killed_at = read_models.positions()
                assert min(killed_at.values()) >= threshold
                if max(killed_at.values()) < head:
                    break
            else:
                pytest.fail(f"no kill landed before the head in 5 attempts: {killed_at}")

            # Nothing left locked: new commands are written and one model catches up here.
            late_commands(ledger, f"{batches_before_kill}-{delay}", assets, "0.0123")
            with ReadModels(ledger) as read_models:
                assert read_models.catch_up(["event_index"]) == event_count(ledger)
                assert read_models.positions()["event_index"] == event_count(ledger)
                assert read_models.positions()["accounts"] < event_count(ledger)

            # Started again: it resumes, and follows what arrives meanwhile.
            follower = Follower.start(history_url, tmp_path, "resumed", quiet=False)
            followers.append(follower)
            follower.wait_until_following()
            late_commands(ledger, f"{batches_before_kill}-{delay}-more", assets[::-1], "97")
            final_head = event_count(ledger)
            with ReadModels(ledger) as read_models:
                wait_for(lambda: all_caught_up(read_models), follower.assert_alive, pause=0.02)
                statuses = read_models.status()
                assert {s.name for s in statuses} == set(MODEL_NAMES)
                assert all(s.position == final_head for s in statuses), statuses

                assert follower.terminate() == EXIT_OK, follower.stderr()
                printed = follower.stdout()
                assert "Projections" in printed
                for name in MODEL_NAMES:
                    assert name in printed

                followed = table_rows(read_models)
                side = ReadSide(read_models, catch_up=False)
                accounts = side.accounts()
                trial_balance = side.trial_balance()

                assert read_models.rebuild() == final_head
                assert all_caught_up(read_models)
                rebuilt = table_rows(read_models)

            assert set(followed) == set(rebuilt)
            for table_name, rows in rebuilt.items():
                assert followed[table_name] == rows, table_name
            assert len(accounts) > 100
            for view in accounts:
                assert view == account_view(ledger, view.account), view.account
            assert trial_balance
            assert all(line.is_balanced and line.difference == "0" for line in trial_balance)
    finally:
        for started in followers:
            started.cleanup()


def test_sigterm_during_the_first_catch_up_stops_cleanly(history_url: str, tmp_path: Path) -> None:
    """`--follow`: "Keep applying new events until Ctrl-C or SIGTERM", then print the status;
    a follower started on a long backlog is stopped the same way (it resumes later anyway)."""
    followers: list[Follower] = []
    try:
        with Ledger(history_url) as ledger:
            for attempt in range(5):
                forget_read_models(history_url)
                head = event_count(ledger)
                follower = Follower.start(history_url, tmp_path, f"stopped-{attempt}", quiet=True)
                followers.append(follower)
                with ReadModels(ledger) as read_models:
                    wait_for(
                        lambda rm=read_models: min(rm.positions().values()) > 0,
                        follower.assert_alive,
                    )
                    exit_code = follower.terminate()
                    stopped_at = read_models.positions()
                if max(stopped_at.values()) < head:
                    break  # the signal came during the first catch-up
            else:
                pytest.fail(f"no SIGTERM landed before the head in 5 attempts: {stopped_at}")
        assert exit_code == EXIT_OK, (exit_code, follower.stderr())
        assert "Projections" in follower.stdout()
    finally:
        for started in followers:
            started.cleanup()


# --- 2. following new events ----------------------------------------------------------------------


def projections_status(url: str) -> list[dict[str, Any]]:
    """`ledger projections status --json` (it does not catch up)."""
    document = query("projections", "status", "--db", url)
    assert isinstance(document, list)
    return document


def test_a_follower_applies_new_events_as_they_arrive(database_url: str, tmp_path: Path) -> None:
    set_up_market(database_url)
    follower = Follower.start(database_url, tmp_path, "follower", quiet=False)
    try:
        follower.wait_until_following()
        with Ledger(database_url) as ledger:
            first_head = event_count(ledger)
        assert all(s["position"] == first_head for s in projections_status(database_url))

        submitted = submit(
            database_url,
            [
                transfer_in("t-1", "fresh", "30000", minute=10),
                transfer_in("t-2", "fresh", "1.5", asset="ETH", minute=11),
                cmd("mark_prices", "prices-2", 12, prices={"QQQ": "3", "ETH": "2900"}),
            ],
        )
        assert submitted.statuses == ["accepted"] * 3, submitted

        with Ledger(database_url) as ledger:
            new_head = event_count(ledger)
        assert new_head > first_head

        def caught_up() -> bool:
            statuses = projections_status(database_url)
            return all(s["position"] == new_head and s["lag"] == 0 for s in statuses)

        wait_for(caught_up, follower.assert_alive, pause=0.05)

        # The follower, not this read, applied them: read without catching up.
        with Ledger(database_url) as ledger, ReadModels(ledger) as read_models:
            view = ReadSide(read_models, catch_up=False).account("fresh:cross")
            assert view == account_view(ledger, "fresh:cross")
            assert view.holdings == {"QQQ": "30000", "ETH": "1.5"}
            assert event_count(ledger) == new_head

        assert follower.terminate() == EXIT_OK, follower.stderr()
        assert "Projections" in follower.stdout()
    finally:
        follower.cleanup()


# --- 3. the CLI contract --------------------------------------------------------------------------


def run_ledger(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script with stdout and stderr piped (not terminals)."""
    return subprocess.run(
        [str(ledger_script()), *args],
        capture_output=True,
        text=True,
        env=ledger_env(),
        timeout=WAIT_SECONDS,
        check=False,
    )


def small_store(url: str) -> int:
    set_up_market(url)
    submitted = submit(
        url,
        [
            transfer_in("t-1", "u1", "30000"),
            transfer_in("t-2", "u2", "2", asset="ETH"),
            transfer_in("t-3", "u3", "25000"),  # over the cap's band A: moves the band
        ],
    )
    assert submitted.exit_code == EXIT_OK, submitted
    with Ledger(url) as ledger:
        return event_count(ledger)


def assert_statuses(document: Any, *, position: int, head: int, lag: int) -> None:
    assert isinstance(document, list)
    assert [s["name"] for s in document] == MODEL_NAMES
    for status in document:
        assert set(status) == STATUS_KEYS, status
        assert isinstance(status["description"], str) and status["description"]
        assert (status["position"], status["head"], status["lag"]) == (position, head, lag)


def test_project_json_prints_every_model_caught_up_and_nothing_else(database_url: str) -> None:
    events = small_store(database_url)

    process = run_ledger("project", "--json", "--quiet", "--db", database_url)

    assert process.returncode == EXIT_OK, process.stderr
    assert process.stderr == ""
    [document] = json_lines(process.stdout)
    assert_statuses(document, position=events, head=events, lag=0)


def test_project_piped_shows_no_progress_bar(database_url: str) -> None:
    events = small_store(database_url)

    process = run_ledger("project", "--json", "--db", database_url)

    assert process.returncode == EXIT_OK, process.stderr
    assert "\x1b" not in process.stdout + process.stderr
    assert "projecting" not in process.stderr
    [document] = json_lines(process.stdout)
    assert_statuses(document, position=events, head=events, lag=0)


def test_status_of_a_store_never_projected(database_url: str) -> None:
    events = small_store(database_url)

    document = projections_status(database_url)

    assert_statuses(document, position=0, head=events, lag=events)
    # Asking did not project anything.
    assert_statuses(projections_status(database_url), position=0, head=events, lag=events)


def test_rebuild_one_projection_leaves_everything_caught_up(database_url: str) -> None:
    events = small_store(database_url)
    assert query("project", "--quiet", "--db", database_url)
    with Ledger(database_url) as ledger, ReadModels(ledger) as read_models:
        before = table_rows(read_models)

    result = invoke("projections", "rebuild", "accounts", "--json", "--quiet", "--db", database_url)

    assert result.exit_code == EXIT_OK, result.stderr
    [document] = json_lines(result.stdout)
    assert_statuses(document, position=events, head=events, lag=0)
    with Ledger(database_url) as ledger, ReadModels(ledger) as read_models:
        assert table_rows(read_models) == before
        assert read_models.positions() == dict.fromkeys(MODEL_NAMES, events)


def test_rebuild_one_projection_of_a_store_never_projected(database_url: str) -> None:
    events = small_store(database_url)

    document = query("projections", "rebuild", "accounts", "--quiet", "--db", database_url)

    by_name = {s["name"]: s for s in document}
    assert (by_name["accounts"]["position"], by_name["accounts"]["lag"]) == (events, 0)
    with Ledger(database_url) as ledger, ReadModels(ledger) as read_models:
        view = ReadSide(read_models, catch_up=False).account("u1:cross")
        assert view == account_view(ledger, "u1:cross")
        assert view.holdings == {"QQQ": "30000"}


def test_rebuild_of_an_unknown_projection_exits_2_and_changes_nothing(database_url: str) -> None:
    events = small_store(database_url)
    assert invoke("project", "--quiet", "--db", database_url).exit_code == EXIT_OK
    # One more event, not yet projected: a rebuild that ran would catch up to it.
    assert submit(database_url, [transfer_in("t-9", "u9", "5")]).statuses == ["accepted"]
    with Ledger(database_url) as ledger, ReadModels(ledger) as read_models:
        before = table_rows(read_models)
        assert read_models.positions() == dict.fromkeys(MODEL_NAMES, events)
        head = event_count(ledger)
        assert head > events

    result = invoke("projections", "rebuild", "nosuch", "--db", database_url)

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert "nosuch" in result.stderr
    for name in MODEL_NAMES:
        assert name in result.stderr
    with Ledger(database_url) as ledger, ReadModels(ledger) as read_models:
        assert table_rows(read_models) == before
        assert read_models.positions() == dict.fromkeys(MODEL_NAMES, events)
        assert event_count(ledger) == head


@pytest.mark.parametrize(
    ("args", "url"),
    [
        (("project", "--json", "--quiet"), UNREACHABLE_URL),
        (("projections", "status", "--json"), UNREACHABLE_URL),
        (("projections", "rebuild", "accounts"), UNREACHABLE_POSTGRES_FAST_URL),
    ],
    ids=["project", "status", "rebuild"],
)
def test_an_unreachable_database_exits_2(args: tuple[str, ...], url: str) -> None:
    process = run_ledger(*args, "--db", url)

    assert process.returncode == EXIT_CANNOT_RUN, process
    assert process.stdout == ""
    assert "cannot open the database" in process.stderr


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/ledger", "sqlite://", "postgresql://postgres@localhost"]
)
@pytest.mark.parametrize(
    "args", [("project", "--json"), ("projections", "status"), ("projections", "rebuild")]
)
def test_a_bad_database_url_exits_2(args: tuple[str, ...], url: str) -> None:
    result = invoke(*args, "--db", url)

    assert result.exit_code == EXIT_CANNOT_RUN, result.stdout
    assert result.stdout == ""
    assert url in result.stderr


# --- 4. trial balance and bands over a simulated history ------------------------------------------


def test_trial_balance_of_a_simulated_history_balances(history_url: str) -> None:
    result = invoke("trial-balance", "--db", history_url, "--json")

    assert result.exit_code == EXIT_OK, result.stderr
    [lines] = json_lines(result.stdout)
    assert {"USDT", "BTC", "ETH"} <= {line["asset"] for line in lines}
    for line in lines:
        assert line["is_balanced"] is True, line
        assert line["difference"] == "0", line
        assert line["debit_total"] == line["credit_total"], line


def band_changes(url: str, *args: str) -> list[dict[str, Any]]:
    document = query("bands", *args, "--db", url)
    assert isinstance(document, list)
    return document


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_bands_list_every_change_in_log_order(history_url: str) -> None:
    changes = band_changes(history_url)

    with Ledger(history_url) as ledger:
        head = event_count(ledger)
        listed = set(capped_assets(ledger))
    assert changes
    keys = [(c["position"], c["asset"]) for c in changes]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert all(0 < c["position"] <= head for c in changes)
    assert {c["asset"] for c in changes} == listed
    # Per asset, a chain: each change starts from the band the previous one ended in.
    last_band: dict[str, str | None] = {}
    for change in changes:
        assert change["band_before"] == last_band.get(change["asset"]), change
        assert change["band_after"] != change["band_before"], change
        last_band[change["asset"]] = change["band_after"]


def test_bands_of_one_asset_between_two_times_inclusive(history_url: str) -> None:
    changes = band_changes(history_url)
    counts: dict[str, int] = {}
    for change in changes:
        counts[change["asset"]] = counts.get(change["asset"], 0) + 1
    asset = max(counts, key=lambda a: (counts[a], a))
    own = [c for c in changes if c["asset"] == asset]
    assert len(own) >= 3, own
    start, end = own[1]["effective_at"], own[-2]["effective_at"]
    expected = [c for c in own if moment(start) <= moment(c["effective_at"]) <= moment(end)]
    assert own[1] in expected and own[-2] in expected  # both ends are included

    assert band_changes(history_url, asset, "--from", start, "--to", end) == expected
    assert band_changes(history_url, asset) == own
    only_from = [c for c in own if moment(c["effective_at"]) >= moment(start)]
    assert band_changes(history_url, asset, "--from", start) == only_from
    only_to = [c for c in own if moment(c["effective_at"]) <= moment(end)]
    assert band_changes(history_url, asset, "--to", end) == only_to
    # Every asset between the two times: the other assets' changes come in too.
    everyone = [c for c in changes if moment(start) <= moment(c["effective_at"]) <= moment(end)]
    assert band_changes(history_url, "--from", start, "--to", end) == everyone


@pytest.mark.parametrize("value", ["yesterday", "2026-03-02T09:00:00", "2026-13-01T00:00:00Z"])
def test_bands_with_a_bad_from_exits_2_naming_it(database_url: str, value: str) -> None:
    result = invoke("bands", "--from", value, "--db", database_url, "--json")

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert "--from" in result.stderr
