"""The Docker engine: is the CLI installed, is the daemon reachable, can it hand out GPUs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.host import HostProblem, ask

INFO = "docker info --format '{{json .}}'"
# where CDI specs live when the engine does not say (CDI off, or an older engine)
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")

NOT_INSTALLED = (
    "Docker is not installed: install Docker Engine "
    "(https://docs.docker.com/engine/install/), then run this again"
)
NO_PERMISSION = (
    "Docker is installed but this user may not use it: "
    "`sudo usermod -aG docker $USER`, log in again, then run this again"
)
NOT_REACHABLE = (
    "The Docker daemon is not reachable: start it (`sudo systemctl start docker`, "
    "or open Docker Desktop), then run this again"
)

COMMAND_NOT_FOUND = 127  # the shell's answer when no `docker` is on PATH


def engine_info(c) -> dict[str, Any]:
    """``docker info`` as a dict; raises HostProblem when the CLI or the daemon is missing."""
    result = ask(c, INFO)
    if result.exited == COMMAND_NOT_FOUND:
        raise HostProblem(NOT_INSTALLED)
    if result.exited != 0:
        raise HostProblem(
            NO_PERMISSION if "permission denied" in result.stderr.lower() else NOT_REACHABLE
        )
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise HostProblem(NOT_REACHABLE) from None


def nvidia_available(info: dict[str, Any], cdi_dirs: tuple[str, ...] = CDI_DIRS) -> bool:
    """Can containers on this engine get an NVIDIA GPU (compose's ``driver: nvidia``)?

    Yes when the NVIDIA runtime is registered (``nvidia-ctk runtime configure``), when the
    engine discovered ``nvidia.com/gpu`` CDI devices (recent engines serve the request
    through CDI), or when an NVIDIA CDI spec exists (``nvidia-ctk cdi generate``; it comes
    with the toolkit whose hook serves the request). ``lab doctor`` judges the same way.
    """
    if "nvidia" in (info.get("Runtimes") or {}):
        return True
    devices = info.get("DiscoveredDevices") or []
    if any(str(device.get("ID", "")).startswith("nvidia.com/gpu") for device in devices):
        return True
    return any(_nvidia_specs(Path(folder)) for folder in info.get("CDISpecDirs") or cdi_dirs)


def _nvidia_specs(folder: Path) -> list[Path]:
    try:
        return sorted(folder.glob("nvidia*"))
    except OSError:  # unreadable: as good as absent
        return []
