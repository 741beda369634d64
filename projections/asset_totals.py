"""Per-asset totals: held in capped accounts (cross + portfolio) and in isolated accounts.

The write side keeps T exactly for cap-eligible assets (AssetPool); this read model gives every
asset's totals, including the isolated total no decision needs.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from ledger.domain.account import AccountKind, MarginAccount
from ledger.params import QUOTE_ASSET

TOPICS = (
    get_topic(MarginAccount.Registered),
    get_topic(MarginAccount.TransferredIn),
    get_topic(MarginAccount.TransferredOut),
    get_topic(MarginAccount.Borrowed),
    get_topic(MarginAccount.Repaid),
    get_topic(MarginAccount.TradeSettled),
    get_topic(MarginAccount.ToppedUp),
    get_topic(MarginAccount.Liquidated),
)


def holding_changes(event: Any) -> list[tuple[str, Decimal]]:
    """How an account event changes gross holdings, per asset."""
    if isinstance(event, MarginAccount.Liquidated):
        sold = [(asset, -quantity) for asset, quantity in event.sold.items()]
        return [*sold, (QUOTE_ASSET, event.remainder_usdt)]
    if isinstance(
        event, MarginAccount.TransferredIn | MarginAccount.Borrowed | MarginAccount.ToppedUp
    ):
        return [(event.asset, event.quantity)]
    if isinstance(event, MarginAccount.TransferredOut | MarginAccount.Repaid):
        return [(event.asset, -event.quantity)]
    if isinstance(event, MarginAccount.TradeSettled):
        return [
            (event.sell_asset, -event.sell_quantity),
            (event.buy_asset, event.buy_quantity),
            (event.fee_asset, -event.fee_quantity),
        ]
    raise AssertionError(f"not a holding change: {type(event).__name__}")


def deltas_of(
    events: Iterable[Any], kind_of: dict[str, str], lookup_kind: Any
) -> tuple[dict[str, dict[str, Decimal]], dict[str, str]]:
    """Holding changes per asset and bucket, and the account kinds first seen in `events`."""
    new_kinds: dict[str, str] = {}
    deltas: dict[str, dict[str, Decimal]] = defaultdict(
        lambda: {"capped_total": Decimal(0), "isolated_total": Decimal(0)}
    )
    for event in events:
        account_key = str(event.originator_id)
        if isinstance(event, MarginAccount.Registered):
            new_kinds[account_key] = kind_of[account_key] = event.kind.value
            continue
        kind = kind_of.get(account_key) or lookup_kind(account_key)
        assert kind is not None, f"transfer on unregistered account {account_key}"
        kind_of[account_key] = kind
        bucket = "isolated_total" if kind == AccountKind.ISOLATED else "capped_total"
        for asset, change in holding_changes(event):
            deltas[asset][bucket] += change
    return dict(deltas), new_kinds


class AssetTotalsView:
    """What both backends' views offer the projection and the queries."""

    def apply(self, events: Sequence[Any], tracking: Tracking) -> None:
        raise NotImplementedError

    def totals(self) -> dict[str, dict[str, Decimal]]:
        raise NotImplementedError


class SQLiteAssetTotalsView(SQLiteTrackingRecorder, AssetTotalsView):
    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS asset_totals (asset TEXT PRIMARY KEY, "
            "capped_total TEXT NOT NULL, isolated_total TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS asset_totals_account_kinds ("
            "account_uuid TEXT PRIMARY KEY, kind TEXT NOT NULL)",
        ]

    def apply(self, events: Sequence[Any], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:

            def lookup_kind(account_key: str) -> str | None:
                c.execute(
                    "SELECT kind FROM asset_totals_account_kinds WHERE account_uuid = ?",
                    (account_key,),
                )
                row = c.fetchone()
                return None if row is None else str(row[0])

            deltas, new_kinds = deltas_of(events, {}, lookup_kind)
            for account_key, kind in new_kinds.items():
                c.execute(
                    "INSERT INTO asset_totals_account_kinds VALUES (?, ?)", (account_key, kind)
                )
            for asset, delta in deltas.items():
                c.execute(
                    "SELECT capped_total, isolated_total FROM asset_totals WHERE asset = ?",
                    (asset,),
                )
                row = c.fetchone()
                capped = Decimal(row[0] if row else 0) + delta["capped_total"]
                isolated = Decimal(row[1] if row else 0) + delta["isolated_total"]
                assert capped >= 0 and isolated >= 0, (asset, capped, isolated)
                c.execute(
                    "INSERT INTO asset_totals VALUES (?, ?, ?) ON CONFLICT (asset) DO UPDATE "
                    "SET capped_total = excluded.capped_total, "
                    "isolated_total = excluded.isolated_total",
                    (asset, str(capped), str(isolated)),
                )
            self._insert_tracking(c, tracking)

    def totals(self) -> dict[str, dict[str, Decimal]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT asset, capped_total, isolated_total FROM asset_totals")
            return {
                row[0]: {"capped_total": Decimal(row[1]), "isolated_total": Decimal(row[2])}
                for row in c.fetchall()
            }


class PostgresAssetTotalsView(PostgresTrackingRecorder, AssetTotalsView):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.totals_table = SQL("{0}.{1}").format(schema, Identifier("asset_totals"))
        self.kinds_table = SQL("{0}.{1}").format(schema, Identifier("asset_totals_account_kinds"))
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (asset text PRIMARY KEY, "
                    "capped_total numeric NOT NULL, isolated_total numeric NOT NULL)"
                ).format(self.totals_table),
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (account_uuid text PRIMARY KEY, "
                    "kind text NOT NULL)"
                ).format(self.kinds_table),
            ]
        )

    def apply(self, events: Sequence[Any], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:

            def lookup_kind(account_key: str) -> str | None:
                curs.execute(
                    SQL("SELECT kind FROM {0} WHERE account_uuid = %s").format(self.kinds_table),
                    (account_key,),
                )
                row = curs.fetchone()
                return None if row is None else str(row["kind"])

            deltas, new_kinds = deltas_of(events, {}, lookup_kind)
            for account_key, kind in new_kinds.items():
                curs.execute(
                    SQL("INSERT INTO {0} VALUES (%s, %s)").format(self.kinds_table),
                    (account_key, kind),
                )
            for asset, delta in deltas.items():
                curs.execute(
                    SQL(
                        "INSERT INTO {0} AS t VALUES (%s, %s, %s) ON CONFLICT (asset) DO UPDATE "
                        "SET capped_total = t.capped_total + EXCLUDED.capped_total, "
                        "isolated_total = t.isolated_total + EXCLUDED.isolated_total "
                        "RETURNING capped_total, isolated_total"
                    ).format(self.totals_table),
                    (asset, delta["capped_total"], delta["isolated_total"]),
                )
                row = curs.fetchone()
                assert row is not None
                assert row["capped_total"] >= 0 and row["isolated_total"] >= 0, (asset, row)
            self._insert_tracking(curs, tracking)

    def totals(self) -> dict[str, dict[str, Decimal]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT asset, capped_total, isolated_total FROM {0}").format(self.totals_table)
            )
            return {
                row["asset"]: {
                    "capped_total": row["capped_total"],
                    "isolated_total": row["isolated_total"],
                }
                for row in curs.fetchall()
            }


class AssetTotalsProjection(Projection[AssetTotalsView]):  # type: ignore[type-var]
    name = "asset_totals"
    topics = TOPICS

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply([domain_event], tracking)

    def process_batch(self, domain_events: Sequence[Any], tracking: Tracking) -> None:
        """Many events, one transaction: the view's rows and the tracking of the last event."""
        self.view.apply(domain_events, tracking)
