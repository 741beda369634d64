"""The accounts most involved in an incident: what the timeline's lines of each account add up
to, ranked by liquidations, then deficit, margin calls and refused transfer-ins."""

from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from ledger.incident.timeline import TimelineEntry, TimelineKind
from ledger.money import format_plain

TOP_ACCOUNTS_LISTED = 10


class AccountInvolvement(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    lines: int  # timeline lines of this account in the window
    transfer_ins: int
    refused_transfer_ins: int
    refused_quantity: str
    margin_calls: int
    top_ups: int
    liquidations: int
    deficit_usdt: str
    first_position: int  # its first line's log position


class _Tally:
    __slots__ = (
        "deficit",
        "first_position",
        "lines",
        "liquidations",
        "margin_calls",
        "refused",
        "refused_quantity",
        "top_ups",
        "transfer_ins",
    )

    def __init__(self, position: int) -> None:
        self.first_position = position
        self.lines = self.transfer_ins = self.refused = self.margin_calls = 0
        self.top_ups = self.liquidations = 0
        self.refused_quantity = self.deficit = Decimal(0)


class Involvement:
    """Tallies per account (one small record per account with a line in the window)."""

    def __init__(self) -> None:
        self.tallies: dict[str, _Tally] = {}

    def observe(self, entry: TimelineEntry) -> None:
        if entry.account is None or entry.kind in (
            TimelineKind.BAND_TRANSITION,  # the transfer or liquidation behind it is counted
            TimelineKind.INSURANCE_FUND,  # as is the liquidation it paid for
        ):
            return
        tally = self.tallies.get(entry.account)
        if tally is None:
            tally = self.tallies[entry.account] = _Tally(entry.position)
        tally.lines += 1
        kind, figures = entry.kind, entry.figures
        if kind is TimelineKind.TRANSFER_IN:
            tally.transfer_ins += 1
        elif kind is TimelineKind.TRANSFER_IN_REFUSED:
            tally.refused += 1
            tally.refused_quantity += Decimal(str(figures["requested"]))
        elif kind is TimelineKind.MARGIN_CALL:
            tally.margin_calls += 1
        elif kind in (TimelineKind.TOP_UP, TimelineKind.TOP_UP_BLOCKED):
            tally.top_ups += 1
        elif kind is TimelineKind.LIQUIDATION:
            tally.liquidations += 1
            tally.deficit += Decimal(str(figures["deficit_usdt"]))

    def top(self, count: int = TOP_ACCOUNTS_LISTED) -> list[AccountInvolvement]:
        ranked = sorted(
            self.tallies.items(),
            key=lambda item: (
                -item[1].liquidations,
                -item[1].deficit,
                -item[1].margin_calls,
                -item[1].refused,
                -item[1].lines,
                item[1].first_position,
            ),
        )
        return [
            AccountInvolvement(
                account=account,
                lines=t.lines,
                transfer_ins=t.transfer_ins,
                refused_transfer_ins=t.refused,
                refused_quantity=format_plain(t.refused_quantity),
                margin_calls=t.margin_calls,
                top_ups=t.top_ups,
                liquidations=t.liquidations,
                deficit_usdt=format_plain(t.deficit),
                first_position=t.first_position,
            )
            for account, t in ranked[:count]
        ]
