"""Docker Compose v2: which compose files this host needs, the commands, and the stack's state."""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lab.host import HostProblem, ask, docker

BASE_FILE = "compose.yaml"
CPU_OVERRIDE = "compose.cpu.yaml"  # drops the GPU reservation for hosts without one
LAB = "lab"
# `docker compose exec` would start commands as root (compose starts the lab as root so its
# entrypoint can adopt the host user\'s uid); exec as the lab user instead, always.
EXEC_AS_LAB_USER = ("--user", "lab")

# (service, container port, env var compose.yaml reads for the host port)
JUPYTER = (LAB, 8888, "LAB_JUPYTER_PORT")
TENSORBOARD = ("tensorboard", 6006, "LAB_TENSORBOARD_PORT")

VERSION = "docker compose version --short"
# compose.cpu.yaml removes the GPU reservation with the `!reset` tag, which Compose reads from
# 2.18.0 on (compose-go 1.13.5); an older Compose keeps the reservation and fails on a CPU
# host. (`up --wait`, which `invoke up` uses, is older: 2.1.1.)
MIN_VERSION = (2, 18, 0)
PROJECT_DIR = Path(__file__).resolve().parents[2]  # where compose.yaml is
ENV_FILE = PROJECT_DIR / ".env"  # what Compose reads next to compose.yaml
CPU_COMPOSE_FILE = f"COMPOSE_FILE={BASE_FILE}:{CPU_OVERRIDE}"

NOT_INSTALLED = (
    "Docker Compose v2 is not installed: install the Compose plugin (package "
    "docker-compose-plugin, https://docs.docker.com/compose/install/linux/), then run this again"
)
TOO_OLD = (
    "Docker Compose {found} is too old: install Compose v"
    + ".".join(map(str, MIN_VERSION))
    + " or newer (package docker-compose-plugin), then run this again"
)
PLAIN_UP_HINT = f"for plain `docker compose up` on this host, put {CPU_COMPOSE_FILE} in .env"
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


def require_compose(c) -> str:
    """The Compose version found; HostProblem when it is missing or older than the floor."""
    result = ask(c, VERSION)
    if result.exited != 0:
        raise HostProblem(NOT_INSTALLED)
    found = result.stdout.strip()
    version = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", found)
    if version and tuple(int(part or 0) for part in version.groups()) < MIN_VERSION:
        raise HostProblem(TOO_OLD.format(found=found))
    return found.lstrip("v")


def env_setting(key: str, environ=None, env_file: str | Path | None = None) -> str | None:
    """A setting as Compose sees it: the environment first, then ``.env``."""
    environ = os.environ if environ is None else environ
    env_file = ENV_FILE if env_file is None else env_file
    if environ.get(key):
        return environ[key]
    try:
        lines = Path(env_file).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip() == key and value.strip():
            return value.strip().strip("'\"")
    return None


def host_port(spec: tuple[str, int, str], environ=None, env_file=None) -> int:
    """The host port a service publishes, as compose.yaml computes it (``${VAR:-default}``)."""
    _, default, env_var = spec
    value = env_setting(env_var, environ, env_file)
    return int(value) if value and value.isdigit() else default


def cpu_files_configured(environ=None, env_file=None) -> bool:
    """Does plain ``docker compose up`` here already add the CPU override?"""
    return CPU_OVERRIDE in (env_setting("COMPOSE_FILE", environ, env_file) or "")


def stack(c, mode: str = "auto") -> Stack:
    """The stack for this host. ``mode``: ``auto`` (GPU when Docker can hand one out),
    ``cpu`` or ``gpu``. Raises HostProblem when Docker, its daemon or Compose is missing."""
    info = docker.engine_info(c)
    require_compose(c)
    if mode == "cpu":
        return Stack(gpu=False, reason=f"starting the lab on CPU (--cpu: {CPU_OVERRIDE})")
    if mode == "gpu":
        return Stack(gpu=True, reason="starting the lab with GPU access (--gpu)")
    support = docker.gpu_support(info)
    if support.available:
        return Stack(gpu=True, reason=f"{support.detail}: starting the lab with GPU")
    reason = f"{support.detail}: starting the lab on CPU ({CPU_OVERRIDE}); --gpu forces GPU"
    if not cpu_files_configured():
        reason += f"\n{PLAIN_UP_HINT}"
    return Stack(gpu=False, reason=reason)


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
    (``.env`` included), the setting compose.yaml reads is the fallback."""
    result = ask(c, lab_stack.command("port", service, str(port)))
    host, _, published = result.stdout.strip().rpartition(":")
    if result.exited != 0 or not published.isdigit():
        host, published = "", str(host_port((service, port, env_var)))
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{published}"
