"""One download at a time per data dir: :func:`lab.files.locked` on ``<data>/.lab-download.lock``.

A second run waits for the first and then finds its work done (it rechecks everything after
taking the lock). The OS drops the lock when the holder dies, even by kill -9, so a crashed
run never leaves the data dir locked. The holder writes its pid beside the lock
(``.lab-download.lock.pid``) for the waiting message; the lock file itself belongs to
``filelock``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from lab.files import atomic_write, locked

LOCK_NAME = ".lab-download.lock"


class DataDirLock:
    def __init__(self, data_dir: Path, on_wait: Callable[[str], None] | None = None) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self.holder = self.path.with_name(LOCK_NAME + ".pid")
        self.on_wait = on_wait
        self._held = contextlib.ExitStack()

    def _waiting(self) -> None:
        try:
            holder = self.holder.read_text(errors="replace").strip() or "?"
        except OSError:
            holder = "?"
        if self.on_wait:
            self.on_wait(
                f"another download (pid {holder}) is using {self.path.parent}; "
                "waiting for it to finish"
            )

    def __enter__(self) -> DataDirLock:
        try:
            self._held.enter_context(locked(self.path, on_wait=self._waiting))
        except OSError:
            # A read-only data dir, or a lock file another user owns: no lock. A rerun with
            # nothing to do then still succeeds; one that must write fails on that write,
            # with its own message.
            return self
        with contextlib.suppress(OSError):  # who holds it, for the waiting message
            atomic_write(self.holder, str(os.getpid()).encode())
        self._held.callback(_remove, self.holder)
        return self

    def __exit__(self, *exc) -> None:
        self._held.close()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
