"""The journal: double-entry postings derived from each event, per asset in token units, and a
trial balance per asset (debits equal credits).

Books (the balance of a book is its debits minus its credits):
  <account>/holdings          what the account holds (debit balance)
  <account>/loan              borrowed principal owed (credit balance)
  <account>/interest          interest owed (credit balance)
  <account>/interest_expense  interest charged to the account over time
  <user>/spot                 the user's spot wallet, counterpart of transfers and top-ups
  platform/exchange           counterpart of settled trades
  platform/fees               trading fees collected
  platform/liquidation        sales and buy-backs of liquidations; keeps uncovered deficits
  platform/insurance_fund     the insurance fund (USDT, debit balance)
  platform/treasury           where administrators fund the insurance fund from
"""

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ledger.domain.account import MarginAccount
from ledger.domain.insurance_fund import InsuranceFund
from ledger.money import format_plain
from ledger.params import QUOTE_ASSET
from projections.sql import Db, Table, dec, time_key
from projections.store import Positioned, ReadModel

ENTRIES = Table(
    name="journal_entries",
    columns=(
        ("position", "int"),
        ("line", "int"),
        ("event_id", "text"),
        ("effective_at", "text"),
        ("book", "text"),
        ("asset", "text"),
        ("debit", "dec"),
        ("credit", "dec"),
    ),
    primary_key=("position", "line"),
    indexes=(("book", "asset"),),
)
BALANCES = Table(
    name="journal_balances",
    columns=(("book", "text"), ("asset", "text"), ("debit_total", "dec"), ("credit_total", "dec")),
    primary_key=("book", "asset"),
)
ACCOUNT_NAMES = Table(
    name="journal_account_names",
    columns=(("originator_id", "text"), ("account_id", "text"), ("user_id", "text")),
    primary_key=("originator_id",),
)

EXCHANGE = "platform/exchange"
FEES = "platform/fees"
LIQUIDATION = "platform/liquidation"
INSURANCE_FUND = "platform/insurance_fund"
TREASURY = "platform/treasury"

Posting = tuple[str, str, Decimal, Decimal]  # (book, asset, debit, credit)


class TrialBalanceLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    asset: str
    debit_total: str
    credit_total: str
    difference: str  # debits - credits: "0" when the books balance
    is_balanced: bool


class Journal(ReadModel):
    name = "journal"
    description = "double-entry postings per event and asset; the trial balance"
    tables: ClassVar[tuple[Table, ...]] = (ENTRIES, BALANCES, ACCOUNT_NAMES)

    def apply(self, db: Db, events: Sequence[Positioned]) -> None:
        names = _load_names(db, events)
        entries = []
        totals: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for position, event in events:
            if isinstance(event, MarginAccount.Registered):
                account_id = f"{event.user}:{event.account}"
                names[str(event.originator_id)] = (account_id, event.user)
                db.execute(
                    "INSERT INTO {journal_account_names} VALUES (?, ?, ?)",
                    (str(event.originator_id), account_id, event.user),
                )
            postings = postings_of(event, names)
            for line, (book, asset, debit, credit) in enumerate(postings, start=1):
                entries.append(
                    (
                        position,
                        line,
                        event.event_id,
                        time_key(event.effective_at),
                        book,
                        asset,
                        db.dec(debit),
                        db.dec(credit),
                    )
                )
                totals[(book, asset)][0] += debit
                totals[(book, asset)][1] += credit
        db.upsert(ENTRIES, entries, update=())
        _add_to_balances(db, totals)


def postings_of(event: Any, names: dict[str, tuple[str, str]]) -> list[Posting]:
    """The balanced postings of one event (none for refusals, settings and prices)."""
    if isinstance(event, InsuranceFund.Funded):
        source = LIQUIDATION if event.source == "liquidation_fee" else TREASURY
        return _move(QUOTE_ASSET, event.amount_usdt, debit=INSURANCE_FUND, credit=source)
    if isinstance(event, InsuranceFund.DeficitCovered):
        return _move(QUOTE_ASSET, event.covered_usdt, debit=LIQUIDATION, credit=INSURANCE_FUND)
    if not isinstance(event, MarginAccount.Event):
        return []
    account_id, user = names[str(event.originator_id)]
    holdings, loan, interest = (f"{account_id}/{b}" for b in ("holdings", "loan", "interest"))
    spot = f"{user}/spot"
    match event:
        case MarginAccount.TransferredIn() | MarginAccount.ToppedUp():
            return _move(event.asset, event.quantity, debit=holdings, credit=spot)
        case MarginAccount.TransferredOut():
            return _move(event.asset, event.quantity, debit=spot, credit=holdings)
        case MarginAccount.Borrowed():
            return [
                *_move(event.asset, event.quantity, debit=holdings, credit=loan),
                *_move(
                    event.asset,
                    event.first_hour_interest,
                    debit=f"{account_id}/interest_expense",
                    credit=interest,
                ),
            ]
        case MarginAccount.InterestCharged():
            return _move(
                event.asset, event.quantity, debit=f"{account_id}/interest_expense", credit=interest
            )
        case MarginAccount.Repaid():
            return [
                *_move(event.asset, event.interest_paid, debit=interest, credit=holdings),
                *_move(event.asset, event.principal_paid, debit=loan, credit=holdings),
            ]
        case MarginAccount.TradeSettled():
            return [
                *_move(event.sell_asset, event.sell_quantity, debit=EXCHANGE, credit=holdings),
                *_move(event.buy_asset, event.buy_quantity, debit=holdings, credit=EXCHANGE),
                *_move(event.fee_asset, event.fee_quantity, debit=FEES, credit=holdings),
            ]
        case MarginAccount.Liquidated():
            postings = []
            for asset, quantity in sorted(event.sold.items()):
                postings += _move(asset, quantity, debit=LIQUIDATION, credit=holdings)
            for asset, quantity in sorted(event.repaid_principal.items()):
                postings += _move(asset, quantity, debit=loan, credit=LIQUIDATION)
            for asset, quantity in sorted(event.repaid_interest.items()):
                postings += _move(asset, quantity, debit=interest, credit=LIQUIDATION)
            postings += _move(QUOTE_ASSET, event.remainder_usdt, debit=holdings, credit=LIQUIDATION)
            return postings
    return []


def _move(asset: str, quantity: Decimal, *, debit: str, credit: str) -> list[Posting]:
    assert quantity >= 0, quantity
    if not quantity:
        return []
    return [(debit, asset, quantity, Decimal(0)), (credit, asset, Decimal(0), quantity)]


def _load_names(db: Db, events: Sequence[Positioned]) -> dict[str, tuple[str, str]]:
    keys = {str(e.originator_id) for _p, e in events if isinstance(e, MarginAccount.Event)}
    return {
        originator_id: (account_id, user)
        for originator_id, account_id, user in db.query_in(
            "SELECT originator_id, account_id, user_id FROM {journal_account_names} "
            "WHERE originator_id IN ({keys})",
            keys,
        )
    }


def _add_to_balances(db: Db, totals: dict[tuple[str, str], list[Decimal]]) -> None:
    if not totals:
        return
    current: dict[tuple[str, str], list[Decimal]] = {}
    for book, asset, debit, credit in db.query_in(
        "SELECT book, asset, debit_total, credit_total FROM {journal_balances} "
        "WHERE book IN ({keys})",
        {book for book, _asset in totals},
    ):
        current[(book, asset)] = [dec(debit), dec(credit)]
    db.upsert(
        BALANCES,
        (
            (
                book,
                asset,
                db.dec(current.get((book, asset), [Decimal(0)] * 2)[0] + debit),
                db.dec(current.get((book, asset), [Decimal(0)] * 2)[1] + credit),
            )
            for (book, asset), (debit, credit) in sorted(totals.items())
        ),
    )


def book_balances(db: Db, *, book_prefix: str | None = None) -> dict[tuple[str, str], Decimal]:
    """(book, asset) -> debits minus credits, optionally for the books under a prefix."""
    rows = db.query("SELECT book, asset, debit_total, credit_total FROM {journal_balances}")
    return {
        (book, asset): dec(debit) - dec(credit)
        for book, asset, debit, credit in rows
        if book_prefix is None or book.startswith(book_prefix)
    }


def trial_balance(db: Db) -> list[TrialBalanceLine]:
    per_asset: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for _book, asset, debit, credit in db.query(
        "SELECT book, asset, debit_total, credit_total FROM {journal_balances}"
    ):
        per_asset[asset][0] += dec(debit)
        per_asset[asset][1] += dec(credit)
    return [
        TrialBalanceLine(
            asset=asset,
            debit_total=format_plain(debit),
            credit_total=format_plain(credit),
            difference=format_plain(debit - credit),
            is_balanced=debit == credit,
        )
        for asset, (debit, credit) in sorted(per_asset.items())
    ]
