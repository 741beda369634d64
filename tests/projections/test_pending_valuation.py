"""A query never answers a valuation older than the balances and prices beside it: between the
runner's commit of a batch and its finishing step (which values the accounts the batch moved,
in chunks of their own), a row waits with `is_valuation_stale = 1`; a reader that does not catch
up itself (a follower runs elsewhere) values such a row on the spot. Seen in CI: a follower's
positions were at the head while the account still showed the valuation of before."""

from ledger import Ledger
from ledger.queries import account_view
from projections.queries import ReadSide
from projections.runner import ReadModels
from tests.support import command, run, setup_capped_asset, transfer_in


def test_a_row_waiting_for_its_valuation_is_valued_when_read(ledger: Ledger) -> None:
    setup_capped_asset(ledger, price="2")
    assert transfer_in(ledger, "u1", "100").is_accepted
    assert run(ledger, command("mark_prices", prices={"ABC": "3"})).is_accepted
    with ReadModels(ledger) as read_models:
        read_models.catch_up()
        with read_models.store.transaction() as db:  # the window before the finishing step
            db.execute(
                "UPDATE {accounts} SET is_valuation_stale = 1, total_value_usdt = NULL, "
                "collateral_value_usdt = NULL, debt_usdt = NULL WHERE account_id = 'u1:cross'"
            )
        reader = ReadSide(read_models, catch_up=False)
        view = reader.account("u1:cross")
        listed = {v.account: v for v in reader.accounts()}["u1:cross"]

    expected = account_view(ledger, "u1:cross")
    assert expected.total_value_usdt == "300"
    assert view == expected
    assert listed == expected


def test_a_job_leaves_the_valuations_it_does_not_read_to_the_next_reader(ledger: Ledger) -> None:
    """A job catches the accounts model up for its debtors only (`finish=False`): the accounts
    a price mark moved stay marked stale, a reader that does not catch up still answers their
    current valuation, and the next catch-up that finishes values them."""
    setup_capped_asset(ledger, price="2")
    assert transfer_in(ledger, "u1", "100").is_accepted
    with ReadModels(ledger) as read_models:
        read_models.catch_up()
    assert run(ledger, command("mark_prices", prices={"ABC": "3"})).is_accepted
    assert run(ledger, command("check_margins")).is_accepted  # catches the model up, no values

    def stale_accounts(read_models: ReadModels) -> list[str]:
        with read_models.store.transaction(commit=False) as db:
            return [
                r[0]
                for r in db.query("SELECT account_id FROM {accounts} WHERE is_valuation_stale = 1")
            ]

    expected = account_view(ledger, "u1:cross")
    assert expected.total_value_usdt == "300"
    with ReadModels(ledger) as read_models:
        assert stale_accounts(read_models) == ["u1:cross"]
        assert ReadSide(read_models, catch_up=False).account("u1:cross") == expected
        read_models.catch_up()
        assert stale_accounts(read_models) == []
        assert ReadSide(read_models, catch_up=False).account("u1:cross") == expected
