"""Unpacking downloads without trusting them: safe tar/zip extraction, gunzip, layout checks.

An archive is refused as a whole (UnsafeArchive) when any member has an absolute path, a
``..`` component, a link pointing outside the extraction root, or is a device/FIFO. It is
extracted into a temp dir next to the target and only its expected top folder is renamed
into place, so the target is either the old complete copy or the new complete copy.
"""

from __future__ import annotations

import gzip
import os
import platform
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from lab.data.store import fsync_dir


class UnsafeArchive(Exception):
    """The archive tries to write outside its folder, or holds links/devices we refuse."""


class CorruptArchive(Exception):
    """The archive cannot be read, or lacks what the registry says it holds."""


def _check_name(name: str, archive: str) -> str:
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"{archive}: member {name!r} has an absolute path")
    if ".." in name.split("/"):
        raise UnsafeArchive(f"{archive}: member {name!r} climbs out with '..'")
    return name


def _check_link(name: str, target: str, archive: str, kind: str) -> None:
    # symlink targets are relative to the link's folder; hard links to the archive root
    base = posixpath.dirname(name) if kind == "symlink" else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchive(f"{archive}: {kind} {name!r} points outside ({target!r})")


def _scan_tar(tar: tarfile.TarFile, archive: str) -> None:
    for member in tar.getmembers():
        name = _check_name(member.name, archive)
        if member.isdev() or member.isfifo():
            raise UnsafeArchive(f"{archive}: member {name!r} is a device or FIFO")
        if member.issym():
            _check_link(name, member.linkname, archive, "symlink")
        elif member.islnk():
            _check_link(name, member.linkname, archive, "hard link")


def _scan_zip(archive_zip: zipfile.ZipFile, archive: str) -> None:
    for info in archive_zip.infolist():
        name = _check_name(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            _check_link(name, archive_zip.read(info).decode(errors="replace"), archive, "symlink")
        elif stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchive(f"{archive}: member {name!r} is a device or FIFO")


# Extraction filters came with Python 3.11.4 (and security backports); Debian bookworm's
# 3.11.2, the lab image's Python, lacks them.
HAS_TAR_FILTERS = hasattr(tarfile, "data_filter")
_FILTER_ERRORS = (tarfile.FilterError,) if HAS_TAR_FILTERS else ()


def _extract_tar(tar: tarfile.TarFile, dest: Path, label: str) -> None:
    if HAS_TAR_FILTERS:
        # the "data" filter re-checks each member against the real paths on disk
        tar.extractall(dest, filter="data")
        return
    # Without it a chain of links can reach outside although each one looks harmless on its
    # own: refuse links altogether (no dataset we fetch has any).
    for member in tar.getmembers():
        if member.issym() or member.islnk():
            raise UnsafeArchive(
                f"{label}: member {member.name!r} is a link, which this Python "
                f"({platform.python_version()}) cannot extract safely"
            )
    tar.extractall(dest)  # noqa: S202 - every member was checked above


def _unpack_into(archive: Path, dest: Path) -> None:
    label = archive.name
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _scan_zip(zf, label)
                bad = zf.testzip()  # CRC of every member, before anything lands
                if bad is not None:
                    raise CorruptArchive(f"{label}: member {bad!r} fails its CRC")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tar:
                _scan_tar(tar, label)
                _extract_tar(tar, dest, label)
    except _FILTER_ERRORS as exc:
        raise UnsafeArchive(f"{label}: {exc}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # disk full, permissions: not the archive's fault
        raise CorruptArchive(f"{label}: cannot be unpacked ({exc})") from None


def extract(archive: Path, data_dir: Path, top: str, layout: dict | None = None) -> Path:
    """Safely unpack ``archive`` and move its ``top`` folder to ``data_dir/top``; returns it.

    ``layout`` entries under ``top`` are checked before anything is moved into place.
    """
    data_dir = Path(data_dir)
    target = data_dir / top
    target.parent.mkdir(parents=True, exist_ok=True)
    # leftovers of a run killed mid-extraction (callers hold the data dir lock)
    for stale in [
        *target.parent.glob(f".extract-{target.name}-*"),
        *target.parent.glob(f".{target.name}.old-*"),
    ]:
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".extract-{target.name}-", dir=target.parent))
    try:
        _unpack_into(archive, staging)
        produced = staging / top
        if not produced.is_dir():
            raise CorruptArchive(f"{archive.name}: has no {top}/ folder")
        inside = {k: v for k, v in (layout or {}).items() if k == top or k.startswith(top + "/")}
        problems = layout_problems(staging, inside)
        if problems:
            raise CorruptArchive(f"{archive.name}: unpacked layout is wrong: {'; '.join(problems)}")
        _fsync_tree(produced)  # durable before the manifest says it is there
        old = None
        if target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(produced, target)
        fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        fsync_dir(Path(folder))


def gunzip(source: Path, target: Path) -> None:
    """Decompress ``source`` to ``target`` via a temp name (the CRC is checked at the end)."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with gzip.open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        tmp.unlink(missing_ok=True)
        raise CorruptArchive(f"{source.name}: cannot be decompressed ({exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def layout_problems(data_dir: Path, layout: dict) -> list[str]:
    """What differs from the registry's layout (empty when it all matches). Cheap: listings."""
    problems = []
    for folder, expected in layout.items():
        path = Path(data_dir) / folder
        if not path.is_dir():
            problems.append(f"{folder}/ is missing")
            continue
        names = {p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")}
        if isinstance(expected, int):
            if len(names) != expected:
                problems.append(f"{folder}/ holds {len(names)} files, expected {expected}")
        else:
            missing = sorted(set(expected) - names)
            if missing:
                problems.append(f"{folder}/ lacks {', '.join(missing)}")
    return problems
