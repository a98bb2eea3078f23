"""HTTP requests with timeouts, bounded retries and backoff (urllib: proxies and redirects work).

A ``Transport`` is shared by every transfer in a run: it caps concurrent connections (the
``--jobs`` slots), counts requests and bytes, and carries the run's cancel event so Ctrl-C
stops every thread between two reads.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from lab.data.registry import FetchSettings

USER_AGENT = "autograd-lab-downloader/0.1"
# answers that will not change by asking again: try the next mirror instead
PERMANENT_STATUS = {400, 401, 403, 404, 405, 410, 451}
CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class FetchError(Exception):
    """A URL could not be fetched; ``permanent`` means retrying this mirror is pointless."""

    def __init__(self, url: str, cause: str, permanent: bool = False) -> None:
        super().__init__(f"{url}: {cause}")
        self.url = url
        self.cause = cause
        self.permanent = permanent


class Cancelled(Exception):
    """The run was interrupted (Ctrl-C); progress so far has been saved."""


@dataclass
class Answer:
    """An open response: status, the byte range it covers, and the file's total size."""

    response: http.client.HTTPResponse
    status: int
    start: int
    total: int | None  # whole file size when the server said it
    validator: str | None  # ETag or Last-Modified, sent back as If-Range on later ranges

    def close(self) -> None:
        self.response.close()


class Transport:
    def __init__(self, settings: FetchSettings, jobs: int) -> None:
        self.settings = settings
        self.jobs = max(1, jobs)
        self.slots = threading.BoundedSemaphore(self.jobs)
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    def count_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes += n

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def backoff(self, attempt: int) -> None:
        """Sleep before retry number ``attempt`` (1-based); wakes at once on cancel."""
        if self.cancel.wait(self.settings.backoff * 2 ** (attempt - 1)):
            raise Cancelled()

    def open(
        self,
        url: str,
        start: int | None = None,
        end: int | None = None,
        if_range: str | None = None,
    ) -> Answer:
        """One GET, optionally for bytes [start, end) (end None = to the end of the file).

        Raises FetchError (permanent or not). The caller holds a slot while reading.
        """
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if start is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
            if if_range:
                headers["If-Range"] = if_range
        request = urllib.request.Request(url, headers=headers)
        with self._lock:
            self.requests += 1
        try:
            response = urllib.request.urlopen(request, timeout=self.settings.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416:
                raise FetchError(url, "HTTP 416 (range not satisfiable)", permanent=True) from None
            raise FetchError(
                url, f"HTTP {exc.code} {exc.reason}", permanent=exc.code in PERMANENT_STATUS
            ) from None
        except urllib.error.URLError as exc:
            # a certificate problem will not go away by retrying (a TLS-intercepting proxy?)
            raise FetchError(
                url,
                f"cannot connect ({exc.reason})",
                permanent=isinstance(exc.reason, ssl.SSLError),
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(url, describe(exc)) from None
        status = response.status
        total, begin = None, 0
        if status == 206:
            match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match:
                response.close()
                raise FetchError(url, "206 answer without a usable Content-Range")
            begin = int(match.group(1))
            total = None if match.group(3) == "*" else int(match.group(3))
        elif status == 200:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            response.close()
            raise FetchError(url, f"unexpected HTTP {status}", permanent=True)
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        if validator and validator.startswith("W/"):
            validator = None  # weak ETags may not be used with If-Range
        return Answer(response, status, begin, total, validator)


def describe(exc: BaseException) -> str:
    """A short cause for the one-line error ("timed out after 30 s", "connection reset")."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection dropped mid-transfer"
    if isinstance(exc, ConnectionError):
        return f"connection lost ({exc.__class__.__name__})"
    text = str(exc) or exc.__class__.__name__
    return text.splitlines()[0][:200]
