"""Reading a store back for the concurrency tests: commit order, and a serial replay of it."""

from typing import Any

from eventsourcing.utils import get_topic

from ledger import Ledger
from ledger.commands import parse_command
from ledger.domain.request import Request

NOTIFICATION_PAGE = 500
NOTIFICATION_PAGES_MAX = 10_000


def events_of_type(ledger: Ledger, cls: type) -> list[Any]:
    """Every event of one class, in notification-log order: the order the writes committed."""
    topic = get_topic(cls)
    found: list[Any] = []
    position = 0
    for _page in range(NOTIFICATION_PAGES_MAX):
        notifications = ledger.recorder.select_notifications(
            start=position, limit=NOTIFICATION_PAGE, topics=[topic], inclusive_of_start=False
        )
        found.extend(ledger.mapper.to_domain_event(n) for n in notifications)
        if len(notifications) < NOTIFICATION_PAGE:
            return found
        position = notifications[-1].id
    raise AssertionError(f"more than {NOTIFICATION_PAGES_MAX} notification pages")


def recorded_requests(ledger: Ledger) -> list[Request.Recorded]:
    """Every command's Request record (command and outcome), in commit order."""
    recorded = events_of_type(ledger, Request.Recorded)
    assert all(isinstance(r, Request.Recorded) for r in recorded)
    return recorded


def assert_serial_replay_identical(recorded: list[Request.Recorded], fresh_url: str) -> None:
    """Replay the recorded commands one at a time, in commit order, into an empty store: each
    outcome (status, reason, message, decision context, event ids) must be the recorded one."""
    with Ledger(fresh_url) as replay:
        assert (replay.recorder.max_notification_id() or 0) == 0
        for record in recorded:
            outcome = replay.execute(parse_command(record.command)).model_dump(mode="json")
            assert outcome == record.outcome, (record.request_id, outcome, record.outcome)
