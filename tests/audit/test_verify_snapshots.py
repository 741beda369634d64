"""`ledger verify --snapshots`: a snapshot altered in the database is found (it is outside the
hash chain), an untouched one is right; both backends."""

import json
import sqlite3
from typing import Any

import psycopg
from psycopg import sql

from ledger import Ledger, limits
from ledger.audit.snapshots import verify_snapshots
from ledger.domain.account import MarginAccount
from ledger.persistence import env_for_url
from tests.cli.cli_support import EXIT_OK, invoke
from tests.conftest import POSTGRES_URL
from tests.support import at, setup_capped_asset, transfer_in

EXIT_WRONG = 1


def build(url: str) -> str:
    """u1's account past one snapshot interval (its snapshot at version 100 holds 98 ABC)."""
    with Ledger(url) as ledger:
        setup_capped_asset(ledger)
        for minute in range(limits.SNAPSHOT_INTERVAL + 2):
            assert transfer_in(ledger, "u1", "1", effective_at=at(minute)).is_accepted
    return str(MarginAccount.create_id("u1", "cross"))


def alter_snapshot_holding(url: str, account_uuid: str, holding: str) -> None:
    env = env_for_url(url)
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        with sqlite3.connect(env["SQLITE_DBNAME"]) as connection:
            rows = connection.execute(
                "SELECT originator_version, state FROM stored_snapshots WHERE originator_id = ?",
                (account_uuid.replace("-", ""),),
            ).fetchall()
            assert rows, "no snapshot of the account"
            version, state = rows[-1]
            connection.execute(
                "UPDATE stored_snapshots SET state = ? WHERE originator_id = ? AND "
                "originator_version = ?",
                (_altered(state, holding), account_uuid.replace("-", ""), version),
            )
        return
    table = sql.Identifier(env["POSTGRES_SCHEMA"], "ledger_snapshots")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        rows = connection.execute(
            sql.SQL("SELECT originator_version, state FROM {} WHERE originator_id = %s").format(
                table
            ),
            (account_uuid,),
        ).fetchall()
        assert rows, "no snapshot of the account"
        version, state = rows[-1]
        connection.execute(
            sql.SQL(
                "UPDATE {} SET state = %s WHERE originator_id = %s AND originator_version = %s"
            ).format(table),
            (_altered(bytes(state), holding), account_uuid, version),
        )


def _altered(state: bytes, holding: str) -> bytes:
    document: dict[str, Any] = json.loads(state)
    holdings = document["state"]["holdings"]
    # Stored as [key, value] pairs; version 100 follows Registered and Opened: 98 transfers.
    assert holdings == [["ABC", "98"]], holdings
    holdings[0][1] = holding
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_untouched_snapshots_are_right(database_url: str) -> None:
    build(database_url)
    with Ledger(database_url) as ledger:
        report = verify_snapshots(ledger)
    assert report.is_right, report
    assert report.snapshots_checked >= 1
    result = invoke("verify", "--db", database_url, "--snapshots", "--json")
    assert result.exit_code == EXIT_OK, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"chain", "snapshots"}
    assert document["snapshots"]["is_right"] is True


def test_an_altered_snapshot_is_found_though_the_chain_is_intact(database_url: str) -> None:
    account_uuid = build(database_url)
    alter_snapshot_holding(database_url, account_uuid, "1000000")
    with Ledger(database_url) as ledger:
        report = verify_snapshots(ledger)
    assert not report.is_right
    assert (report.aggregate_id, report.version) == (account_uuid, limits.SNAPSHOT_INTERVAL)
    assert report.problem is not None and "holdings" in report.problem

    result = invoke("verify", "--db", database_url, "--snapshots", "--json")
    assert result.exit_code == EXIT_WRONG
    document = json.loads(result.stdout)
    assert document["chain"]["is_intact"] is True  # the log itself was not touched
    assert document["snapshots"]["aggregate_id"] == account_uuid
    table = invoke("verify", "--db", database_url, "--snapshots")
    assert table.exit_code == EXIT_WRONG
    assert "WRONG" in table.stdout and account_uuid in table.stdout
