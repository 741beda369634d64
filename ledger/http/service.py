"""The ledger behind the HTTP service: opened on first use, shared by the server's threads.

FastAPI runs each request's ledger work on a thread of its pool, so this holds what the threads
share and says how they share it:
- one `Ledger` per process. Its write path is serialised by the Ledger itself (its
  `_write_lock` and the log's write lock, which also orders this process against other ones);
  `write_lock` here puts one command or batch at a time through it, jobs included, so a request
  never interleaves with another one's decisions. The library's recorders and repository are
  thread-safe (connection pools, a locked aggregate cache), so reads run beside writes.
- one `ReadModels` (kept in memory between batches, not thread-safe): `read_lock` lets one
  request at a time catch it up and query it.
A database that cannot be reached is tried again on the next request: a store that comes back
is used again without restarting the server.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ledger.application import Ledger
from ledger.errors import DATABASE_ERRORS
from ledger.http.keys import KeyStore
from projections.queries import ReadSide
from projections.runner import ReadModels

T = TypeVar("T")


class LedgerService:
    def __init__(self, url: str | None) -> None:
        self.url = url
        self._ledger: Ledger | None = None
        self._keys: KeyStore | None = None
        self._read_models: ReadModels | None = None
        self._open_lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.read_lock = threading.Lock()

    def ledger(self) -> Ledger:
        with self._open_lock:
            if self._ledger is None:
                ledger = Ledger(self.url)  # raises a database error: answered 503, tried again
                try:
                    self._keys = KeyStore(ledger)
                except BaseException:
                    ledger.close()
                    raise
                self._ledger = ledger
            return self._ledger

    def keys(self) -> KeyStore:
        self.ledger()
        assert self._keys is not None
        return self._keys

    def write(self, work: Callable[[Ledger], T]) -> T:
        ledger = self.ledger()
        with self.write_lock:
            return work(ledger)

    @contextmanager
    def reader(self, *, catch_up: bool = True) -> Iterator[ReadSide]:
        """The read side, caught up with the log, for one request at a time."""
        ledger = self.ledger()
        with self.read_lock:
            try:
                if self._read_models is None:
                    self._read_models = ReadModels(ledger)
                yield ReadSide(self._read_models, catch_up=catch_up)
            except DATABASE_ERRORS:
                self._drop_read_models()  # what it kept in memory may be half a batch
                raise

    def _drop_read_models(self) -> None:
        if self._read_models is not None:
            read_models, self._read_models = self._read_models, None
            read_models.close()

    def close(self) -> None:
        with self.read_lock:
            self._drop_read_models()
        with self._open_lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None
