"""One URL's connections, shared by both ways of fetching a file (stream.py, ranged.py):
connection slots, reading an answer, counting bytes, and the retry budget."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lab.data.transport import Answer, FetchError, Transport, describe

BLOCK = 1 << 16  # read size; also how often a connection notices cancel/abort
# A connection that made progress before it failed earns a fresh run of retries, but a
# segment gets at most this many times `retries` reconnects in all: a mirror that cuts every
# answer after a few KB then falls through to the next mirror instead of trickling forever.
RECONNECTS_PER_RETRY = 4


class Retries:
    """The retry budget of one fetch loop: ``retries`` failures in a row, then give up. A
    failure after progress starts a fresh run, but never more than RECONNECTS_PER_RETRY times
    ``retries`` failures in all. Waits the transport's backoff between tries."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.limit = transport.settings.retries
        self.budget = RECONNECTS_PER_RETRY * max(1, self.limit)
        self.streak = self.total = 0

    def failed(self, exc: FetchError, progressed: bool = False) -> None:
        """Raise ``exc`` when it is permanent or the budget is spent; else wait, return."""
        if exc.permanent:
            raise exc
        self.streak = 1 if progressed else self.streak + 1
        self.total += 1
        if self.streak > self.limit or self.total > self.budget:
            raise exc
        self.t.backoff(self.streak)


class Restart(Exception):
    """The server stopped honouring Range, or the file changed between requests."""


@dataclass
class Result:
    sums: dict[str, str]  # every hashing.ALGORITHMS digest of the whole file
    size: int
    resumed: int  # bytes that were already there when this run started
    fetched: int  # bytes received in this run
    ranged: bool


class Connection:
    """Requests for one URL through the transport's shared connection slots."""

    def __init__(
        self,
        transport: Transport,
        url: str,
        size_hint: int | None,
        progress: Callable[[int], None],
    ) -> None:
        self.t = transport
        self.url = url
        self.size_hint = size_hint
        self.progress = progress
        self.fetched = 0
        self._count_lock = threading.Lock()

    def open_with_retries(self, start: int | None, end: int | None) -> Answer:
        """Open a request holding a slot (the caller releases it when the answer is done)."""
        retries = Retries(self.t)
        while True:
            self.acquire_slot(None)
            try:
                return self.t.open(self.url, start, end)
            except FetchError as exc:
                self.t.slots.release()
                retries.failed(exc)

    def check_size(self, total: int | None) -> None:
        if self.size_hint is not None and total is not None and total != self.size_hint:
            raise FetchError(
                self.url,
                f"serves {total} bytes but the registry says {self.size_hint}",
                permanent=True,
            )

    @contextmanager
    def reading(self, answer: Answer, failed: list[FetchError]) -> Iterator[None]:
        """Read one answer: a network or fetch error lands in ``failed`` (the caller decides
        whether to retry); the answer is closed and its connection slot freed either way."""
        try:
            yield
        except (OSError, http.client.HTTPException) as exc:
            failed.append(FetchError(self.url, describe(exc)))
        except FetchError as exc:
            failed.append(exc)
        finally:
            answer.close()
            self.t.slots.release()

    def acquire_slot(self, abort: threading.Event | None) -> bool:
        while not self.t.slots.acquire(timeout=0.2):
            self.t.check_cancel()
            if abort is not None and abort.is_set():
                return False
        return True

    def count(self, n: int) -> None:
        with self._count_lock:
            self.fetched += n
        self.t.count_bytes(n)
        self.progress(n)
