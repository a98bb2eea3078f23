"""The container engine behind the ``docker`` CLI, and whether it can hand out an NVIDIA GPU.

:func:`engine` reads what the CLI answers (``docker info``, ``docker version``, the active
context's endpoint) into an :class:`Engine`: Docker Engine (rootful, rootless or
userns-remapped), Docker Desktop (Windows with WSL 2 or Hyper-V, macOS, Linux) or Podman (its
``docker`` shim, or its Docker API socket), on this machine or remote.

:func:`gpu_support` is the one judgement of "will the lab's GPU request work on this engine,
and through which compose file"; ``invoke up`` and ``lab doctor`` both ask it, so they give
the same answer (tests/host/test_engines.py runs both over captured engines).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab.host import HostProblem, ask, version_tuple

INFO = ("docker", "info", "--format", "{{json .}}")
VERSION = ("docker", "version", "--format", "{{json .}}")
# where CDI specs live when the engine does not say (an engine older than CDI, Podman)
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
# dockerd's PATH under systemd (and the Docker packages' unit): where it looks for the hooks
DAEMON_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
HOOK = "nvidia-container-runtime-hook"  # dockerd registers its `nvidia` device driver on it
CDI_HOOK = "nvidia-cdi-hook"
# moby#50228, first released in Docker 29.2.0: with CDI on, `driver: nvidia` is also served
# through the NVIDIA CDI spec when nvidia-cdi-hook is installed, without the runtime hook
CDI_GPUS_SINCE = (29, 2, 0)
# Podman hands Docker Compose's `devices: [nvidia.com/gpu=all]` to CDI from 5.4.0 (podman#25196)
PODMAN_CDI_SINCE = (5, 4, 0)
TOOLKIT_CONFIG = Path("/etc/nvidia-container-runtime/config.toml")
PODMAN_OVERRIDE = "compose.podman.yaml"  # keep-id and the GPU as a CDI device
COMMAND_NOT_FOUND = (127, 9009)  # bash's and cmd.exe's answer when no `docker` is on PATH
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

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
WINDOWS_CONTAINERS = (
    "Docker Desktop runs Windows containers: switch it to Linux containers (its tray menu), "
    "then run this again"
)
REMOTE = (
    "Docker's engine is remote ({endpoint}): it bind-mounts paths of its own machine, where "
    "this checkout is not, so the lab's lessons would be empty; clone the lab there and run "
    "`invoke up` on that machine (tunnel ports 8888 and 6006 with `ssh -L`)"
)
TOOLKIT_URL = (
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"
)


RESTART = "sudo systemctl restart docker"


def install_toolkit(restart: str = RESTART) -> str:
    return (
        f"install the NVIDIA Container Toolkit (package nvidia-container-toolkit: it brings "
        f"{HOOK}, which Compose's GPU reservation needs; {TOOLKIT_URL}), then `{restart}`"
    )


INSTALL_TOOLKIT = install_toolkit()


def engine_info(c) -> dict[str, Any]:
    """``docker info`` as a dict; raises HostProblem when the CLI or the daemon is missing."""
    result = ask(c, INFO)
    if result.exited in COMMAND_NOT_FOUND:
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
class Engine:
    """What the ``docker`` CLI talks to. ``info`` is ``docker info`` in Docker's field names
    (Podman's own ``podman info``, which its ``docker`` shim prints, is translated)."""

    info: dict[str, Any]
    version: dict[str, Any] = field(default_factory=dict)
    endpoint: str = ""  # DOCKER_HOST or the context's; "" = the CLI's default socket

    @classmethod
    def read(cls, info: dict, version: dict | None = None, endpoint: str = "") -> Engine:
        if "host" in info and "store" in info:  # `podman info` (podman-docker's `docker`)
            host, store = info["host"], info["store"]
            info = {
                "ServerVersion": (info.get("version") or {}).get("Version", ""),
                "OperatingSystem": (host.get("distribution") or {}).get("distribution", ""),
                "OSType": host.get("os", "linux"),
                "Architecture": host.get("arch", ""),
                "KernelVersion": host.get("kernel", ""),
                "DockerRootDir": store.get("graphRoot", ""),
                "SecurityOptions": ["name=rootless"]
                if (host.get("security") or {}).get("rootless")
                else [],
                "Podman": True,
            }
        return cls(info, version or {}, endpoint)

    @property
    def podman(self) -> bool:
        components = (self.version.get("Server") or {}).get("Components") or []
        named = any("podman" in str(part.get("Name", "")).lower() for part in components)
        return bool(self.info.get("Podman")) or named

    @property
    def server_version(self) -> tuple[int, int, int]:
        return version_tuple(self.info.get("ServerVersion", ""))

    @property
    def rootless(self) -> bool:
        options = " ".join(self.info.get("SecurityOptions") or [])
        if "name=rootless" in options:
            return True
        # a Podman socket that does not say: rootless Podman keeps its images in $HOME
        return self.podman and not str(self.info.get("DockerRootDir", "")).startswith("/var/")

    @property
    def desktop(self) -> str | None:
        """Docker Desktop's host OS (windows, macos, linux); None for anything else."""
        if self.info.get("OperatingSystem") != "Docker Desktop":
            return None
        client = (self.version.get("Client") or self.info.get("ClientInfo") or {}).get("Os", "")
        if self.wsl2 or client == "windows":
            return "windows"
        return "macos" if client == "darwin" else "linux"

    @property
    def wsl2(self) -> bool:
        return "microsoft" in str(self.info.get("KernelVersion", "")).lower()

    @property
    def remote(self) -> bool:
        scheme, _, _ = self.endpoint.partition("://")
        if scheme == "ssh":
            return True
        if scheme in ("tcp", "http", "https"):
            return urlsplit(self.endpoint).hostname not in LOCAL_HOSTS
        return False

    @property
    def label(self) -> str:
        """For people: "Docker Desktop 4.34.0 (Windows, WSL 2), engine 27.2.0" ..."""
        served = self.info.get("ServerVersion", "?")
        if self.podman:
            return f"Podman {served}{' (rootless)' if self.rootless else ''}"
        if self.desktop:
            platform = (self.version.get("Server") or {}).get("Platform") or {}
            name = platform.get("Name") or "Docker Desktop"
            where = {"windows": "Windows", "macos": "macOS", "linux": "Linux"}[self.desktop]
            backend = ", WSL 2" if self.wsl2 else ", Hyper-V" if self.desktop == "windows" else ""
            name = re.sub(r" \(\d+\)$", "", name)  # "Docker Desktop 4.34.0 (165256)"
            return f"{name} ({where}{backend}), engine {served}"
        return f"{'rootless ' if self.rootless else ''}Docker {served}"


def _endpoint(c, info: dict, environ) -> str:
    """Where the CLI sends requests: DOCKER_CONTEXT beats DOCKER_HOST beats the current context."""
    context = environ.get("DOCKER_CONTEXT") or (info.get("ClientInfo") or {}).get("Context")
    if not context or context == "default":
        return environ.get("DOCKER_HOST", "")
    answer = ask(c, ["docker", "context", "inspect", context, "--format", "{{json .Endpoints}}"])
    try:
        return str(json.loads(answer.stdout)["docker"]["Host"]) if answer.exited == 0 else ""
    except (ValueError, KeyError, TypeError):
        return ""


def engine(c, environ=None) -> Engine:
    """The engine, read; HostProblem when the CLI or the daemon is missing, or the engine can
    run no Linux container (Docker Desktop in Windows-containers mode)."""
    environ = os.environ if environ is None else environ
    info = engine_info(c)
    answer = ask(c, VERSION)
    try:
        version = json.loads(answer.stdout) if answer.exited == 0 else {}
    except ValueError:
        version = {}
    if info.get("OSType", "linux") == "windows":
        raise HostProblem(WINDOWS_CONTAINERS)
    version = version if isinstance(version, dict) else {}
    return Engine.read(info, version, _endpoint(c, info, environ))


def remote_problem(found: Engine) -> str | None:
    """The one line for an engine this checkout's bind mounts cannot reach; None when local."""
    return REMOTE.format(endpoint=found.endpoint) if found.remote else None


# --- this machine ---------------------------------------------------------------------------


@dataclass
class Host:
    """What this machine says about GPUs. ``nvml_module``: None is the real pynvml."""

    platform: str = field(default_factory=lambda: sys.platform)
    nvml_module: object | None = None

    @cached_property
    def nvidia_gpus(self) -> int:
        """NVIDIA GPUs NVML sees here (on Windows and in WSL 2: the PC's, via its driver)."""
        from lab.gpu.nvml import NvmlUnavailable, open_nvml

        try:
            with open_nvml(self.nvml_module) as nvml:
                return nvml.device_count()
        except NvmlUnavailable:
            return 0

    @property
    def macos(self) -> bool:
        return self.platform == "darwin"


def on_macos(found: Engine | None, host: Host) -> bool:
    """The lab runs on a Mac: this machine is one, or Docker Desktop says it runs on one."""
    return host.macos or (found is not None and found.desktop == "macos")


def _on_daemon_path(program: str) -> bool:
    return any(os.access(Path(folder) / program, os.X_OK) for folder in DAEMON_PATH)


def _nvidia_specs(folder: Path) -> list[Path]:
    try:
        return sorted(folder.glob("nvidia*"))
    except OSError:  # unreadable: as good as absent
        return []


def _nvidia_cdi_devices(info: dict[str, Any], folders) -> bool:
    devices = info.get("DiscoveredDevices") or []
    if any(str(device.get("ID", "")).startswith("nvidia.com/gpu") for device in devices):
        return True
    return any(_nvidia_specs(Path(folder)) for folder in folders)


def no_cgroups(config: Path | None = None) -> bool:
    """Is ``no-cgroups = true`` set for nvidia-container-cli (what rootless engines need)?"""
    try:
        text = (config or TOOLKIT_CONFIG).read_text()
    except OSError:
        return False
    return re.search(r"^\s*no-cgroups\s*=\s*true\b", text, re.M) is not None


# --- the judgement --------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSupport:
    """Will the lab's GPU request work here?"""

    available: bool
    detail: str  # how it is served, or why not
    fix: str = ""


def gpu_support(found: Engine, host: Host | None = None) -> GpuSupport:
    """What the engine will do with the lab's GPU request, judged as the engine does.

    dockerd serves ``driver: nvidia`` with its NVIDIA device driver, which it registers at
    start when ``nvidia-container-runtime-hook`` is on its PATH; a registered ``nvidia``
    runtime alone says nothing (nvidia-container-toolkit-base ships the runtime without the
    hook; Docker Desktop lists it on every install since 4.34). Docker 29.2+ with CDI
    enabled also serves it through the NVIDIA CDI spec when ``nvidia-cdi-hook`` is installed
    (``CDISpecDirs: []`` means CDI is off). Docker Desktop hands out the GPU of the PC
    itself, on Windows with the WSL 2 backend only; Podman ignores ``driver: nvidia`` and
    takes the GPU as a CDI device (compose.podman.yaml).
    """
    host = host or Host()
    if found.remote:  # nothing of that machine can be looked at from here but its answers
        listed = "nvidia" in (found.info.get("Runtimes") or {}) or _nvidia_cdi_devices(
            found.info, ()
        )
        return GpuSupport(listed, f"a remote engine ({found.endpoint}), judged by `docker info`")
    if on_macos(found, host):
        return GpuSupport(False, "no NVIDIA GPU on macOS: lessons run on the CPU")
    if found.desktop == "windows":
        return _desktop_windows(found, host)
    if found.desktop == "linux":
        return GpuSupport(
            False,
            "Docker Desktop for Linux runs containers in a VM without GPU access",
            "for the GPU use Docker Engine with the NVIDIA Container Toolkit "
            f"(`docker context use default`; {TOOLKIT_URL})",
        )
    if found.podman:
        return _podman(found)
    return _docker(found)


def _desktop_windows(found: Engine, host: Host) -> GpuSupport:
    if not found.wsl2:
        return GpuSupport(
            False,
            "Docker Desktop's Hyper-V backend gives containers no GPU",
            "Docker Desktop > Settings > General: use the WSL 2 based engine",
        )
    if host.nvidia_gpus:
        return GpuSupport(
            True, "Docker Desktop (WSL 2) hands containers this PC's NVIDIA GPU (its driver)"
        )
    return GpuSupport(
        False,
        "Docker Desktop (WSL 2), and NVML finds no NVIDIA GPU on this PC (the `nvidia` runtime "
        "it lists says nothing)",
        "with an NVIDIA GPU, install its Windows driver: Docker Desktop needs nothing else "
        "(no Container Toolkit)",
    )


def _podman(found: Engine) -> GpuSupport:
    if not _nvidia_cdi_devices({}, CDI_DIRS):
        return GpuSupport(
            False,
            "Podman takes GPUs as CDI devices only, and there is no NVIDIA CDI spec",
            "`sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` (NVIDIA Container "
            f"Toolkit, {TOOLKIT_URL}), then run this again",
        )
    if found.server_version < PODMAN_CDI_SINCE:
        return GpuSupport(
            False,
            f"an NVIDIA CDI spec exists, but Podman {found.info.get('ServerVersion')} drops the "
            "CDI devices Docker Compose asks for (Podman serves them from 5.4.0)",
            "upgrade Podman to 5.4 or newer",
        )
    return GpuSupport(
        True, f"Podman with an NVIDIA CDI spec: the GPU as a CDI device ({PODMAN_OVERRIDE})"
    )


def _docker(found: Engine) -> GpuSupport:
    restart = (
        "systemctl --user restart docker" if found.rootless else "sudo systemctl restart docker"
    )
    toolkit = install_toolkit(restart)
    if _on_daemon_path(HOOK):
        if found.rootless and not no_cgroups():
            return GpuSupport(
                False,
                f"rootless Docker: {HOOK} is installed, but a rootless engine cannot set up "
                f"device cgroups and {TOOLKIT_CONFIG} lacks no-cgroups = true",
                "`sudo nvidia-ctk config --set nvidia-container-cli.no-cgroups --in-place`, "
                f"then `{restart}`",
            )
        return GpuSupport(True, f"{HOOK} is installed: Docker can hand out NVIDIA GPUs")
    spec_dirs = found.info.get("CDISpecDirs")
    has_spec = _nvidia_cdi_devices(found.info, spec_dirs or CDI_DIRS)
    served_by = f"Docker {found.info.get('ServerVersion', '?')}"
    if has_spec and spec_dirs:  # CDI is on
        if found.server_version >= CDI_GPUS_SINCE and _on_daemon_path(CDI_HOOK):
            return GpuSupport(True, "CDI is on with an NVIDIA spec: Docker hands out GPUs via CDI")
        return GpuSupport(
            False,
            f"an NVIDIA CDI spec exists, but {served_by} serves `driver: nvidia` through CDI "
            f"only from 29.2.0 (with {CDI_HOOK}), and {HOOK} is not installed",
            f"upgrade Docker to 29.2 or newer, or {toolkit}",
        )
    if has_spec:
        off = "disabled in dockerd" if spec_dirs == [] else "not supported by this Docker"
        return GpuSupport(
            False, f"an NVIDIA CDI spec exists but CDI is {off}, and no {HOOK}", toolkit
        )
    if "nvidia" in (found.info.get("Runtimes") or {}):
        return GpuSupport(
            False,
            f"the `nvidia` runtime is registered, but {HOOK} is not on dockerd's PATH "
            "(nvidia-container-toolkit-base ships the runtime without it), so dockerd cannot "
            "serve Compose's GPU reservation",
            toolkit,
        )
    return GpuSupport(False, f"no {HOOK} and no NVIDIA CDI device", toolkit)
