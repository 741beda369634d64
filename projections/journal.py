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
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ledger.domain.account import MarginAccount
from ledger.domain.insurance_fund import InsuranceFund
from ledger.money import format_plain
from ledger.params import QUOTE_ASSET
from projections.events import Record, Roles, plain_of
from projections.sql import Db, Table, dec
from projections.store import Kept, ReadModel

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


class TrialBalanceLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    asset: str
    debit_total: str
    credit_total: str
    difference: str  # debits - credits: "0" when the books balance
    is_balanced: bool


ZERO = Decimal(0)
# An account's books: (account id, user, holdings, loan, interest, interest expense, spot)
Books = tuple[str, str, str, str, str, str, str]
Move = tuple[str, str, str, Decimal, str]  # (debit book, credit book, asset, quantity, as text)


class Journal(ReadModel):
    name = "journal"
    description = "double-entry postings per event and asset; the trial balance"
    tables: ClassVar[tuple[Table, ...]] = (ENTRIES, BALANCES, ACCOUNT_NAMES)

    def __init__(self, view: Any) -> None:
        super().__init__(view=view)
        self._names: Kept[str, Books] = Kept()  # account originator id -> its books
        self._balances: Kept[tuple[str, str], list[Decimal]] = Kept()  # (book, asset)
        self._changed: set[tuple[str, str]] = set()

    def begin(self, *, fresh: bool) -> None:
        self._names.reset(fresh=fresh)
        self._balances.reset(fresh=fresh)
        self._changed = set()

    def apply(self, db: Db, records: Sequence[Record]) -> None:
        names, roles = self._names.rows, ROLES
        if not self._names.complete:
            wanted = {r.data["originator_id"] for r in records if roles[r.kind] in ACCOUNT_ROLES}
            names.update(_load_names(db, self._names.missing(wanted)))
        registered, entries, moves = [], [], []
        zero, is_postgres = db.zero, db.is_postgres
        for record in records:
            role = roles[record.kind]
            if role is None:
                continue
            data = record.data
            if role is _registered:
                account_id = f"{data['user']}:{data['account']}"
                names[data["originator_id"]] = _books(account_id, data["user"])
                registered.append((data["originator_id"], account_id, data["user"]))
                continue
            moved: list[Move] = []
            role(moved, data, names)
            if not moved:
                continue
            position, event_id, effective_at = (
                record.position,
                record.event_id,
                record.effective_key,
            )
            line = 0
            for debit, credit, asset, quantity, text in moved:
                amount = quantity if is_postgres else text
                entries.append((position, line + 1, event_id, effective_at, debit, asset,
                                amount, zero))  # fmt: skip
                entries.append((position, line + 2, event_id, effective_at, credit, asset,
                                zero, amount))  # fmt: skip
                line += 2
            moves.extend(moved)
        db.executemany("INSERT INTO {journal_account_names} VALUES (?, ?, ?)", registered)
        db.append(ENTRIES, entries)
        self._add_to_balances(db, moves)

    def _add_to_balances(self, db: Db, moves: list[Move]) -> None:
        balances, changed = self._balances.rows, self._changed
        if not self._balances.complete:
            keys = {(book, m[2]) for m in moves for book in (m[0], m[1])}
            for key, loaded in _load_balances(db, self._balances.missing(keys)).items():
                balances.setdefault(key, loaded)  # a book's other rows may be changed here
        for debit, credit, asset, quantity, _text in moves:
            key = (debit, asset)
            figures = balances.get(key)
            if figures is None:
                figures = balances[key] = [ZERO, ZERO]
            figures[0] += quantity
            changed.add(key)
            key = (credit, asset)
            figures = balances.get(key)
            if figures is None:
                figures = balances[key] = [ZERO, ZERO]
            figures[1] += quantity
            changed.add(key)

    def flush(self, db: Db) -> None:
        balances = self._balances.rows
        db.upsert(
            BALANCES,
            (
                (
                    book,
                    asset,
                    db.dec(balances[(book, asset)][0]),
                    db.dec(balances[(book, asset)][1]),
                )
                for book, asset in sorted(self._changed)
            ),
        )
        self._changed = set()
        self._names.trim()
        self._balances.trim()


def _books(account_id: str, user: str) -> Books:
    return (
        account_id,
        user,
        f"{account_id}/holdings",
        f"{account_id}/loan",
        f"{account_id}/interest",
        f"{account_id}/interest_expense",
        f"{user}/spot",
    )


def _move(moves: list[Move], asset: str, text: str, debit: str, credit: str) -> None:
    """One quantity from `credit` to `debit` (none when it is zero)."""
    quantity = Decimal(text)
    assert quantity >= 0, quantity
    if quantity:
        moves.append((debit, credit, asset, quantity, plain_of(text)))


# Each event's balanced moves (each a debit and a credit posting), in the journal's line order:
# none for refusals, settings and prices.
Names = dict[str, Books]
HOLDINGS, LOAN, INTEREST, EXPENSE, SPOT = range(2, 7)  # in Books


def _funded(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    source = LIQUIDATION if data["source"] == "liquidation_fee" else TREASURY
    _move(moves, QUOTE_ASSET, data["amount_usdt"], INSURANCE_FUND, source)


def _deficit_covered(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    _move(moves, QUOTE_ASSET, data["covered_usdt"], LIQUIDATION, INSURANCE_FUND)


def _transferred_in(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    books = names[data["originator_id"]]
    _move(moves, data["asset"], data["quantity"], books[HOLDINGS], books[SPOT])


def _transferred_out(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    books = names[data["originator_id"]]
    _move(moves, data["asset"], data["quantity"], books[SPOT], books[HOLDINGS])


def _borrowed(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    books, asset = names[data["originator_id"]], data["asset"]
    _move(moves, asset, data["quantity"], books[HOLDINGS], books[LOAN])
    _move(moves, asset, data["first_hour_interest"], books[EXPENSE], books[INTEREST])


def _interest_charged(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    books = names[data["originator_id"]]
    _move(moves, data["asset"], data["quantity"], books[EXPENSE], books[INTEREST])


def _repaid(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    books, asset = names[data["originator_id"]], data["asset"]
    _move(moves, asset, data["interest_paid"], books[INTEREST], books[HOLDINGS])
    _move(moves, asset, data["principal_paid"], books[LOAN], books[HOLDINGS])


def _trade_settled(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    holdings = names[data["originator_id"]][HOLDINGS]
    _move(moves, data["sell_asset"], data["sell_quantity"], EXCHANGE, holdings)
    _move(moves, data["buy_asset"], data["buy_quantity"], holdings, EXCHANGE)
    _move(moves, data["fee_asset"], data["fee_quantity"], FEES, holdings)


def _liquidated(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    books = names[data["originator_id"]]
    for asset, text in sorted(data["sold"].items()):
        _move(moves, asset, text, LIQUIDATION, books[HOLDINGS])
    for asset, text in sorted(data["repaid_principal"].items()):
        _move(moves, asset, text, books[LOAN], LIQUIDATION)
    for asset, text in sorted(data["repaid_interest"].items()):
        _move(moves, asset, text, books[INTEREST], LIQUIDATION)
    _move(moves, QUOTE_ASSET, data["remainder_usdt"], books[HOLDINGS], LIQUIDATION)


def _no_moves(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    """An account event that moves nothing: the account's names are still needed."""


def _registered(moves: list[Move], data: dict[str, Any], names: Names) -> None:
    raise AssertionError("a registration is applied by the model itself")


Role = Callable[[list[Move], dict[str, Any], Names], None] | None
ROLES: Roles[Role] = Roles(
    [
        (InsuranceFund.Funded, _funded),
        (InsuranceFund.DeficitCovered, _deficit_covered),
        (MarginAccount.Registered, _registered),
        ((MarginAccount.TransferredIn, MarginAccount.ToppedUp), _transferred_in),
        (MarginAccount.TransferredOut, _transferred_out),
        (MarginAccount.Borrowed, _borrowed),
        (MarginAccount.InterestCharged, _interest_charged),
        (MarginAccount.Repaid, _repaid),
        (MarginAccount.TradeSettled, _trade_settled),
        (MarginAccount.Liquidated, _liquidated),
        (MarginAccount.Event, _no_moves),
    ],
    default=None,
)
# The roles that read an account's books (a refusal reads none, but costs no more to load).
ACCOUNT_ROLES = frozenset(
    (_transferred_in, _transferred_out, _borrowed, _interest_charged, _repaid, _trade_settled,
     _liquidated, _no_moves)
)  # fmt: skip


def _load_names(db: Db, keys: set[str]) -> dict[str, Books]:
    if not keys:
        return {}
    return {
        originator_id: _books(account_id, user)
        for originator_id, account_id, user in db.query_in(
            "SELECT originator_id, account_id, user_id FROM {journal_account_names} "
            "WHERE originator_id IN ({keys})",
            keys,
        )
    }


def _load_balances(db: Db, keys: set[tuple[str, str]]) -> dict[tuple[str, str], list[Decimal]]:
    """The balances of these (book, asset) keys: read by book, zero where there is no row."""
    if not keys:
        return {}
    found: dict[tuple[str, str], list[Decimal]] = {key: [ZERO, ZERO] for key in keys}
    for book, asset, debit, credit in db.query_in(
        "SELECT book, asset, debit_total, credit_total FROM {journal_balances} "
        "WHERE book IN ({keys})",
        {book for book, _asset in keys},
    ):
        found[(book, asset)] = [dec(debit), dec(credit)]
    return found


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
