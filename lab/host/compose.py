"""Docker Compose v2: which compose files this host needs, the commands, and the stack's state."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lab.host import HostProblem, ask, docker

BASE_FILE = "compose.yaml"
CPU_OVERRIDE = "compose.cpu.yaml"  # drops the GPU reservation for hosts without one
PODMAN_OVERRIDE = docker.PODMAN_OVERRIDE  # Podman: keep-id, the GPU as a CDI device
LAB = "lab"
# `docker compose exec` would start commands as root (compose starts the lab as root so its
# entrypoint can adopt the host user\'s uid); exec as the lab user instead, always.
EXEC_AS_LAB_USER = ("--user", "lab")

# (service, container port, env var compose.yaml reads for the host port)
JUPYTER = (LAB, 8888, "LAB_JUPYTER_PORT")
TENSORBOARD = ("tensorboard", 6006, "LAB_TENSORBOARD_PORT")

VERSION = ("docker", "compose", "version")  # "Docker Compose version v2.29.1", or podman-compose's
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
PODMAN_COMPOSE = (
    "{found} answers `docker compose` here: invoke drives Docker Compose v2 (`up --wait`, "
    "`ps --format json`, `exec --user`), which podman-compose answers differently; install "
    "Docker Compose v2 (package docker-compose-plugin, or the docker-compose binary: `podman "
    "compose` then uses it against Podman's socket), then run this again"
)
PLAIN_UP_HINT = f"for plain `docker compose up` on this host, put {CPU_COMPOSE_FILE} in .env"
NOT_UP = "The lab stack is not up: start it with `invoke up`"


@dataclass(frozen=True)
class Stack:
    """The lab's compose project as this host runs it."""

    files: tuple[str, ...] = (BASE_FILE, CPU_OVERRIDE)
    reason: str = field(default="", compare=False)  # why GPU or CPU, for the person at the prompt
    engine: docker.Engine | None = field(default=None, compare=False)
    # settings compose reads from the environment, chosen here (TORCH_INDEX_URL on a Mac ...)
    env: dict = field(default_factory=dict, compare=False)

    @property
    def gpu(self) -> bool:
        return CPU_OVERRIDE not in self.files

    def command(self, *args: str) -> list[str]:
        """``docker compose -f ... ARGS`` as an argument list."""
        file_flags = [flag for name in self.files for flag in ("-f", name)]
        return ["docker", "compose", *file_flags, *args]


def require_compose(c) -> str:
    """The Compose version found; HostProblem when it is missing, older than the floor, or
    podman-compose (through Podman's `docker` shim or `podman compose`)."""
    result = ask(c, VERSION)
    if result.exited != 0:
        raise HostProblem(NOT_INSTALLED)
    answer = re.search(r"^(.*?)\s+version\s+v?(\S+)", result.stdout.strip(), re.M)
    name, found = (answer.group(1), answer.group(2)) if answer else ("", result.stdout.strip())
    if "podman-compose" in name.lower():
        raise HostProblem(PODMAN_COMPOSE.format(found=f"podman-compose {found}"))
    version = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", found)
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


def plain_up_hint(macos: bool, environ=None, env_file=None) -> str | None:
    """What `.env` still needs for plain ``docker compose up`` on a host without a GPU the
    engine hands out; None when it already has it."""
    from lab.host import torch_build  # it reads settings through this module

    if macos:
        has_torch = env_setting("TORCH_INDEX_URL", environ, env_file)
        done = cpu_files_configured(environ, env_file) and has_torch
        return None if done else torch_build.MAC_HINT
    return None if cpu_files_configured(environ, env_file) else PLAIN_UP_HINT


def cpu_files_configured(environ=None, env_file=None) -> bool:
    """Does plain ``docker compose up`` here already add the CPU override?"""
    return CPU_OVERRIDE in (env_setting("COMPOSE_FILE", environ, env_file) or "")


def stack(c, mode: str = "auto", host: docker.Host | None = None, environ=None) -> Stack:
    """The stack for this host. ``mode``: ``auto`` (GPU when the engine can hand one out),
    ``cpu`` or ``gpu``. Raises HostProblem when Docker, its daemon or Compose is missing."""
    from lab.host import torch_build  # it reads settings through this module

    found = docker.engine(c, environ)
    require_compose(c)
    host = host or docker.Host()
    macos = docker.on_macos(found, host)
    env = {}
    if macos and not env_setting("TORCH_INDEX_URL", environ):
        env["TORCH_INDEX_URL"] = torch_build.CPU_INDEX
    if found.podman and not found.rootless:
        env["LAB_PODMAN_USERNS"] = "host"  # keep-id is rootless Podman's alone
    support = docker.gpu_support(found, host)
    gpu_files = (BASE_FILE, PODMAN_OVERRIDE) if found.podman else (BASE_FILE,)
    cpu_files = (BASE_FILE, CPU_OVERRIDE)

    def made(files, reason):
        return Stack(files, reason, found, env)

    if mode == "cpu":
        return made(cpu_files, f"starting the lab on CPU (--cpu: {CPU_OVERRIDE})")
    if mode == "gpu":
        return made(gpu_files, "starting the lab with GPU access (--gpu)")
    if support.available:
        return made(gpu_files, f"{support.detail}: starting the lab with GPU")
    reason = f"{support.detail}: starting the lab on CPU ({CPU_OVERRIDE}); --gpu forces GPU"
    if support.fix and host.nvidia_gpus:  # a GPU the lab could use: what doctor says to do
        reason += f"\nfix: {support.fix}"
    hint = plain_up_hint(macos, environ)
    if hint:
        reason += f"\n{hint}"
    return made(cpu_files, reason)


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
