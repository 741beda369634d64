"""A PostgreSQL writer alone on the log decides before taking the lock (LogWriter.speculate):
one round trip per transaction, the commit checking under the lock that the log is where the
writer left it. These tests check the bet pays when it should, and that every way of losing it
ends in the decision the pessimistic path would have taken."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger
from ledger.audit.verify import verify_chain
from ledger.domain.asset_pool import AssetPool
from ledger.outcomes import Status
from tests.support import setup_capped_asset, transfer_in


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[Ledger]:
    with Ledger(postgres_url) as opened:
        setup_capped_asset(opened, upper_limit="1000", fixed_quota_usdt="1000000")
        yield opened


def round_trips(ledger: Ledger) -> list[str]:
    """Every query the write path sends from now on (the first word of each)."""
    sent: list[str] = []
    writer: Any = ledger._writer
    run = writer._run

    def counting(query: str) -> Any:
        sent.append(query.split()[0])
        return run(query)

    writer._run = counting
    return sent


def pool_total(ledger: Ledger) -> Decimal:
    total: Decimal = ledger.get_aggregate(AssetPool, AssetPool.create_id("ABC")).platform_total
    return total


def test_a_writer_alone_commits_each_command_in_one_round_trip(ledger: Ledger) -> None:
    """Goal: with nobody else writing, each command costs one round trip (lock, check, events,
    links, commit) instead of two, and the log is exactly what the pessimistic path writes:
    contiguous positions, an intact chain, the pool equal to what was accepted."""
    sent = round_trips(ledger)
    before = ledger.write_statistics.speculated
    for number in range(20):
        assert transfer_in(ledger, f"alone{number}", "10").is_accepted
    assert ledger.write_statistics.speculated - before == 20
    assert sent == ["BEGIN;"] * 20  # the commit query opens with the lock
    assert ledger.write_statistics.speculation_misses == 0
    assert pool_total(ledger) == Decimal(200)
    report = verify_chain(ledger)
    assert report.is_intact
    assert report.events_checked == ledger.recorder.max_notification_id()  # no gaps


def test_a_speculation_that_finds_the_log_moved_is_decided_on_the_new_total(
    ledger: Ledger, postgres_url: str
) -> None:
    """Goal: the cap is never decided on a stale total. U = 1000, T = 600 (band A: q_max 200).
    Another writer then takes T to 1000 (band D: blocked). Our writer, which last saw 600,
    must refuse 100: decided on the old total it would have been accepted.

    Method: our writer speculates (nobody else wrote since its last commit, as far as it knows);
    the commit's check finds the log moved, nothing is written, and the command is decided
    again under the lock."""
    assert transfer_in(ledger, "first", "600").is_accepted
    with Ledger(postgres_url) as other:
        assert transfer_in(other, "other1", "200").is_accepted
        assert transfer_in(other, "other2", "200").is_accepted
    sent = round_trips(ledger)
    late = transfer_in(ledger, "late", "100")
    assert late.status is Status.REJECTED, late
    assert (late.context["total"], late.context["band"]) == ("1000", "D")
    assert ledger.write_statistics.speculation_misses == 1
    assert sent == ["BEGIN;", "BEGIN;", "INSERT"]  # missed, read under the lock, committed
    assert pool_total(ledger) == Decimal(1000)
    assert verify_chain(ledger).is_intact
    # The bet is off while others were seen writing: the next command reads under the lock
    # (two round trips), and finding the log quiet since its last look, bets again after it.
    speculated = ledger.write_statistics.speculated
    assert transfer_in(ledger, "next", "10").status is Status.REJECTED
    assert transfer_in(ledger, "after", "10").status is Status.REJECTED
    assert ledger.write_statistics.speculated == speculated + 1
    assert sent[-3:] == ["BEGIN;", "INSERT", "BEGIN;"]


def test_a_retry_assumed_new_is_answered_as_the_duplicate_it_is(ledger: Ledger) -> None:
    """Goal: the speculation assumes a request id it does not hold is new; a retry of a
    recorded request proves it wrong at the commit (its first event exists), nothing is
    written, and the retry gets its first outcome. Then the writer reads under the lock for a
    while (a cold cache would keep guessing wrong)."""
    first = transfer_in(ledger, "u1", "10", request_id="same")
    events = ledger.recorder.max_notification_id()
    again = transfer_in(ledger, "u1", "10", request_id="same")
    assert again.duplicate and again.events == first.events
    assert ledger.recorder.max_notification_id() == events
    assert ledger.write_statistics.speculation_misses == 1
    speculated = ledger.write_statistics.speculated
    assert transfer_in(ledger, "u2", "10").is_accepted
    assert ledger.write_statistics.speculated == speculated
    assert pool_total(ledger) == Decimal(20)
