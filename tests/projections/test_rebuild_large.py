"""A rebuild of a store of 100,000 generated events completes and equals the read models caught
up incrementally, on both backends.

The history comes from `ledger.simulate.bulk` (accounts opened, transfers, borrows, hourly
interest, repays, trades and price marks, written through the domain aggregates). The read models
are caught up after each quarter of it, while it is written, so later quarters update rows the
earlier ones created. Then every row of every read model table is dumped, everything is rebuilt
from the first event, and the dump must be identical; the read side must also agree with the
write side: a sample of accounts equals `ledger.queries.account_view`, the capped asset's total
is its AssetPool's T (and the sum of the accounts' holdings), the band timeline ends at the
current band, and the trial balance is zero.

The generation and rebuild rates are printed (run with -s to see them), never asserted.
"""

import time
from decimal import Decimal
from typing import Any

from ledger import Ledger
from ledger.domain.asset_pool import AssetPool
from ledger.money import format_plain
from ledger.queries import account_view
from ledger.simulate.bulk import CAPPED, generate_bulk_history
from projections.queries import ReadSide
from projections.runner import MODELS, ReadModels
from tests.support import command, run

EVENTS = 100_000
USERS = 2_000
CHUNKS = 4  # incremental catch-ups while the history is written (the last one after it)
SAMPLE = 50  # accounts compared with the write side, spread evenly over the sorted ids

Dump = dict[str, list[tuple[Any, ...]]]


def dump(read_models: ReadModels) -> Dump:
    """Every row of every read model table, in primary key order, and the models' positions."""
    rows: Dump = {"positions": sorted(read_models.positions().items())}
    with read_models.store.transaction(commit=False) as db:
        for model in MODELS:
            for table in model.tables:
                rows[table.name] = db.query(
                    f"SELECT {', '.join(table.column_names)} FROM {{{table.name}}} "
                    f"ORDER BY {', '.join(table.primary_key)}"
                )
    return rows


def differences(before: Dump, after: Dump) -> list[str]:
    """Per table that differs: the row counts and the first row that differs."""
    found = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, []), after.get(name, [])
        if old != new:
            pairs = enumerate(zip(old, new, strict=False))  # the shorter one's rows
            first = next((i for i, (a, b) in pairs if a != b), None)
            shown = "" if first is None else f": row {first} {old[first]} != {new[first]}"
            found.append(f"{name}: {len(old)} rows incrementally, {len(new)} rebuilt{shown}")
    return found


def test_rebuild_of_100k_generated_events_equals_the_incremental_read_models(
    database_url: str,
) -> None:
    timings: dict[str, float] = {"catch_up": 0.0}  # seconds
    with Ledger(database_url) as ledger, ReadModels(ledger) as read_models:
        checkpoints = [EVENTS * n // CHUNKS for n in range(1, CHUNKS)]

        def catch_up_part_way(written: int) -> None:
            if checkpoints and written >= checkpoints[0]:
                checkpoints.pop(0)
                started = time.perf_counter()
                read_models.catch_up()
                timings["catch_up"] += time.perf_counter() - started

        summary = generate_bulk_history(
            ledger, events=EVENTS, users=USERS, seed=7, after_save=catch_up_part_way
        )
        assert not checkpoints, "every quarter was caught up before the end"
        generation = summary.elapsed_seconds - timings["catch_up"]  # without the catch-ups
        started = time.perf_counter()
        read_models.catch_up()
        timings["catch_up"] += time.perf_counter() - started
        head = read_models.head()
        assert summary.events >= EVENTS and head == summary.events + summary.setup_events
        assert read_models.positions() == {name: head for name in read_models.models}
        incremental = dump(read_models)

        started = time.perf_counter()
        assert read_models.rebuild() == head
        timings["rebuild"] = time.perf_counter() - started
        assert differences(incremental, dump(read_models)) == []

        read_side = ReadSide(read_models)
        views = read_side.accounts()
        assert len(views) == summary.accounts
        for view in views[:: max(1, len(views) // SAMPLE)]:
            assert view == account_view(ledger, view.account), view.account

        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(CAPPED))
        held = sum(
            (Decimal(v.holdings.get(CAPPED, "0")) for v in views if v.kind != "isolated"),
            Decimal(0),
        )
        assert held == pool.platform_total > 0
        capped = {a.asset: a for a in read_side.assets()}[CAPPED]
        assert capped.capped and capped.total == format_plain(pool.platform_total)
        bands = read_side.bands(asset=CAPPED)
        assert len(bands) >= 2, "the deposits filled the cap and trades moved T across a band"
        assert bands[-1].band_after == capped.band
        assert [line for line in read_side.trial_balance() if not line.is_balanced] == []

        # The command path carries on from the generated store: the cap is decided on its T.
        user = next(v.user for v in views if v.kind == "cross")
        later = summary.last_at.isoformat()
        outcome = run(ledger, command("transfer_in", user=user, account="cross", asset=CAPPED,
                                      quantity="1", effective_at=later))  # fmt: skip
        assert outcome.context["total"] == format_plain(pool.platform_total), outcome
        assert outcome.status in ("accepted", "rejected"), outcome

    print(
        f"\n{database_url.split(':')[0]}: {summary.events} events, {summary.accounts} accounts; "
        f"generated in {generation:.1f} s ({summary.events / generation:,.0f} events/s); "
        f"caught up in {CHUNKS} steps in {timings['catch_up']:.1f} s; "
        f"rebuilt in {timings['rebuild']:.1f} s ({head / timings['rebuild']:,.0f} events/s)"
    )
