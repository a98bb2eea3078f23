"""Writing the learner's files safely, on every OS. Stdlib and filelock only (no torch).

- :func:`atomic_write`: a temp file in the same folder, fsync, rename over the target, so a
  process killed mid-write leaves the previous file whole and never a half-written one.
- :func:`locked`: an exclusive lock beside a file (``filelock``: flock on POSIX, LockFileEx
  on Windows), released by the OS when its holder dies, even by kill -9.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file, created if missing) while in the block."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield
