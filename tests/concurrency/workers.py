"""Code that runs inside the spawned worker processes of the concurrency tests.

Kept apart from the test modules so that a spawned child imports only the ledger, not pytest.
"""

import faulthandler
import json
import sys
from pathlib import Path
from typing import Any

BARRIER_WAIT_SECONDS = 120


def submit_commands(
    url: str, commands: list[dict[str, Any]], barrier: Any, result_path: str
) -> None:
    """Open the ledger and execute `commands` one by one, racing the other workers twice.

    Every worker opens its Ledger at the same moment (opening runs the library's CREATE
    statements: a race of its own on PostgreSQL), then all start writing at the same moment.
    The outcomes go to `result_path` as one JSON list, in the order they were answered.
    """
    from ledger import Ledger
    from ledger.commands import parse_command

    # A worker stuck past the barrier's wait prints where it is stuck; the test then fails.
    faulthandler.dump_traceback_later(BARRIER_WAIT_SECONDS - 30, exit=False, file=sys.stderr)
    parsed = [parse_command(data) for data in commands]
    barrier.wait(timeout=BARRIER_WAIT_SECONDS)
    with Ledger(url) as ledger:
        ledger.recorder.max_notification_id()  # connect before the start line, not after it
        barrier.wait(timeout=BARRIER_WAIT_SECONDS)
        outcomes = [ledger.execute(command).model_dump(mode="json") for command in parsed]
    faulthandler.cancel_dump_traceback_later()
    Path(result_path).write_text(json.dumps(outcomes))


def open_stores(urls: list[str], barrier: Any, result_path: str) -> None:
    """For each URL in turn, open (and close) the ledger the moment every worker is ready.

    Writes one line per URL to `result_path`: "opened", or the error's type and text.
    """
    from ledger import Ledger

    faulthandler.dump_traceback_later(BARRIER_WAIT_SECONDS - 30, exit=False, file=sys.stderr)
    results = []
    for url in urls:
        barrier.wait(timeout=BARRIER_WAIT_SECONDS)
        try:
            with Ledger(url) as ledger:
                ledger.recorder.max_notification_id()
            results.append("opened")
        except Exception as error:  # the test asserts on every result; nothing is swallowed
            results.append(f"{type(error).__name__}: {error}")
    faulthandler.cancel_dump_traceback_later()
    Path(result_path).write_text(json.dumps(results))
