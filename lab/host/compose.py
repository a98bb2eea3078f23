"""Docker Compose v2: which compose files this host needs, the commands, and the stack's state."""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field

from lab.host import HostProblem, ask, docker

BASE_FILE = "compose.yaml"
CPU_OVERRIDE = "compose.cpu.yaml"  # drops the GPU reservation for hosts without one
LAB = "lab"

# (service, container port, env var compose.yaml reads for the host port)
JUPYTER = (LAB, 8888, "LAB_JUPYTER_PORT")
TENSORBOARD = ("tensorboard", 6006, "LAB_TENSORBOARD_PORT")

VERSION = "docker compose version --short"
MIN_VERSION = (2, 1, 1)  # the first with `up --wait`

NOT_INSTALLED = (
    "Docker Compose v2 is not installed: install the Compose plugin (package "
    "docker-compose-plugin, https://docs.docker.com/compose/install/linux/), then run this again"
)
TOO_OLD = (
    "Docker Compose {found} is too old: install Compose v2.1.1 or newer "
    "(package docker-compose-plugin), then run this again"
)
NOT_UP = "The lab stack is not up: start it with `invoke up`"


@dataclass(frozen=True)
class Stack:
    """The lab's compose project as this host runs it."""

    gpu: bool
    reason: str = field(default="", compare=False)  # why GPU or CPU, for the person at the prompt

    @property
    def files(self) -> tuple[str, ...]:
        return (BASE_FILE,) if self.gpu else (BASE_FILE, CPU_OVERRIDE)

    def command(self, *args: str) -> str:
        """``docker compose -f ... ARGS`` as one shell-quoted string."""
        file_flags = [flag for name in self.files for flag in ("-f", name)]
        return shlex.join(["docker", "compose", *file_flags, *args])


def require_compose(c) -> None:
    result = ask(c, VERSION)
    if result.exited != 0:
        raise HostProblem(NOT_INSTALLED)
    found = result.stdout.strip()
    version = re.match(r"v?(\d+)\.(\d+)\.(\d+)", found)
    if version and tuple(int(part) for part in version.groups()) < MIN_VERSION:
        raise HostProblem(TOO_OLD.format(found=found))


def stack(c, mode: str = "auto") -> Stack:
    """The stack for this host. ``mode``: ``auto`` (GPU when Docker can hand one out),
    ``cpu`` or ``gpu``. Raises HostProblem when Docker, its daemon or Compose is missing."""
    info = docker.engine_info(c)
    require_compose(c)
    if mode == "cpu":
        return Stack(gpu=False, reason=f"starting the lab on CPU (--cpu: {CPU_OVERRIDE})")
    if mode == "gpu":
        return Stack(gpu=True, reason="starting the lab with GPU access (--gpu)")
    if docker.nvidia_available(info):
        return Stack(gpu=True, reason="Docker has the NVIDIA runtime: starting the lab with GPU")
    return Stack(
        gpu=False,
        reason=(
            f"Docker has no NVIDIA runtime or CDI GPU: starting the lab on CPU ({CPU_OVERRIDE}); "
            "--gpu forces GPU"
        ),
    )


def service_states(c, lab_stack: Stack) -> dict[str, str]:
    """``{service: state}`` for the stack's containers (``running``, ``exited`` ...)."""
    result = ask(c, lab_stack.command("ps", "--all", "--format", "json"))
    if result.exited != 0:
        return {}
    return {entry["Service"]: entry["State"] for entry in _json_entries(result.stdout)}


def _json_entries(text: str) -> list[dict]:
    # Compose < 2.21 prints one JSON array, later versions one object per line.
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def published_address(c, lab_stack: Stack, service: str, port: int, env_var: str) -> str:
    """``host:port`` where the service's port is published; compose knows the truth
    (``.env`` included), the environment variable is the fallback."""
    result = ask(c, lab_stack.command("port", service, str(port)))
    host, _, host_port = result.stdout.strip().rpartition(":")
    if result.exited != 0 or not host_port.isdigit():
        host, host_port = "", os.environ.get(env_var) or str(port)
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{host_port}"
