"""The Docker engine: is the CLI installed, is the daemon reachable, can it hand out GPUs.

:func:`gpu_support` is the one judgement of "will Compose's ``driver: nvidia`` reservation
work on this engine"; ``invoke up`` and ``lab doctor`` both ask it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.host import HostProblem, ask

INFO = "docker info --format '{{json .}}'"
# where CDI specs live when the engine does not say (an engine older than CDI)
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
# dockerd's PATH under systemd (and the Docker packages' unit): where it looks for the hooks
DAEMON_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
HOOK = "nvidia-container-runtime-hook"  # dockerd registers its `nvidia` device driver on it
CDI_HOOK = "nvidia-cdi-hook"
# moby#50228: from Docker 29, with CDI on, `driver: nvidia` is also served through CDI
# when nvidia-cdi-hook is installed, even without the runtime hook
CDI_GPUS_SINCE = (29, 0)

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
INSTALL_TOOLKIT = (
    "install the NVIDIA Container Toolkit (package nvidia-container-toolkit: it brings "
    f"{HOOK}, which Compose's GPU reservation needs; "
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/"
    "install-guide.html), then `sudo systemctl restart docker`"
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


@dataclass(frozen=True)
class GpuSupport:
    """Will ``deploy.resources.reservations.devices: [{driver: nvidia}]`` work here?"""

    available: bool
    detail: str  # how it is served, or why not
    fix: str = ""


def _version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _on_daemon_path(program: str) -> bool:
    return any(os.access(Path(folder) / program, os.X_OK) for folder in DAEMON_PATH)


def _nvidia_cdi_devices(info: dict[str, Any], folders) -> bool:
    devices = info.get("DiscoveredDevices") or []
    if any(str(device.get("ID", "")).startswith("nvidia.com/gpu") for device in devices):
        return True
    return any(_nvidia_specs(Path(folder)) for folder in folders)


def gpu_support(info: dict[str, Any]) -> GpuSupport:
    """What the engine will do with the lab's GPU reservation, judged as dockerd does.

    dockerd serves ``driver: nvidia`` with its NVIDIA device driver, which it registers at
    start when ``nvidia-container-runtime-hook`` is on its PATH (whether or not ``nvidia-ctk
    runtime configure`` registered the ``nvidia`` runtime; a registered runtime means the
    toolkit, hook included, is installed). Docker 29+ with CDI enabled also serves it through
    the NVIDIA CDI spec when ``nvidia-cdi-hook`` is installed. ``CDISpecDirs: []`` in
    ``docker info`` means CDI is disabled, so a spec on disk is then no help.
    """
    if _on_daemon_path(HOOK):
        return GpuSupport(True, f"{HOOK} is installed: Docker can hand out NVIDIA GPUs")
    if "nvidia" in (info.get("Runtimes") or {}):
        return GpuSupport(True, "the `nvidia` runtime is registered: Docker can hand out GPUs")
    spec_dirs = info.get("CDISpecDirs")
    has_spec = _nvidia_cdi_devices(info, spec_dirs or CDI_DIRS)
    if has_spec and spec_dirs:  # CDI is on
        if _version(info.get("ServerVersion", "")) >= CDI_GPUS_SINCE and _on_daemon_path(CDI_HOOK):
            return GpuSupport(True, "CDI is on with an NVIDIA spec: Docker hands out GPUs via CDI")
        return GpuSupport(
            False,
            f"an NVIDIA CDI spec exists, but this Docker ({info.get('ServerVersion', '?')}) "
            f"serves GPU reservations only through {HOOK}, which is not installed",
            INSTALL_TOOLKIT,
        )
    if has_spec:
        off = "disabled in dockerd" if spec_dirs == [] else "not supported by this Docker"
        return GpuSupport(
            False, f"an NVIDIA CDI spec exists but CDI is {off}, and no {HOOK}", INSTALL_TOOLKIT
        )
    return GpuSupport(False, f"no {HOOK} and no NVIDIA CDI device", INSTALL_TOOLKIT)


def _nvidia_specs(folder: Path) -> list[Path]:
    try:
        return sorted(folder.glob("nvidia*"))
    except OSError:  # unreadable: as good as absent
        return []
