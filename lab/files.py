"""Writing the learner's files safely, on every OS. Stdlib and filelock only (no torch).

- :func:`atomic_write`: a temp file in the same folder, fsync, rename over the target, so a
  process killed mid-write leaves the previous file whole and never a half-written one.
- :func:`locked`: an exclusive lock beside a file (``filelock``: flock on POSIX, LockFileEx
  on Windows), released by the OS when its holder dies, even by kill -9.
- :func:`read_at` / :func:`write_at`: positional I/O on a file descriptor, ``os.pread`` /
  ``os.pwrite`` where the OS has them, a locked seek-then-read/write on Windows.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

# os.open's flag that keeps Windows from translating line endings; 0 elsewhere
O_BINARY = getattr(os, "O_BINARY", 0)
_SEEK = threading.Lock()  # one seek-then-I/O at a time where there is no pread/pwrite


def atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` all at once. ``exclusive``: only if ``path`` does not exist
    yet, even when another process races for it (the final step is then a hard link, which
    fails when the name is taken). Returns False when ``exclusive`` found it there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if not exclusive:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: exclusive create, still no overwrite
            try:
                with open(path, "xb") as out:
                    out.write(data)
            except FileExistsError:
                return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)


@contextlib.contextmanager
def locked(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file, created if missing) while in the block.
    ``on_wait`` is called once, before blocking, when another process holds it."""
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0 if on_wait else -1)
    except Timeout:
        on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def read_at(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset``, without moving a position other threads rely on."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    with _SEEK:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)


def write_at(fd: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset`` (see :func:`read_at`)."""
    view = memoryview(data)
    while view:
        if hasattr(os, "pwrite"):
            written = os.pwrite(fd, view, offset)
        else:
            with _SEEK:
                os.lseek(fd, offset, os.SEEK_SET)
                written = os.write(fd, view)
        view, offset = view[written:], offset + written
