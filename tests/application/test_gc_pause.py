"""Python's cyclic collector is paused while a write transaction holds the log's lock
(ledger/gc_pause.py): a full collection over thousands of cached aggregates must not run while
every other writer waits. It is on again after every transaction, however it ended, and a caller
that turned it off keeps it off."""

import gc
from collections.abc import Iterator

import pytest

from ledger import Ledger
from ledger.commands import parse_command
from ledger.write_transaction import WriteTransaction


@pytest.fixture
def collector_on() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def _listing(request_id: str) -> dict[str, object]:
    return {"type": "list_asset", "request_id": request_id, "asset": "USDT", "collateral_rank": 1}


def test_paused_while_deciding_and_on_again_after(ledger: Ledger, collector_on: None) -> None:
    seen = ledger.in_write_transaction(lambda transaction: gc.isenabled())
    assert seen is False
    assert gc.isenabled()
    outcome = ledger.execute(parse_command(_listing("gc-1")))
    assert outcome.is_accepted and gc.isenabled()


def test_on_again_after_a_transaction_that_failed(ledger: Ledger, collector_on: None) -> None:
    def failing(transaction: WriteTransaction) -> None:
        assert not gc.isenabled()
        raise RuntimeError("a handler bug")

    with pytest.raises(RuntimeError, match="a handler bug"):
        ledger.in_write_transaction(failing)
    assert gc.isenabled()
    assert ledger.execute(parse_command(_listing("gc-2"))).is_accepted  # the ledger goes on


def test_a_collector_the_caller_turned_off_stays_off(ledger: Ledger, collector_on: None) -> None:
    gc.disable()
    assert ledger.execute(parse_command(_listing("gc-3"))).is_accepted
    assert not gc.isenabled()
