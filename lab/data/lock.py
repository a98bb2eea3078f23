"""One download at a time per data dir: an exclusive ``flock`` on ``<data>/.lab-download.lock``.

A second run waits for the first and then finds its work done (it rechecks everything after
taking the lock). The kernel drops the lock when the holder dies, even by kill -9, so a
crashed run never leaves the data dir locked.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

LOCK_NAME = ".lab-download.lock"


class DataDirLock:
    def __init__(self, data_dir: Path, on_wait: Callable[[str], None] | None = None) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self.on_wait = on_wait
        self._fd: int | None = None
        self._writable = False

    def __enter__(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._writable = True
        except OSError:
            # A read-only data dir, or a lock file another user created: lock read-only (flock
            # needs no write access), or not at all when the file cannot even be opened.
            # A rerun with nothing to do then still succeeds; one that must write fails on
            # that write, with its own message.
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return self
            self._writable = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            if self.on_wait:
                self.on_wait(
                    f"another download (pid {holder}) is using {self.path.parent}; "
                    "waiting for it to finish"
                )
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        if self._writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)  # who holds it, for the waiting message
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            if self._writable:
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
