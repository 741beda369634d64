"""Jobs that act on many accounts: the interest accrual and the risk sweep.

Each account's work is decided and recorded atomically in effect (accounts share a transaction
with a few hundred others, and one refused as invalid leaves no trace); the job's Request, with
its summary, is recorded last. A job stopped half-way is run again
with the same request_id: what was done is not done twice (interest remembers the last hour
charged; a margin call waits 24 hours; a liquidated account has no debt left).
"""

import itertools
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from ledger import limits
from ledger.commands import AccrueInterest, CheckMargins, CommandBase, CommandInvalid
from ledger.domain.account import MarginAccount
from ledger.domain.insurance_fund import InsuranceFund
from ledger.handlers.interest import settle_interest
from ledger.handlers.risk import sweep_account
from ledger.money import format_plain
from ledger.outcomes import Outcome
from ledger.times import format_time
from ledger.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from ledger.application import Ledger
    from ledger.write_transaction import WriteTransaction

T = TypeVar("T")


def accrue_interest(ledger: "Ledger", command: AccrueInterest) -> Outcome:
    """Every open loan's full hours up to `until`, once per loan and hour."""
    first = ledger.first_outcome(command)
    if first is not None:
        return first
    scanned = charged_accounts = hours = 0
    interest: dict[str, Decimal] = {}
    for _account, charges in on_accounts(
        ledger, command, borrower_ids(ledger), account_act(command), stop_on_invalid=True
    ):
        if isinstance(charges, CommandInvalid):
            raise charges
        scanned += 1
        charged_accounts += bool(charges)
        hours += len(charges)
        for charge in charges:
            interest[charge.asset] = interest.get(charge.asset, Decimal(0)) + charge.quantity
    return ledger.record_job(
        command,
        {
            "until": format_time(command.until),
            "accounts_scanned": scanned,
            "accounts_charged": charged_accounts,
            "hours_charged": hours,
            "interest": {a: format_plain(q) for a, q in sorted(interest.items())},
        },
    )


def check_margins(ledger: "Ledger", command: CheckMargins) -> Outcome:
    """The risk sweep: every account with debt, at the prices in force at the sweep's time."""
    first = ledger.first_outcome(command)
    if first is not None:
        return first
    scanned = 0
    actions: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for account_id, done in on_accounts(
        ledger, command, borrower_ids(ledger), account_act(command), stop_on_invalid=False
    ):
        scanned += 1
        if isinstance(done, CommandInvalid):  # e.g. an asset with no price: reported, not hidden
            account = ledger.get_aggregate(MarginAccount, account_id)
            skipped.append(
                {"account": account.account_id, "problem": str(done)[: limits.NOTE_CHARS_MAX]}
            )
        elif done is not None:
            account = ledger.get_aggregate(MarginAccount, account_id)
            actions.append({"account": account.account_id, **done})
    fund = ledger.get_aggregate(InsuranceFund, InsuranceFund.create_id())
    liquidations = [a for a in actions if a["action"] == "liquidation"]
    calls = [a for a in actions if a["action"] == "margin_call"]
    top_ups = [a["top_up"] for a in calls if "top_up" in a]
    return ledger.record_job(
        command,
        {
            "accounts_scanned": scanned,
            "margin_calls": len(calls),
            "top_ups": {
                result: sum(1 for t in top_ups if t["result"] == result)
                for result in ("topped_up", "limited", "blocked")
            },
            "liquidations": len(liquidations),
            "deficit_usdt": format_plain(
                sum((Decimal(a["deficit_usdt"]) for a in liquidations), Decimal(0))
            ),
            "uncovered_usdt": format_plain(
                sum((Decimal(a["uncovered_usdt"]) for a in liquidations), Decimal(0))
            ),
            "insurance_fund_usdt": None if fund is None else format_plain(fund.balance_usdt),
            "accounts": actions[: limits.JOB_ACCOUNTS_LISTED_MAX],
            "skipped": skipped[: limits.JOB_ACCOUNTS_LISTED_MAX],
        },
    )


def account_act(command: CommandBase) -> Callable[[UnitOfWork, MarginAccount], Any]:
    """What a job does to one account: the unit each of its per-account saves holds."""
    if isinstance(command, AccrueInterest):
        until = command.until
        return lambda unit, account: settle_interest(unit, account, until)
    assert isinstance(command, CheckMargins), command
    return lambda unit, account: sweep_account(unit, account, command)


def on_accounts(
    ledger: "Ledger",
    command: CommandBase,
    account_ids: Iterable[UUID],
    act: Callable[[UnitOfWork, MarginAccount], T],
    *,
    stop_on_invalid: bool,
) -> Iterator[tuple[UUID, T | CommandInvalid]]:
    """Each account's part of a job, decided in account order, JOB_ACCOUNTS_PER_TRANSACTION
    accounts to a transaction; each part atomic in effect (one refused as invalid leaves no
    trace). With `stop_on_invalid` nothing after the first invalid part is decided."""
    ids = iter(account_ids)
    while chunk := list(itertools.islice(ids, limits.JOB_ACCOUNTS_PER_TRANSACTION)):
        parts = ledger.in_write_transaction(
            lambda transaction, chunk=chunk: _decide_parts(  # type: ignore[misc]
                transaction, ledger, command, chunk, act, stop_on_invalid
            )
        )
        yield from parts
        if stop_on_invalid and any(isinstance(p, CommandInvalid) for _, p in parts):
            return


def _decide_parts(
    transaction: "WriteTransaction",
    ledger: "Ledger",
    command: CommandBase,
    account_ids: list[UUID],
    act: Callable[[UnitOfWork, MarginAccount], T],
    stop_on_invalid: bool,
) -> list[tuple[UUID, T | CommandInvalid]]:
    parts: list[tuple[UUID, T | CommandInvalid]] = []
    for account_id in account_ids:
        unit = UnitOfWork(ledger, command, transaction)
        account = unit.get(MarginAccount, account_id)
        assert account is not None, account_id
        try:
            result = act(unit, account)
        except CommandInvalid as invalid:
            transaction.restore([*unit.loaded_ids(), *unit.changed])
            parts.append((account_id, invalid))
            if stop_on_invalid:
                break
            continue
        transaction.accept(unit.changed.values())
        parts.append((account_id, result))
    return parts


def borrower_ids(ledger: "Ledger") -> Iterator[UUID]:
    """Every account owing principal or interest, from the accounts read model caught up now.

    An account that borrows after the catch-up is the next run's: interest is settled hour by
    hour from the loan's last charged hour, so no hour is lost, only charged a run later.
    """
    from projections.accounts import debtor_ids
    from projections.runner import ReadModels

    with ReadModels(ledger) as read_models:
        # Debts only: the valuations of the accounts that moved are left to the next reader
        # (half of a job's time in the simulated day went to valuing them here).
        read_models.catch_up(["accounts"], finish=False)
        with read_models.store.transaction(commit=False) as db:
            ids = debtor_ids(db)
    yield from ids
