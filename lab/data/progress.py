"""What a download run tells people: one byte-counting tqdm bar and short status lines.

``Quiet`` says nothing (``--quiet``, and ``--json`` where stdout belongs to the summary).
Transfers call ``advance`` from many threads, hence the lock.
"""

from __future__ import annotations

import sys
import threading


class Quiet:
    def say(self, message: str) -> None:
        pass

    def expect(self, size: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class Bar(Quiet):
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._bar = None
        self._unknown = False

    def say(self, message: str) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.write(message, file=self.stream)
            else:
                print(message, file=self.stream, flush=True)

    def expect(self, size: int | None) -> None:
        """A file is about to be fetched: grow the bar's total (unknown sizes hide it)."""
        try:
            from tqdm import tqdm  # imported only when something is actually downloaded
        except ImportError:  # a bare interpreter: status lines only
            return
        with self._lock:
            if self._bar is None:
                self._bar = tqdm(
                    total=0,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc="downloading",
                    file=self.stream,
                    dynamic_ncols=True,
                    mininterval=0.2,
                    disable=None,
                )  # None: off when not a TTY
            if size is None:
                self._unknown = True
                self._bar.total = None
            elif not self._unknown:
                self._bar.total += size
            self._bar.refresh()

    def advance(self, n: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(n)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
