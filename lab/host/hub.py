"""The classroom hub (compose.hub.yaml) from the host: its compose command, the Docker
socket's group the hub user joins, and the lab image it starts for every learner."""

from __future__ import annotations

import os
from pathlib import Path

from lab.host import HostProblem, ask

COMPOSE = ("docker", "compose", "-f", "compose.hub.yaml")
SOCKET = Path("/var/run/docker.sock")
LAB_IMAGE = "autograd-lab/lab:latest"
LABEL = "org.autograd-lab.hub"  # on learners' containers (docker/hub/autograd_hub.py)
NO_SOCKET = (
    "no Docker socket at /var/run/docker.sock: the hub starts learners' containers through it; "
    "start Docker, or set DOCKER_GID to the group of the socket you use"
)


def socket_gid(env: dict | None = None) -> str:
    """The group that may use the Docker socket: the hub runs as a user in that group."""
    env = os.environ if env is None else env
    if env.get("DOCKER_GID"):
        return env["DOCKER_GID"]
    try:
        return str(SOCKET.stat().st_gid)
    except FileNotFoundError:
        raise HostProblem(NO_SOCKET) from None


def lab_image(env: dict | None = None) -> str:
    return (os.environ if env is None else env).get("LAB_IMAGE") or LAB_IMAGE


def check_lab_image(c, image: str) -> None:
    if ask(c, ["docker", "image", "inspect", "--format", "{{.Id}}", image]).exited != 0:
        raise HostProblem(
            f"the lab image {image} is not built: run `invoke build` first "
            "(the hub starts one container of it per learner)"
        )


def command(*args: str) -> list[str]:
    """The hub's compose command (`invoke hub-up` passes DOCKER_GID in its environment)."""
    return [*COMPOSE, *args]


def learner_containers(c, env: dict | None = None) -> list[str]:
    """IDs of the learners' containers this hub started (HUB_PREFIX tells hubs apart)."""
    prefix = (os.environ if env is None else env).get("HUB_PREFIX") or "autograd-hub"
    result = ask(c, ["docker", "ps", "-aq", "--filter", f"label={LABEL}={prefix}"])
    return result.stdout.split() if result.exited == 0 else []


def published_address(c) -> str:
    result = ask(c, command("port", "hub", "8000"))
    host, _, port = result.stdout.strip().rpartition(":")
    if result.exited != 0 or not port.isdigit():
        host, port = "", os.environ.get("HUB_PORT") or "8000"
    return f"{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}"
