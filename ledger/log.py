"""Reading the event log in order, one bounded batch at a time: the library's notification log
(every event, never a snapshot), decoded through the ledger's mapper."""

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Notification

from ledger import limits

if TYPE_CHECKING:
    from ledger.application import Ledger


def log_batches(
    ledger: "Ledger", *, topics: Sequence[str] = (), stop: int | None = None
) -> Iterator[Sequence[Notification]]:
    """The log's notifications (of these topics, up to position `stop`), a batch at a time."""
    position = 0
    for _batch in range(limits.PROJECTION_BATCHES_MAX):
        notifications = ledger.recorder.select_notifications(
            start=position,
            limit=limits.PROJECTION_BATCH_SIZE,
            stop=stop,
            topics=topics,
            inclusive_of_start=False,
        )
        if notifications:
            yield notifications
        if len(notifications) < limits.PROJECTION_BATCH_SIZE:
            return
        position = notifications[-1].id
    raise RuntimeError("the log has more batches than the batch bound allows")


def log_events(
    ledger: "Ledger", *, topics: Sequence[str] = (), stop: int | None = None
) -> Iterator[tuple[int, Any]]:
    """(position, domain event) in log order."""
    for batch in log_batches(ledger, topics=topics, stop=stop):
        for notification in batch:
            yield notification.id, ledger.mapper.to_domain_event(notification)
