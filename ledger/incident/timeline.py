"""`ledger timeline`: the ordered story of an asset or an account between two business times —
price marks, band transitions, transfers accepted and refused with q_max, borrows and repays,
margin calls, auto top-ups, liquidations, insurance-fund movements and parameter changes, each
linked to its event id and log position (DOMAIN.md §9, incident post-mortems).

From the event log alone, in one pass and bounded memory: the log is read one batch at a time
from its first event (the band before the window needs every pool event before it), and what is
kept between batches is one small state per capped pool and per asset symbol, a bounded cache
of account names, and the few lines of one transaction whose selection waits for a later event
of it (an insurance-fund movement waits for the liquidation it pays for).
"""

from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from ledger import limits
from ledger.application import Ledger
from ledger.audit.export import mentions_asset
from ledger.domain.account import MarginAccount
from ledger.domain.asset import Asset
from ledger.domain.asset_pool import AssetPool
from ledger.domain.insurance_fund import InsuranceFund
from ledger.domain.registry import event_classes
from ledger.domain.risk_parameters import RiskParameters
from ledger.incident.timeline_bands import PoolBands
from ledger.incident.timeline_lines import (
    DESCRIBERS,
    Figure,
    Line,
    Subject,
    TimelineKind,
    describe,
)
from ledger.log import raw_page
from ledger.queries import parse_account_id
from projections.events import Record, decode, derives
from projections.sql import time_key

# Account names looked up (the account events' aggregate id is a uuid): a hot window touches
# few accounts again and again; a cold one pays one lookup per account.
ACCOUNT_NAMES_CACHED = 4096
# Lines of one transaction waiting for a later event of it: one account's part of a sweep is a
# handful of events, so more means the log is not what this module assumes.
WAITING_LINES_MAX = 10_000

__all__ = [
    "TimelineBuilder",
    "TimelineEntry",
    "TimelineKind",
    "TimelineWindow",
    "log_records",
    "timeline",
]


class TimelineWindow(BaseModel):
    """Business times, both inclusive (as `ledger export --from --to`)."""

    model_config = ConfigDict(frozen=True)

    since: AwareDatetime
    until: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> "TimelineWindow":
        if self.since > self.until:
            raise ValueError("since (--from) must not be later than until (--to)")
        return self


class TimelineEntry(BaseModel):
    """One line of a timeline: what happened, where it is in the log, and its figures."""

    model_config = ConfigDict(frozen=True)

    position: int  # log position (notification id)
    event_id: str  # "<aggregate uuid>:<version>", as `ledger explain` takes it
    event_type: str  # "MarginAccount.Liquidated"
    request_id: str
    effective_at: AwareDatetime
    recorded_at: AwareDatetime
    kind: TimelineKind
    account: str | None
    asset: str | None
    figures: dict[str, Figure]
    text: str


def timeline(
    ledger: Ledger,
    *,
    since: datetime,
    until: datetime,
    asset: str | None = None,
    account: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[TimelineEntry]:
    """The lines of events dated in [since, until] that concern `asset` and/or `account` (every
    line when neither is given), in log order."""
    story = TimelineBuilder(
        ledger, TimelineWindow(since=since, until=until), asset=asset, account=account
    )
    for record in log_records(ledger, progress=progress):
        yield from story.feed(record)
    yield from story.finish()


def log_records(
    ledger: Ledger, *, progress: Callable[[int, int], None] | None = None
) -> Iterator[Record]:
    """Every event of the log up to its head when asked, in order, its JSON decoded once (the
    read models' path: a pydantic event is validated only for the records a reader keeps)."""
    head = ledger.recorder.max_notification_id() or 0
    after = 0
    for _batch in range(limits.PROJECTION_BATCHES_MAX):
        rows = raw_page(ledger, after=after, limit=limits.PROJECTION_BATCH_SIZE, stop=head)
        yield from decode(rows)
        if rows:
            after = rows[-1][0]
            if progress is not None:
                progress(after, head)
        if len(rows) < limits.PROJECTION_BATCH_SIZE:
            return
    raise RuntimeError("the log has more batches than the batch bound allows")


class TimelineBuilder:
    """Turns the log's records, fed in order, into timeline entries (also fed by the
    post-mortem, which reads the same pass)."""

    def __init__(
        self,
        ledger: Ledger,
        window: TimelineWindow,
        *,
        asset: str | None = None,
        account: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.since_key, self.until_key = time_key(window.since), time_key(window.until)
        self.asset = asset
        self.account = account
        self.account_uuid = (
            None if account is None else MarginAccount.create_id(*parse_account_id(account))
        )
        self.bands = PoolBands()
        self.symbols: dict[str, str] = {}  # asset and pool ids -> symbol
        self.names: OrderedDict[UUID, str] = OrderedDict()  # account ids, least recent first
        self.waiting: list[tuple[TimelineEntry, tuple[str, str] | None]] = []
        self.waiting_request: str | None = None
        self.liquidated: dict[tuple[str, str], bool] = {}  # this request's, mentions asset?

    def in_window(self, record: Record) -> bool:
        return self.since_key <= record.effective_key <= self.until_key

    def feed(self, record: Record) -> list[TimelineEntry]:
        kind = record.kind
        band: TimelineEntry | None = None
        if derives(kind, AssetPool.Event):
            band = self._pool_event(record)
        elif derives(kind, Asset.Listed):
            self.symbols[record.originator_id] = record.data["symbol"]
        elif derives(kind, MarginAccount.Registered):
            data = record.data
            self._remember(UUID(data["originator_id"]), f"{data['user']}:{data['account']}")
        if not self.in_window(record) or (band is None and kind not in DESCRIBERS):
            return []
        out = self._next_request(record.data["request_id"])
        event = record.event
        subject = Subject(self._account_of(record, event), self.symbols.get(record.originator_id))
        line = describe(event, subject)
        if line is not None:
            self._select(record, event, self._entry(record, line))
        if band is not None and self._band_selected(band):
            self.waiting.append((band, None))
        return out + self._ready()

    def finish(self) -> list[TimelineEntry]:
        return self._next_request(None)

    # --- pools and band transitions -----------------------------------------------------------

    def _pool_event(self, record: Record) -> TimelineEntry | None:
        """Follow every pool event (before the window too); the band transition it causes,
        inside the window."""
        if derives(record.kind, AssetPool.Opened):
            self.symbols[record.originator_id] = record.data["asset"]
        line = self.bands.observe(record)
        return None if line is None or not self.in_window(record) else self._entry(record, line)

    def _band_selected(self, band: TimelineEntry) -> bool:
        if self.asset is not None and band.asset != self.asset:
            return False
        return self.account is None or band.account == self.account

    # --- selection ------------------------------------------------------------------------------

    def _select(self, record: Record, event: Any, entry: TimelineEntry) -> None:
        """Queue the entry when it concerns the asset and the account asked for; a fund movement
        for a liquidation waits, under an asset filter, for that liquidation."""
        if self.account is not None and not self._concerns_account(event):
            return
        if isinstance(event, RiskParameters.Event) or self.asset is None:
            self.waiting.append((entry, None))
            return
        if isinstance(event, InsuranceFund.Funded | InsuranceFund.DeficitCovered):
            if event.account_id is None:  # an administrator's funding: the whole platform's
                self.waiting.append((entry, None))
                return
            key = (record.data["request_id"], event.account_id)
            if key not in self.liquidated:
                self.waiting.append((entry, key))
            elif self.liquidated[key]:
                self.waiting.append((entry, None))
            return
        if isinstance(event, MarginAccount.Liquidated):
            assert entry.account is not None, entry
            key = (record.data["request_id"], entry.account)
            self.liquidated[key] = mentions_asset(event, self.asset)
            self._settle(key)
        if self._concerns_asset(event):
            self.waiting.append((entry, None))

    def _concerns_account(self, event: Any) -> bool:
        if isinstance(event, RiskParameters.Event):
            return True
        if isinstance(event, InsuranceFund.Event):
            return getattr(event, "account_id", None) == self.account
        return bool(event.originator_id == self.account_uuid)

    def _concerns_asset(self, event: Any) -> bool:
        assert self.asset is not None
        if mentions_asset(event, self.asset):
            return True
        if isinstance(
            event, MarginAccount.MarginCalled | MarginAccount.ToppedUp | MarginAccount.TopUpBlocked
        ):
            # A margin call names no asset: it concerns the asset when the account holds or
            # owes it then (one replay of the account, for a rare event).
            held: MarginAccount = self.ledger.repository.get(
                event.originator_id, version=event.originator_version
            )
            return bool(held.holding(self.asset) or held.liability(self.asset))
        return False

    def _settle(self, key: tuple[str, str]) -> None:
        keep = self.liquidated[key]
        self.waiting = [(entry, None) for entry, waits in self.waiting if waits != key or keep]

    def _next_request(self, request_id: str | None) -> list[TimelineEntry]:
        """A new request: what still waits belongs to no liquidation of the asset."""
        if request_id == self.waiting_request:
            return []
        self.waiting_request = request_id
        self.liquidated.clear()
        self.waiting = [(entry, waits) for entry, waits in self.waiting if waits is None]
        return self._ready()

    def _ready(self) -> list[TimelineEntry]:
        """The queued entries up to the first that still waits (log order is kept)."""
        ready = 0
        while ready < len(self.waiting) and self.waiting[ready][1] is None:
            ready += 1
        out = [entry for entry, _waits in self.waiting[:ready]]
        del self.waiting[:ready]
        if len(self.waiting) > WAITING_LINES_MAX:
            raise RuntimeError(f"more than {WAITING_LINES_MAX} timeline lines wait for one event")
        return out

    # --- names ----------------------------------------------------------------------------------

    def _account_of(self, record: Record, event: Any) -> str | None:
        if not derives(record.kind, MarginAccount.Event):
            account = record.data.get("account_id")
            return None if account is None else str(account)
        originator_id = event.originator_id
        name = self.names.get(originator_id)
        if name is None:
            registered: MarginAccount = self.ledger.repository.get(originator_id, version=1)
            name = registered.account_id
            self._remember(originator_id, name)
        else:
            self.names.move_to_end(originator_id)
        return name

    def _remember(self, originator_id: UUID, name: str) -> None:
        self.names[originator_id] = name
        if len(self.names) > ACCOUNT_NAMES_CACHED:
            self.names.popitem(last=False)

    def _entry(self, record: Record, line: Line) -> TimelineEntry:
        event = record.event
        return TimelineEntry(
            position=record.position,
            event_id=record.event_id,
            event_type=_event_names()[record.kind],
            request_id=event.request_id,
            effective_at=event.effective_at,
            recorded_at=event.timestamp,
            **line.model_dump(),
        )


@cache
def _event_names() -> dict[type[Any], str]:
    return {cls: name for name, cls in event_classes().items()}
