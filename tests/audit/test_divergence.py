"""Bisection over an account's events (ledger/audit/divergence.py): a read model whose rows of
one account stopped following it at some event is found at the next event, in about log2(n)
as-of replays, on both backends; a row equal to none of the account's states stays at its own
last position (the bisection cannot place it, and does not pretend to)."""

import math
from decimal import Decimal

import pytest

from ledger import Ledger
from ledger.audit.divergence import AccountDivergence, account_divergence
from ledger.audit.reconcile import reconcile, scratch_env
from projections.runner import ReadModels
from tests.audit.read_model_support import account_positions, put_back
from tests.support import at, command, run, setup_capped_asset

TRANSFERS = 40


@pytest.fixture
def projected(database_url: str) -> str:
    """u1:cross with 40 transfer-ins (and u2 between them), every read model caught up."""
    with Ledger(database_url) as ledger:
        setup_capped_asset(ledger, upper_limit="100000000")
        for minute in range(1, TRANSFERS + 1):
            for user in ("u1", "u2"):
                transfer = command(
                    "transfer_in",
                    user=user,
                    account="cross",
                    asset="ABC",
                    quantity=str(minute),
                    effective_at=at(minute),
                )
                assert run(ledger, transfer).is_accepted
        with ReadModels(ledger) as read_models:
            read_models.catch_up()
    return database_url


def divergence_of_u1(ledger: Ledger) -> AccountDivergence | None:
    head = ledger.recorder.max_notification_id() or 0
    with (
        scratch_env(ledger) as env,
        ReadModels(ledger, store_env=env) as replay,
        ReadModels(ledger) as live,
    ):
        replay.catch_up()
        with (
            live.store.transaction(commit=False) as live_db,
            replay.store.transaction(commit=False) as replay_db,
        ):
            return account_divergence(ledger, live_db, replay_db, "u1:cross", head)


@pytest.mark.parametrize("stopped_after", [1, 17, TRANSFERS * 2 - 2])
def test_a_stale_account_is_found_at_its_next_event_by_bisection(
    projected: str, stopped_after: int
) -> None:
    with Ledger(projected) as ledger:
        positions = account_positions(ledger, "u1:cross")
        assert len(positions) >= TRANSFERS
        stopped_after = min(stopped_after, len(positions) - 2)
        put_back(ledger, "u1:cross", positions[stopped_after])

        divergence = divergence_of_u1(ledger)
        report = reconcile(ledger)

    assert divergence is not None
    assert divergence.position == positions[stopped_after + 1]
    assert divergence.agrees_until == positions[stopped_after]
    # log2 of the events from the row's own position on, plus the check of the last state and
    # the one before the answer: never one replay per event.
    assert divergence.replays <= math.ceil(math.log2(len(positions))) + 3
    [replay] = [c for c in report.checks if c.name == "read_models"]
    assert replay.first_divergence_position == positions[stopped_after + 1]
    assert {d.account for d in replay.differences} == {"u1:cross"}


def test_an_altered_row_stays_at_its_last_position(projected: str) -> None:
    with Ledger(projected) as ledger:
        positions = account_positions(ledger, "u1:cross")
        with ReadModels(ledger) as read_models, read_models.store.transaction() as db:
            db.execute(
                "UPDATE {account_balances} SET holding = ? WHERE account_id = 'u1:cross'",
                (db.dec(Decimal("7")),),
            )
        divergence = divergence_of_u1(ledger)
        report = reconcile(ledger)

    assert divergence is not None and divergence.agrees_until is None
    [replay] = [c for c in report.checks if c.name == "read_models"]
    [difference] = replay.differences
    assert difference.position == positions[-1] == replay.first_divergence_position
    assert "still equal" not in difference.detail


def test_a_clean_account_has_no_divergence(projected: str) -> None:
    with Ledger(projected) as ledger:
        assert divergence_of_u1(ledger) is None
