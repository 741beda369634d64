"""The time-travel benchmark (figure 5 of `scripts/bench`): a quick run gives every figure, and
the as-of answers it times are the accounts as they stood, on both backends. No timing is
asserted.

Method for the answers: the benchmark's own store and queries (`open_store`, `measure`); each
answer must equal the account rebuilt independently of the query path, by folding every event
of the account, of its assets and of the risk parameters up to the moment, read straight from the
log (no snapshot, no event index, no repository), then valued by the same view functions.
"""

from collections.abc import Iterator
from datetime import datetime
from random import Random
from typing import Any
from uuid import UUID

import pytest

from ledger.application import Ledger
from ledger.bench.core import Backend, BenchConfig
from ledger.bench.time_travel import (
    LAG_EVENTS,
    SECTION,
    TARGET_RATIO,
    Store,
    accounts_in,
    measure,
    open_store,
    run,
)
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.risk_parameters import RiskParameters
from ledger.queries import AccountView, account_view_of, valuation_at
from tests.conftest import POSTGRES_URL, postgres_required

STORE_EVENTS = 6_000  # enough for the account and the assets to pass a snapshot (every 100)
ACCOUNT_EVENTS = 400
QUERIES = 12


def config_for(backend: Backend) -> BenchConfig:
    if backend == "postgres" and not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    quick = BenchConfig.quick_sizes()
    return BenchConfig(**quick, backends=(backend,), postgres_url=POSTGRES_URL)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    value: Backend = request.param
    return value


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with open_store(backend, config_for(backend), STORE_EVENTS, (ACCOUNT_EVENTS,)) as opened:
        yield opened


def test_as_of_answers_are_the_account_replayed_from_the_log(store: Store) -> None:
    [account] = store.accounts.values()
    assert len(account.times) >= ACCOUNT_EVENTS
    measured = measure(store, account, QUERIES, Random(7))
    assert len(measured.answers) == len(measured.query_seconds) == QUERIES
    assert len(measured.ceiling_seconds) == QUERIES
    versions = {answer.version for _moment, answer in measured.answers}
    assert max(versions) > 100, versions  # some answers start from a snapshot
    for moment, answer in measured.answers:
        assert answer == replayed_view(store.ledger, account.originator_id, moment)
    assert any(answer.holdings for _moment, answer in measured.answers)  # not empty views


def test_quick_run_gives_every_figure(backend: Backend) -> None:
    config = config_for(backend)
    figures = run(config)
    stores, accounts = config.time_travel_stores, config.time_travel_account_events
    assert {f.section for f in figures} == {SECTION}
    assert {f.backend for f in figures} == {backend}
    cases = [(m, n) for m in stores for n in accounts_in(m, accounts)]
    names = {f.name for f in figures}
    for store_events, account_events in cases:
        for statistic in ("median", "p99"):
            assert (
                f"as-of account {statistic}: {account_events:,}-event account, "
                f"{store_events:,}-event store"
            ) in names
    latencies = [f for f in figures if f.name.startswith("as-of account")]
    assert len(latencies) == 2 * len(cases)
    for figure in latencies:
        assert figure.unit == "ms" and figure.better == "lower"
        assert figure.value.median > 0 and figure.ceiling is not None
        assert figure.ceiling.median > 0
        assert int(figure.notes["store_events"]) >= int(figure.notes["account_events"])
    [growth] = [f for f in figures if f.target is not None]
    smallest = min(n for _m, n in cases)
    assert growth.name == (
        f"as-of median growth: {smallest:,}-event account in {max(stores):,}-event store"
    )
    assert growth.target == TARGET_RATIO and growth.better == "lower"
    assert growth.ratio is not None and growth.met is not None  # judged, whatever the outcome
    lagging = [f for f in figures if f"lag of {LAG_EVENTS:,} events" in f.name]
    assert len(lagging) == len(stores)


# --- the independent replay ---------------------------------------------------------------------


def replayed_view(ledger: Ledger, account_id: UUID, moment: datetime) -> AccountView:
    account = replayed(ledger, account_id, moment)
    assert isinstance(account, MarginAccount)
    assets = [
        replayed(ledger, Asset.create_id(s), moment) for s in sorted(account.position().assets())
    ]
    parameters = replayed(ledger, RiskParameters.create_id(), moment)
    return account_view_of(account, valuation_at(account, assets, parameters))


def replayed(ledger: Ledger, aggregate_id: UUID, moment: datetime) -> Any:
    """The aggregate folded from its first event to its last at or before `moment`."""
    aggregate = None
    for stored in ledger.recorder.select_events(aggregate_id):
        event: Any = ledger.mapper.to_domain_event(stored)
        if event.effective_at > moment:
            break
        aggregate = event.mutate(aggregate)
    return aggregate
