"""`assets` right after a log position (ReadSide.assets(PointInTime(position=N)), `ledger assets
--at-position N`): at every position of a history, equal to the read models of a second store
that replayed the log only up to N; including a history whose business times go back and forth
across accounts, where log order and business-time order differ."""

import json

import pytest

from ledger import Ledger
from ledger.audit.reconcile import scratch_env
from projections.queries import AssetView, PointInTime, ReadSide
from projections.runner import ReadModels
from tests.cli.cli_support import EXIT_OK, invoke
from tests.support import at, command, run, setup_capped_asset


def build(ledger: Ledger) -> None:
    """A capped asset through bands, an uncapped one whose transfers come in with business times
    out of order (each account's own times move forward; the platform's do not), borrows, a cap
    change and price marks in between."""
    setup_capped_asset(ledger, upper_limit="1000", fixed_quota_usdt="100")
    assert run(ledger, command("list_asset", asset="BTC", collateral_rank=2)).is_accepted
    assert run(ledger, command("mark_prices", prices={"BTC": "20000"})).is_accepted
    assert run(
        ledger, command("set_borrow_terms", asset="USDT", hourly_interest_rate="0.0001")
    ).is_accepted
    steps = [
        ("transfer_in", 30, "u1", {"asset": "BTC", "quantity": "0.5"}),
        ("transfer_in", 10, "u2", {"asset": "BTC", "quantity": "0.25"}),
        ("transfer_in", 20, "u3", {"asset": "ABC", "quantity": "700"}),
        ("transfer_in", 5, "u4", {"asset": "BTC", "quantity": "1"}),
        ("transfer_in", 40, "u5", {"asset": "ABC", "quantity": "150"}),
        ("borrow", 45, "u1", {"asset": "USDT", "quantity": "1000"}),
        ("transfer_in", 50, "u6", {"asset": "ABC", "quantity": "90"}),
        ("transfer_out", 35, "u2", {"asset": "BTC", "quantity": "0.05"}),
    ]
    for type_, minute, user, fields in steps:
        outcome = run(
            ledger, command(type_, user=user, account="cross", effective_at=at(minute), **fields)
        )
        assert outcome.status.value in ("accepted", "rejected"), outcome
    for step in (
        command("set_collateral_cap", asset="ABC", upper_limit="900", effective_at=at(60)),
        command("mark_prices", prices={"ABC": "1.5", "BTC": "19000"}, effective_at=at(61)),
        command(
            "transfer_in",
            user="u7",
            account="cross",
            asset="ABC",
            quantity="10",
            effective_at=at(62),
        ),
    ):
        run(ledger, step)


def replayed_until(ledger: Ledger, position: int) -> list[AssetView]:
    with scratch_env(ledger) as env, ReadModels(ledger, store_env=env) as partial:
        partial.catch_up(until=position)
        return ReadSide(partial, catch_up=False).assets()


def test_assets_at_every_position_equal_a_replay_up_to_it(ledger: Ledger) -> None:
    build(ledger)
    head = ledger.recorder.max_notification_id()
    assert head is not None
    with ReadModels(ledger) as read_models:
        reader = ReadSide(read_models)
        for position in range(1, head + 1):
            expected = replayed_until(ledger, position)
            assert reader.assets(PointInTime(position=position)) == expected, position
        assert reader.assets(PointInTime(position=head)) == reader.assets()
        # Business-time order differs from log order here: the same moment by time is not the
        # same state (u4's BTC came in at minute 5, but last in the log among the first three).
        btc = {v.asset: v for v in reader.assets(PointInTime(position=head))}["BTC"]
        assert btc.total == "1.7"


@pytest.mark.parametrize("as_json", [True, False])
def test_the_cli_answers_at_a_position(database_url: str, as_json: bool) -> None:
    with Ledger(database_url) as ledger:
        build(ledger)
        position = 20
        expected = replayed_until(ledger, position)
    args = ["assets", "--db", database_url, "--at-position", str(position)]
    result = invoke(*args, *(["--json"] if as_json else []))
    assert result.exit_code == EXIT_OK, result.stderr
    if as_json:
        assert [AssetView.model_validate(v) for v in json.loads(result.stdout)] == expected
    else:
        for view in expected:
            assert view.asset in result.stdout


def test_the_cli_refuses_a_time_and_a_position_together(database_url: str) -> None:
    result = invoke(
        "assets", "--db", database_url, "--at-position", "3", "--as-of", "2026-03-02T09:00:00Z"
    )
    assert result.exit_code == 2
    assert "--at-position" in result.stderr
