"""Python's cyclic garbage collector, held off while the log's write lock is held.

A full collection walks every object the process keeps, and the write path keeps thousands of
aggregates cached (`limits.AGGREGATE_CACHE_SIZE`): 70-100 ms a collection with 10,000 cached
accounts, taken whenever allocations cross the collector's thresholds, so in the middle of
deciding. Every other writer waits for the lock meanwhile. With the collector paused the
collections that fall due run at the first allocation after the transaction, outside the lock.
A decided command leaves no cyclic garbage (reference counting frees it all: a 10,000-command
batch with the collector off, `gc.collect()` then finds nothing), so the pause holds no memory
back (docs/performance.md, session 7).
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collections_paused() -> Iterator[None]:
    """Pause the collector for the block, unless it is already off (the caller's choice, or
    another thread's pause, which then ends when that thread's block does)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
