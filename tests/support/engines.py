"""What a machine's `docker` CLI answers, for the host tests: the probe lines as invoke runs
them (rendered by lab.host.command_line) and the captured engines in tests/host/engines/."""

from __future__ import annotations

import json
from pathlib import Path

from invoke import Result

from lab.host import command_line, compose, docker

INFO = command_line(docker.INFO)
DOCKER_VERSION = command_line(docker.VERSION)
COMPOSE_VERSION = command_line(compose.VERSION)
CAPTURES = Path(__file__).resolve().parents[1] / "host" / "engines"

# `docker version` of a Docker Engine on Linux (the client beside it)
ENGINE_VERSION = {
    "Client": {"Version": "28.2.2", "Os": "linux", "Arch": "amd64", "Context": "default"},
    "Server": {
        "Platform": {"Name": "Docker Engine - Community"},
        "Components": [{"Name": "Engine", "Version": "28.2.2"}],
        "Version": "28.2.2",
        "Os": "linux",
    },
}


def compose_answer(version: str = "2.29.1") -> Result:
    return Result(f"Docker Compose version v{version}\n")


def engine_answers(info: dict, version: dict | None = None, compose: str = "2.29.1") -> dict:
    """MockContext answers for an engine: `docker info`, `docker version`, Compose's version."""
    return {
        INFO: Result(json.dumps(info)),
        DOCKER_VERSION: Result(json.dumps(ENGINE_VERSION if version is None else version)),
        COMPOSE_VERSION: compose_answer(compose),
    }


def capture(name: str) -> dict:
    """``tests/host/engines/<name>.json``: what that engine's `docker info` and `docker
    version` print (``info``, ``version``), and where it came from (``source``)."""
    return json.loads((CAPTURES / f"{name}.json").read_text())


def _files(*names: str) -> str:
    return command_line(compose.Stack(names).command())


CPU = _files(compose.BASE_FILE, compose.CPU_OVERRIDE)  # docker compose -f … -f compose.cpu.yaml
GPU = _files(compose.BASE_FILE)
PODMAN_GPU = _files(compose.BASE_FILE, compose.PODMAN_OVERRIDE)


def up_answers(files: str, token: str = "0123abcd", jupyter_port: str = "8888") -> dict:
    """What `invoke up` runs after its probes, answered as a healthy stack does."""
    server = {"url": "http://0f2c:8888/", "base_url": "/", "port": 8888, "token": token}
    return {
        f"{files} up -d --build --wait": Result(),
        f"{files} exec -T --user lab lab jupyter server list --json": Result(
            json.dumps(server) + "\n"
        ),
        f"{files} port lab 8888": Result(f"127.0.0.1:{jupyter_port}\n"),
        f"{files} port tensorboard 6006": Result("127.0.0.1:6006\n"),
    }
