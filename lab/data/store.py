"""Durable small files: atomic JSON writes, and the manifest of what has been verified.

The manifest (``<data>/.lab-manifest.json``) lets a rerun trust a file without re-hashing it:
an entry records the size and mtime seen right after the file was verified, with its
checksums. A file whose size or mtime changed since is hashed again (locally, no request).
It also holds the sha256 "pins" of archives that have no published checksum.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

from lab.data.hashing import PIN

MANIFEST_NAME = ".lab-manifest.json"


def fsync_dir(path: Path) -> None:
    """Make a rename/creation inside ``path`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to a temp name, fsync, rename over ``path``: never a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# write_json_atomic's temp names, and gunzip's: ".<name>.<pid>.<thread>.tmp", ".<name>.tmp"
_TEMP = re.compile(r"^\..+(\.\d+\.\d+)?\.tmp$")


def remove_stale_temps(folder: Path) -> None:
    """Delete the temp files of writers that died before their rename (kill -9). Only the
    holder of the data dir lock writes these, so under the lock every one is stale."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.is_file()]
    except OSError:
        return
    for name in filter(_TEMP.match, names):
        try:
            (folder / name).unlink()
        except OSError:
            pass  # a read-only data dir: harmless, and a no-op rerun must not fail on it


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or torn: treated as "nothing known"


def stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class Manifest:
    """What this data dir has verified. Thread-safe; every change is saved atomically."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / MANIFEST_NAME
        loaded = read_json(self.path) or {}
        self.files: dict = loaded.get("files", {})  # relpath -> {size, mtime_ns, md5, sha256}
        self.pins: dict = loaded.get("pins", {})  # file key -> {sha256, since}
        # extracted folder -> its archive's sums ("landed": what manifests called it before)
        self.unpacked: dict = loaded.get("unpacked", loaded.get("landed", {}))
        self._lock = threading.Lock()

    def save(self) -> None:
        with self._lock:
            payload = {"files": self.files, "pins": self.pins, "unpacked": self.unpacked}
            write_json_atomic(self.path, payload)

    # files -------------------------------------------------------------------------------
    def record_file(self, root: Path, relpath: str, sums: dict[str, str], **extra) -> None:
        key = stat_key(root / relpath)
        if key is None:
            return
        with self._lock:
            self.files[relpath] = {"size": key[0], "mtime_ns": key[1], **sums, **extra}
        self.save()

    def trusted(self, root: Path, relpath: str) -> dict | None:
        """The recorded entry when the file is unchanged since it was verified, else None."""
        entry = self.files.get(relpath)
        key = stat_key(root / relpath)
        if entry and key and (entry.get("size"), entry.get("mtime_ns")) == key:
            return entry
        return None

    def forget(self, relpath: str) -> None:
        with self._lock:
            self.files.pop(relpath, None)
            self.unpacked.pop(relpath, None)
        self.save()

    # pins: the PIN digest of files without a published checksum --------------------------------
    def pin(self, key: str) -> str | None:
        return (self.pins.get(key) or {}).get(PIN)

    def set_pin(self, key: str, digest: str) -> None:
        with self._lock:
            self.pins[key] = {PIN: digest, "since": time.strftime("%Y-%m-%d")}
        self.save()

    # extracted folders: which archive (by its checksums) they came from ------------------
    def set_unpacked(self, folder: str, source_sums: dict[str, str]) -> None:
        with self._lock:
            self.unpacked[folder] = dict(source_sums)
        self.save()

    def unpacked_sums(self, folder: str) -> dict | None:
        return self.unpacked.get(folder)
