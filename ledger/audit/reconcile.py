"""`ledger reconcile`: the back office's checks, each a list of differences (empty when clean).

1. read_models: every read model's rows equal a fresh replay of the log into a scratch store
   (a temporary SQLite file or PostgreSQL schema), compared row by row in key order;
2. asset_totals: per asset, the accounts' holdings, debts and interest add up to the asset
   totals model, and a capped asset's total equals its pool's T (the write side);
3. journal: the trial balance is zero per asset, and the journal's account books equal the
   accounts' holdings, liabilities and interest;
4. insurance_fund: the fund's balance equals its recorded flows and its journal book;
5. external (with a CSV of account, asset, balance, as_of): the ledger's holdings as of each
   `as_of` equal the report: wrong amounts, rows the ledger lacks, and rows the report lacks.
"""

import csv
import json
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from eventsourcing.utils import get_topic
from pydantic import BaseModel, ConfigDict

from ledger import limits
from ledger.application import Ledger
from ledger.audit.divergence import ACCOUNTS_BISECTED_MAX, AccountDivergence, account_divergence
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.log import log_events
from ledger.money import format_plain, parse_decimal
from ledger.params import QUOTE_ASSET
from ledger.persistence import is_postgres, postgres_connect
from ledger.queries import AccountIdInvalid, parse_account_id
from ledger.times import NotATime, format_time, parse_time
from projections.runner import RECONCILE_CHECKPOINTS

DIFFERENCES_LISTED_MAX = 1000  # per check; the count is always complete
TABLE_CHUNK_ROWS = 5000  # rows compared per query when walking two tables side by side
ACCOUNT_TABLES = ("accounts(", "account_balances(")  # the accounts model's rows of one account


class Difference(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str  # what differs: a table row key, an account and asset, a book
    account: str | None = None
    asset: str | None = None
    expected: str | None = None  # what the reference says (replay, sum, report)
    found: str | None = None  # what the checked side says
    position: int | None = None  # the first log position the difference involves, if known
    detail: str


class CheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    is_clean: bool
    difference_count: int
    differences: list[Difference]
    first_divergence_position: int | None = None


class ReconcileReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    is_clean: bool
    position: int  # the log position everything was checked at
    checks: list[CheckResult]
    since_checkpoint: int | None = None  # the clean run's position this one started from
    checkpoint_recorded: bool = False  # this run was clean: its position is the next checkpoint


class ExternalReportInvalid(ValueError):
    """The external CSV cannot be read: a missing column, a bad number or time."""


class ExternalRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    line: int
    account: str
    asset: str
    balance: Decimal
    as_of: datetime


def reconcile(
    ledger: Ledger,
    *,
    external: Path | None = None,
    since_checkpoint: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReconcileReport:
    """Every check; a clean run records its log position as the next checkpoint.

    With `since_checkpoint` (and a checkpoint recorded), the full replay is replaced by checking
    only the accounts the log changed since the last clean run against the write side's
    aggregates; the per-asset, journal and fund checks are whole-store sums and always run.
    """
    from projections.queries import ReadSide
    from projections.runner import ReadModels

    rows = None if external is None else read_external(external)
    with ReadModels(ledger) as read_models:
        position = read_models.catch_up(progress=progress)
        reader = ReadSide(read_models, catch_up=False)
        checkpoint = last_checkpoint(read_models) if since_checkpoint else None
        first = (
            _check_replay(ledger, read_models, position, progress)
            if checkpoint is None
            else _check_changed_accounts(ledger, read_models, reader, checkpoint)
        )
        checks = [
            first,
            _check_asset_totals(ledger, reader),
            _check_journal(read_models, reader),
            _check_insurance_fund(ledger, read_models, position),
        ]
        if rows is not None:
            checks.append(_check_external(reader, rows))
        is_clean = all(c.is_clean for c in checks)
        if is_clean:
            with read_models.store.transaction() as db:
                db.upsert(RECONCILE_CHECKPOINTS, [(position, format_time(datetime.now(UTC)))])
    return ReconcileReport(
        is_clean=is_clean,
        position=position,
        checks=checks,
        since_checkpoint=checkpoint,
        checkpoint_recorded=is_clean,
    )


def last_checkpoint(read_models: Any) -> int | None:
    with read_models.store.transaction(commit=False) as db:
        rows = db.query("SELECT MAX(position) FROM {reconcile_checkpoints}")
    return None if not rows or rows[0][0] is None else int(rows[0][0])


def _check_changed_accounts(
    ledger: Ledger, read_models: Any, reader: Any, checkpoint: int
) -> CheckResult:
    """The accounts the log changed after `checkpoint`, against the write side's aggregates."""
    from ledger.queries import account_view

    with read_models.store.transaction(commit=False) as db:
        changed = db.query(
            "SELECT account_id, last_position FROM {accounts} WHERE last_position > ? "
            "ORDER BY account_id",
            (checkpoint,),
        )
    differences = []
    for account_id, last_position in changed:
        found = reader.account(account_id)
        expected = account_view(ledger, account_id)
        if found == expected:
            continue
        fields = [
            name
            for name in type(found).model_fields
            if getattr(found, name) != getattr(expected, name)
        ]
        differences.append(
            Difference(
                subject=f"accounts({account_id})",
                account=account_id,
                expected=json_text(expected.model_dump(mode="json", include=set(fields))),
                found=json_text(found.model_dump(mode="json", include=set(fields))),
                position=int(last_position),
                detail=f"differs from the write side in {', '.join(fields)}",
            )
        )
    return _result("read_models", differences)


def json_text(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def _result(name: str, differences: list[Difference]) -> CheckResult:
    positions = [d.position for d in differences if d.position is not None]
    return CheckResult(
        name=name,
        is_clean=not differences,
        difference_count=len(differences),
        differences=differences[:DIFFERENCES_LISTED_MAX],
        first_divergence_position=min(positions) if positions else None,
    )


# --- 1. read models against a fresh replay ------------------------------------------------------


def _check_replay(ledger: Ledger, read_models: Any, position: int, progress: Any) -> CheckResult:
    from projections.runner import ReadModels

    differences: list[Difference] = []
    with scratch_env(ledger) as env, ReadModels(ledger, store_env=env) as replay:
        replay.catch_up(until=position, progress=progress)
        for model in read_models.models.values():
            for table in model.tables:
                differences += _compare_table(read_models.store, replay.store, table)
        differences = [_with_position(read_models, d) for d in differences]
        differences = _bisected(ledger, read_models.store, replay.store, differences, position)
    return _result("read_models", differences)


def _bisected(
    ledger: Ledger, live: Any, replay: Any, differences: list[Difference], position: int
) -> list[Difference]:
    """An account's rows that differ: the position where they left the account's history
    (bisection over its events, ledger/audit/divergence.py), not only their last write."""
    accounts = sorted(
        {d.account for d in differences if d.account and d.subject.startswith(ACCOUNT_TABLES)}
    )[:ACCOUNTS_BISECTED_MAX]
    found = {}
    with live.transaction(commit=False) as live_db, replay.transaction(commit=False) as replay_db:
        for account in accounts:
            divergence = account_divergence(ledger, live_db, replay_db, account, position)
            if divergence is not None:
                found[account] = divergence
    return [_moved(d, found.get(d.account or "")) for d in differences]


def _moved(difference: Difference, divergence: AccountDivergence | None) -> Difference:
    """A stale row (one that equals an earlier state of its account) points at the first event
    it misses, an account the read model lacks at its first event; a row equal to no state of
    its account keeps its own last position."""
    if (
        divergence is None
        or not difference.subject.startswith(ACCOUNT_TABLES)
        or divergence.position == difference.position
    ):
        return difference
    if divergence.is_row_missing:
        detail = (
            f"{difference.detail}; the read model has no row of the account, whose events "
            f"start at position {divergence.position}"
        )
    elif divergence.agrees_until is not None:
        detail = (
            f"{difference.detail}; the account's rows still equal its state at position "
            f"{divergence.agrees_until} and miss its events from position {divergence.position} on"
        )
    else:
        return difference
    return difference.model_copy(update={"position": divergence.position, "detail": detail})


def _with_position(read_models: Any, difference: Difference) -> Difference:
    """A balance row carries no position: its account's last written position stands in."""
    if difference.position is not None or difference.account is None:
        return difference
    with read_models.store.transaction(commit=False) as db:
        rows = db.query(
            "SELECT last_position FROM {accounts} WHERE account_id = ?", (difference.account,)
        )
    if not rows:
        return difference
    return difference.model_copy(update={"position": int(rows[0][0])})


@contextmanager
def scratch_env(ledger: Ledger) -> Iterator[dict[str, str]]:
    """Library settings for an empty store beside the ledger's, removed afterwards."""
    env = dict(ledger.env)
    if is_postgres(env):
        schema = f"reconcile_{uuid.uuid4().hex[:16]}"
        try:
            yield env | {"POSTGRES_SCHEMA": schema}
        finally:
            with postgres_connect(env) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        return
    with tempfile.TemporaryDirectory(prefix="ledger-reconcile-") as folder:
        yield env | {"SQLITE_DBNAME": str(Path(folder) / "replay.sqlite3")}


def _compare_table(live: Any, replay: Any, table: Any) -> list[Difference]:
    """Walk both tables in primary-key order, side by side, a chunk at a time."""
    differences = []
    live_rows, replay_rows = _walk(live, table), _walk(replay, table)
    found, expected = next(live_rows, None), next(replay_rows, None)
    keys = len(table.primary_key)
    while found is not None or expected is not None:
        found_key = None if found is None else found[:keys]
        expected_key = None if expected is None else expected[:keys]
        if expected_key is None or (found_key is not None and found_key < expected_key):
            differences.append(_row_difference(table, found, None))
            found = next(live_rows, None)
        elif found_key is None or expected_key < found_key:
            differences.append(_row_difference(table, None, expected))
            expected = next(replay_rows, None)
        else:
            assert found is not None and expected is not None
            if tuple(_normal(v) for v in found) != tuple(_normal(v) for v in expected):
                differences.append(_row_difference(table, found, expected))
            found, expected = next(live_rows, None), next(replay_rows, None)
    return differences


def _walk(store: Any, table: Any) -> Iterator[tuple[Any, ...]]:
    columns = ", ".join(table.column_names)
    # Byte order on both backends, so that the database's order is Python's string order
    # (a PostgreSQL database with a locale collation would order text differently).
    types = dict(table.columns)
    keys = ", ".join(
        f'{k} COLLATE "C"' if store.is_postgres and types[k].startswith("text") else k
        for k in table.primary_key
    )
    last: tuple[Any, ...] | None = None
    for _chunk in range(limits.PROJECTION_BATCHES_MAX):
        with store.transaction(commit=False) as db:
            if last is None:
                rows = db.query(
                    f"SELECT {columns} FROM {{{table.name}}} ORDER BY {keys} "
                    f"LIMIT {TABLE_CHUNK_ROWS}"
                )
            else:
                marks = ", ".join("?" for _ in last)
                rows = db.query(
                    f"SELECT {columns} FROM {{{table.name}}} WHERE ({keys}) > ({marks}) "
                    f"ORDER BY {keys} LIMIT {TABLE_CHUNK_ROWS}",
                    last,
                )
        yield from rows
        if len(rows) < TABLE_CHUNK_ROWS:
            return
        last = rows[-1][: len(table.primary_key)]
    raise RuntimeError(f"{table.name}: more chunks than the batch bound allows")


def _normal(value: Any) -> Any:
    """Compare numbers by value: text on SQLite, numeric on PostgreSQL."""
    if isinstance(value, Decimal):
        return value.normalize()
    return value


def _row_difference(
    table: Any, found: tuple[Any, ...] | None, expected: tuple[Any, ...] | None
) -> Difference:
    names = table.column_names
    row = dict(zip(names, found or expected or (), strict=True))
    key = ", ".join(f"{k}={row[k]}" for k in table.primary_key)
    positions = [
        int(r[names.index(column)])
        for r in (found, expected)
        if r is not None
        for column in ("position", "last_position")
        if column in names and r[names.index(column)] is not None
    ]
    if found is None:
        detail = "missing from the read model (the replay has it)"
    elif expected is None:
        detail = "in the read model but not in the replay"
    else:
        changed = [
            n for n, a, b in zip(names, found, expected, strict=True) if _normal(a) != _normal(b)
        ]
        detail = f"differs in {', '.join(changed)}"
    account = row.get("account_id")
    if account is None and ":" in str(row.get("book", "")).split("/")[0]:
        account = str(row["book"]).split("/")[0]  # a journal book of an account
    return Difference(
        subject=f"{table.name}({key})",
        account=account,
        asset=row.get("asset"),
        expected=None if expected is None else _text(dict(zip(names, expected, strict=True))),
        found=None if found is None else _text(dict(zip(names, found, strict=True))),
        position=min(positions) if positions else None,
        detail=detail,
    )


def _text(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={format_plain(v) if isinstance(v, Decimal) else v}" for k, v in row.items()
    )


# --- 2. sums per asset -------------------------------------------------------------------------


def _check_asset_totals(ledger: Ledger, reader: Any) -> CheckResult:
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for view in reader.accounts():
        holdings = "isolated_total" if view.kind == "isolated" else "total"
        for field, values in (
            (holdings, view.holdings),
            ("borrowed_total", view.liabilities),
            ("interest_total", view.interest),
        ):
            for asset, quantity in values.items():
                sums[asset][field] += Decimal(quantity)
    differences = []
    for view in reader.assets():
        for field in ("total", "isolated_total", "borrowed_total", "interest_total"):
            expected = sums[view.asset][field]
            found = Decimal(getattr(view, field))
            if expected != found:
                differences.append(
                    Difference(
                        subject=f"asset {view.asset} {field}",
                        asset=view.asset,
                        expected=format_plain(expected),
                        found=format_plain(found),
                        detail=f"the accounts add up to {format_plain(expected)}",
                    )
                )
        pool = ledger.get_aggregate(AssetPool, AssetPool.create_id(view.asset))
        if pool is not None and pool.platform_total != Decimal(view.total):
            differences.append(
                Difference(
                    subject=f"pool {view.asset} T",
                    asset=view.asset,
                    expected=format_plain(pool.platform_total),
                    found=view.total,
                    detail="the asset totals model disagrees with the pool decisions use",
                )
            )
    return _result("asset_totals", differences)


# --- 3. the journal ----------------------------------------------------------------------------


def _check_journal(read_models: Any, reader: Any) -> CheckResult:
    from projections.journal import book_balances

    differences = [
        Difference(
            subject=f"trial balance {line.asset}",
            asset=line.asset,
            expected="0",
            found=line.difference,
            detail=f"debits {line.debit_total}, credits {line.credit_total}",
        )
        for line in reader.trial_balance()
        if not line.is_balanced
    ]
    with read_models.store.transaction(commit=False) as db:
        books = book_balances(db)
    for view in reader.accounts():
        assets = set(view.holdings) | set(view.liabilities) | set(view.interest)
        assets |= {a for (book, a) in books if book.startswith(f"{view.account}/")}
        for asset in sorted(assets):
            for book, sign, values in (
                ("holdings", 1, view.holdings),
                ("loan", -1, view.liabilities),
                ("interest", -1, view.interest),
            ):
                expected = Decimal(values.get(asset, "0"))
                found = sign * books.get((f"{view.account}/{book}", asset), Decimal(0))
                if expected != found:
                    differences.append(
                        Difference(
                            subject=f"book {view.account}/{book}",
                            account=view.account,
                            asset=asset,
                            expected=format_plain(expected),
                            found=format_plain(found),
                            detail=f"the journal's {book} book disagrees with the account",
                        )
                    )
    return _result("journal", differences)


# --- 4. the insurance fund ---------------------------------------------------------------------


def _check_insurance_fund(ledger: Ledger, read_models: Any, position: int) -> CheckResult:
    from projections.journal import INSURANCE_FUND, book_balances

    topics = [get_topic(InsuranceFund.Funded), get_topic(InsuranceFund.DeficitCovered)]
    flows = sum(
        (
            event.amount_usdt if isinstance(event, InsuranceFund.Funded) else -event.covered_usdt
            for _position, event in log_events(ledger, topics=topics, stop=position)
        ),
        Decimal(0),
    )
    fund = ledger.get_aggregate(InsuranceFund, InsuranceFund.create_id())
    balance = Decimal(0) if fund is None else fund.balance_usdt
    with read_models.store.transaction(commit=False) as db:
        book = book_balances(db).get((INSURANCE_FUND, QUOTE_ASSET), Decimal(0))
    differences = []
    for subject, found in (("fund balance", balance), ("journal book", book)):
        if found != flows:
            differences.append(
                Difference(
                    subject=f"insurance fund: {subject}",
                    asset=QUOTE_ASSET,
                    expected=format_plain(flows),
                    found=format_plain(found),
                    detail="fundings minus covered deficits, as recorded",
                )
            )
    return _result("insurance_fund", differences)


# --- 5. an external balance report -------------------------------------------------------------


def read_external(path: Path) -> list[ExternalRow]:
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ExternalReportInvalid(f"{path}: {exc.strerror}") from None
    rows = []
    with handle:
        reader = csv.DictReader(handle)
        missing = {"account", "asset", "balance", "as_of"} - set(reader.fieldnames or [])
        if missing:
            raise ExternalReportInvalid(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        seen: dict[tuple[str, str, datetime], int] = {}
        for line, record in enumerate(reader, start=2):
            try:
                account = record["account"].strip()
                parse_account_id(account)
                balance = parse_decimal(record["balance"].strip())
                as_of = parse_time(record["as_of"].strip())
            except (AccountIdInvalid, InvalidOperation, NotATime, ValueError) as exc:
                raise ExternalReportInvalid(f"{path} line {line}: {exc}") from None
            key = (account, record["asset"].strip(), as_of)
            if key in seen:
                raise ExternalReportInvalid(
                    f"{path} line {line}: repeats the account, asset and as_of of line {seen[key]}"
                )
            seen[key] = line
            rows.append(
                ExternalRow(line=line, account=key[0], asset=key[1], balance=balance, as_of=as_of)
            )
    return rows


def _check_external(reader: Any, rows: list[ExternalRow]) -> CheckResult:
    from projections.queries import PointInTime

    differences = []
    by_time: dict[datetime, dict[tuple[str, str], ExternalRow]] = defaultdict(dict)
    for row in rows:
        by_time[row.as_of][(row.account, row.asset)] = row
    for as_of, reported in sorted(by_time.items()):
        when = PointInTime(at=as_of)
        ledger_balances: dict[tuple[str, str], Decimal] = {}
        for account_id in sorted({a for a, _asset in reported} | _account_ids(reader)):
            view = reader.account(account_id, when)
            for asset, quantity in view.holdings.items():
                ledger_balances[(account_id, asset)] = Decimal(quantity)
        for key in sorted(set(reported) | set(ledger_balances)):
            expected = ledger_balances.get(key, Decimal(0))
            report_row = reported.get(key)
            found = None if report_row is None else report_row.balance
            if found == expected:
                continue
            if report_row is None:
                detail = "the ledger holds it; the report has no row"
            elif key not in ledger_balances:
                detail = f"line {report_row.line}: the ledger holds nothing of it"
            else:
                detail = f"line {report_row.line}: the amounts differ"
            differences.append(
                Difference(
                    subject=f"external {key[0]} {key[1]} as of {format_time(as_of)}",
                    account=key[0],
                    asset=key[1],
                    expected=format_plain(expected),
                    found=None if found is None else format_plain(found),
                    detail=detail,
                )
            )
    return _result("external", differences)


def _account_ids(reader: Any) -> set[str]:
    return {view.account for view in reader.accounts()}
