"""Helpers that damage read models the way real failures would, for the reconcile tests."""

from ledger import Ledger
from ledger.audit.reconcile import scratch_env
from ledger.domain.account import MarginAccount
from projections.runner import ReadModels

ACCOUNT_ROWS = ("accounts", "account_balances")  # the accounts model's rows of one account


def account_positions(ledger: Ledger, account: str) -> list[int]:
    """Every position of the account's events, read off the log itself."""
    user, name = account.split(":", 1)
    originator = MarginAccount.create_id(user, name)
    notifications = ledger.recorder.select_notifications(
        start=0, limit=10_000, inclusive_of_start=False
    )
    return [
        n.id for n in notifications if ledger.mapper.to_domain_event(n).originator_id == originator
    ]


def put_back(ledger: Ledger, account: str, until: int) -> None:
    """The account's rows as a projection run that stopped applying its events after `until`
    would have left them: copied from a second read-model store projected only that far."""
    with scratch_env(ledger) as env, ReadModels(ledger, store_env=env) as partial:
        partial.catch_up(until=until)
        with partial.store.transaction(commit=False) as db:
            rows = {
                table: db.query(f"SELECT * FROM {{{table}}} WHERE account_id = ?", (account,))
                for table in ACCOUNT_ROWS
            }
    with ReadModels(ledger) as read_models, read_models.store.transaction() as db:
        for table, copied in rows.items():
            db.execute(f"DELETE FROM {{{table}}} WHERE account_id = ?", (account,))
            for row in copied:
                db.execute(f"INSERT INTO {{{table}}} VALUES ({', '.join('?' for _ in row)})", row)
