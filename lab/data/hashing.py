"""Checksums, in one place: the algorithms the lab computes and accepts, hashing a file or a
part file as it fills, and comparing against what a registry publishes.

Every download is hashed with all of ``ALGORITHMS`` at once (one read), so a registry may
publish any of them. A file without a published checksum gets its ``PIN`` digest remembered
in the manifest, to catch a changed copy later.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lab.files import read_at

ALGORITHMS = {"md5": 32, "sha256": 64}  # name -> length of its hex digest
PIN = "sha256"
BLOCK = 1 << 20  # read size when hashing files on disk


def _hashers() -> dict:
    return {name: hashlib.new(name) for name in ALGORITHMS}


def hash_file(path: Path) -> dict[str, str]:
    hashers = _hashers()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            for h in hashers.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashers.items()}


class PrefixHasher:
    """Follows the contiguous written prefix of a file that is being filled in."""

    def __init__(self) -> None:
        self.hashers = _hashers()
        self.upto = 0

    def update(self, data: bytes) -> None:
        for h in self.hashers.values():
            h.update(data)
        self.upto += len(data)

    def advance(self, fd: int, limit: int) -> None:
        while self.upto < limit:
            data = read_at(fd, min(BLOCK, limit - self.upto), self.upto)
            if not data:
                raise OSError(f"part file shorter than expected at byte {self.upto}")
            self.update(data)

    def digests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self.hashers.items()}


def parse_digests(raw: dict, where: str) -> dict[str, str | None]:
    """``{algorithm: lowercase hex or None}`` from a registry entry; ValueError if malformed."""
    sums: dict[str, str | None] = {}
    for name, length in ALGORITHMS.items():
        value = raw.get(name)
        if value is not None:
            value = str(value).lower()
            if len(value) != length or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(f"{where}: {name} {raw.get(name)!r} is not a hex digest")
        sums[name] = value
    return sums


def published(spec) -> dict[str, str]:
    """The checksums a registry file entry publishes (its fields named after ALGORITHMS)."""
    return {name: value for name in ALGORITHMS if (value := getattr(spec, name, None))}


def mismatch(expected: dict[str, str], sums: dict[str, str]) -> str | None:
    """None when every expected digest matches ``sums``; else the first that does not."""
    for name, value in expected.items():
        if sums.get(name) != value:
            return f"{name} mismatch (got {sums.get(name)}, registry says {value})"
    return None
