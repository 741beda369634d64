"""The simulator's crash (ledger/simulate: a capped asset falls for a few hours,
the risk sweep calls margins and liquidates), on both backends: for every capped asset and a
window around the crash, the band transitions are the band timeline read model's, the
liquidations are every MarginAccount.Liquidated of the window that names the asset, both in log
order, and every line lies inside the window; `whatif` with no override decides every request of the
window as recorded, and the real log is untouched."""

from datetime import UTC, datetime, timedelta

from ledger import Ledger
from ledger.audit.export import mentions_asset
from ledger.commands import parse_command
from ledger.domain.account import MarginAccount
from ledger.incident.overrides import parse_overrides
from ledger.incident.timeline import TimelineKind, timeline
from ledger.incident.whatif import what_if
from ledger.log import log_events
from ledger.outcomes import Outcome
from ledger.simulate.simulation import generate
from projections.queries import ReadSide
from projections.runner import ReadModels

START = datetime(2026, 3, 2, tzinfo=UTC)
HOURS = 12


SINCE, UNTIL = START + timedelta(hours=HOURS // 2 - 1), START + timedelta(hours=HOURS - 2)


def simulate(ledger: Ledger) -> None:
    commands = [parse_command(data) for data in generate(5, accounts=40, hours=HOURS, start=START)]
    assert all(isinstance(r, Outcome) for r in ledger.execute_batch(commands))


def test_the_simulated_crash_tells_every_band_transition_and_liquidation(ledger: Ledger) -> None:
    simulate(ledger)
    since, until = SINCE, UNTIL
    liquidated = [
        (position, event)
        for position, event in log_events(ledger)
        if isinstance(event, MarginAccount.Liquidated) and since <= event.effective_at <= until
    ]
    assert liquidated, "the simulator's crash liquidates someone inside the window"
    with ReadModels(ledger) as read_models:
        reader = ReadSide(read_models)
        capped = [a.asset for a in reader.assets() if a.capped]
        bands = {a: reader.bands(asset=a, since=since, until=until) for a in capped}
    assert any(bands.values()), "some band transition inside the window"

    for asset in capped:
        entries = list(timeline(ledger, asset=asset, since=since, until=until))
        assert [e.position for e in entries] == sorted(e.position for e in entries)
        assert all(since <= e.effective_at <= until for e in entries), asset
        transitions = [e for e in entries if e.kind is TimelineKind.BAND_TRANSITION]
        assert [(e.position, e.figures["band_after"]) for e in transitions] == [
            (change.position, change.band_after) for change in bands[asset]
        ], asset
        liquidations = [e for e in entries if e.kind is TimelineKind.LIQUIDATION]
        assert [e.event_id for e in liquidations] == [
            event.event_id for _position, event in liquidated if mentions_asset(event, asset)
        ], asset


def test_whatif_without_overrides_decides_the_simulated_crash_as_recorded(ledger: Ledger) -> None:
    simulate(ledger)
    head = ledger.recorder.max_notification_id()

    report = what_if(ledger, since=SINCE, until=UNTIL, overrides=parse_overrides([]))

    assert report.requests_replayed >= 10 and report.prefix_steps > 100
    assert report.prefix_mismatches == 0
    assert report.differences == []
    for figures in report.totals.assets.values():
        assert figures.platform_total.recorded == figures.platform_total.counterfactual
    assert ledger.recorder.max_notification_id() == head
