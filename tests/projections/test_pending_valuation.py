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
