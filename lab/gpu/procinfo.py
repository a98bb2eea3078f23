"""What this machine's /proc says about a GPU process NVML listed: name, user, command line.

NVML answers with the host's pids, even inside a container (the driver does not know PID
namespaces): there a pid is usually absent, or is some unrelated process of the container's
own. So a process is only described when it has an NVIDIA device open. Everything read here
is bytes the kernel gives us (``comm`` is cut at 15 bytes, possibly mid-character), decoded
leniently: a name is never worth a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    name: str | None
    user: str | None
    command: str | None


UNKNOWN = ProcessInfo(None, None, None)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def describe(pid: int, proc_root: Path = PROC) -> ProcessInfo:
    """The process as /proc shows it, or all None when this machine cannot see it."""
    base = Path(proc_root) / str(pid)
    if not _has_nvidia_device_open(base):
        return UNKNOWN
    try:
        comm = _decode((base / "comm").read_bytes()).strip()
        argv = [_decode(part) for part in (base / "cmdline").read_bytes().split(b"\0") if part]
        owner = (base).stat().st_uid
    except OSError:
        return UNKNOWN
    name = comm or (Path(argv[0]).name if argv else None)
    return ProcessInfo(name or None, _user(owner), " ".join(argv) or None)


def _user(uid: int) -> str:
    try:
        import pwd  # POSIX only; there is no /proc to get here from on Windows anyway
    except ImportError:
        return str(uid)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)  # a uid without a name here (e.g. a container's user)


def _has_nvidia_device_open(base: Path) -> bool:
    try:
        descriptors = os.listdir(base / "fd")
    except PermissionError:
        return True  # another user's process: cannot check, and on the host the pid is right
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(base / "fd" / descriptor).startswith("/dev/nvidia"):
                return True
        except OSError:
            continue  # closed while we looked
    return False
