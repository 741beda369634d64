"""`ledger accrue-interest --until T`: one JSON outcome, idempotent per until, exit codes 0 / 1.

The store (on both backends) holds one loan: u1 borrowed 1000 USDT at 09:15 at 0.0001 an hour,
so each full hour after it charges 0.1 USDT.
"""

import importlib

import pytest

from ledger import Ledger
from ledger.queries import account_view
from tests.cli.cli_support import EXIT_INVALID, EXIT_OK, event_count, invoke, json_lines
from tests.support import at, command, run

importlib.import_module("ledger.cli.jobs")  # registers the command on the app, as main() does


def set_up_loan(url: str) -> None:
    with Ledger(url) as ledger:
        for data in (
            command("list_asset", asset="USDT", collateral_rank=1),
            command("set_borrow_terms", asset="USDT", hourly_interest_rate="0.0001"),
            command(
                "transfer_in",
                user="u1",
                account="cross",
                asset="USDT",
                quantity="1000",
                effective_at=at(5),
            ),
            command(
                "borrow",
                user="u1",
                account="cross",
                asset="USDT",
                quantity="1000",
                effective_at=at(15),
            ),
        ):
            assert run(ledger, data).is_accepted


def accrue(url: str, *args: str) -> tuple[int, list[dict[str, object]], list[str]]:
    result = invoke("accrue-interest", *args, "--db", url)
    return result.exit_code, json_lines(result.stdout), result.stderr.splitlines()


def test_the_job_prints_one_outcome_and_a_rerun_is_a_duplicate(database_url: str) -> None:
    set_up_loan(database_url)

    code, [outcome], errors = accrue(database_url, "--until", "2026-03-02T12:00:00Z")

    assert (code, errors) == (EXIT_OK, [])
    assert outcome["request_id"] == "accrual:2026-03-02T12:00:00Z"
    assert (outcome["status"], outcome["duplicate"]) == ("accepted", False)
    assert outcome["context"] == {
        "until": "2026-03-02T12:00:00Z",
        "accounts_scanned": 1,
        "accounts_charged": 1,
        "hours_charged": 3,
        "interest": {"USDT": "0.3"},
        "effective_at": "2026-03-02T12:00:00Z",
    }
    stored = event_count(database_url)

    code, [again], errors = accrue(database_url, "--until", "2026-03-02T12:00:00Z")

    assert (code, errors) == (EXIT_OK, [])
    assert again["duplicate"] is True
    assert (again["status"], again["context"], again["events"]) == (
        "accepted",
        outcome["context"],
        outcome["events"],
    )
    assert event_count(database_url) == stored


def test_another_request_id_for_the_same_until_charges_nothing(database_url: str) -> None:
    set_up_loan(database_url)
    assert accrue(database_url, "--until", "2026-03-02T12:00:00Z")[0] == EXIT_OK

    code, [outcome], _ = accrue(
        database_url, "--until", "2026-03-02T12:00:00Z", "--request-id", "nightly-rerun"
    )

    assert code == EXIT_OK
    assert (outcome["request_id"], outcome["duplicate"]) == ("nightly-rerun", False)
    assert outcome["context"]["hours_charged"] == 0
    assert outcome["context"]["interest"] == {}
    with Ledger(database_url) as ledger:
        assert account_view(ledger, "u1:cross").interest == {"USDT": "0.4"}


def test_the_job_records_its_actor_on_the_interest_events(database_url: str) -> None:
    set_up_loan(database_url)
    assert accrue(database_url, "--until", "2026-03-02T10:30:00Z")[0] == EXIT_OK
    with Ledger(database_url) as ledger:
        charged = [
            ledger.mapper.to_domain_event(n)
            for n in ledger.recorder.select_notifications(start=1, limit=1000)
            if n.topic.endswith(".InterestCharged")
        ]
    assert [(e.actor, e.request_id, e.hour.isoformat()) for e in charged] == [
        ("job:accrue-interest", "accrual:2026-03-02T10:30:00Z", "2026-03-02T10:00:00+00:00")
    ]


@pytest.mark.parametrize(
    "until",
    ["2026-03-02T12:00:00", "tomorrow", "2026-13-02T12:00:00Z", ""],
    ids=["no-timezone", "not-a-time", "month-13", "empty"],
)
def test_a_bad_until_exits_1_naming_until_and_records_nothing(
    database_url: str, until: str
) -> None:
    set_up_loan(database_url)
    stored = event_count(database_url)

    result = invoke("accrue-interest", "--until", until, "--db", database_url)

    assert result.exit_code == EXIT_INVALID
    assert result.stdout == ""
    fields = {line.split(":", 1)[0] for line in result.stderr.splitlines()}
    assert {"until", "effective_at"} <= fields, result.stderr
    assert event_count(database_url) == stored


def test_until_is_required(database_url: str) -> None:
    result = invoke("accrue-interest", "--db", database_url)
    assert result.exit_code == 2  # a bad flag: the command could not run
    assert "--until" in result.stderr


def test_an_until_with_a_utc_offset_is_accepted(database_url: str) -> None:
    set_up_loan(database_url)

    code, outcomes, errors = accrue(database_url, "--until", "2026-03-02T13:00:00+01:00")

    assert (code, errors) == (EXIT_OK, [])
    assert outcomes[0]["context"]["until"] == "2026-03-02T12:00:00Z"
    assert outcomes[0]["context"]["hours_charged"] == 3


def test_the_help_shows_an_example() -> None:
    result = invoke("accrue-interest", "--help")
    assert result.exit_code == EXIT_OK
    assert "Example: ledger accrue-interest --until" in result.stdout
