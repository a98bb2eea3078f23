"""Both targets of docker/Dockerfile also build with BuildKit (the session's images come from
the classic builder), and BuildKit produces the same runtime configuration."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from support import e2e_stack as stack
from support.ci_skip import skip_unless_ci

pytestmark = pytest.mark.e2e

RUNTIME_CONFIG = ("User", "Entrypoint", "Cmd", "Healthcheck", "ExposedPorts", "WorkingDir")


def _config(tag: str) -> dict:
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .Config}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = json.loads(out)
    env = dict(item.split("=", 1) for item in config["Env"])
    return {key: config.get(key) for key in RUNTIME_CONFIG} | {"Env": env}


@pytest.mark.parametrize("service", ["tensorboard", "lab"])
def test_image_builds_with_buildkit_too(images, service):
    client = stack.buildkit_client()
    if client is None:
        skip_unless_ci("no BuildKit-capable docker client (buildx plugin or a 20.10 client)")
    command, env = client
    tag = f"{stack.IMAGES[service].rsplit(':', 1)[0]}:buildkit-check"
    log = stack.ARTIFACTS / f"build-{service}-buildkit.log"
    stack.ARTIFACTS.mkdir(exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(
            [
                *command,
                "--progress=plain",
                "-f",
                str(stack.DOCKERFILE),
                "--target",
                service,
                "-t",
                tag,
                str(stack.BUILD_CONTEXT),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        assert result.returncode == 0, log.read_text(errors="replace")[-3000:]
        assert _config(tag) == _config(images[service])  # what the classic builder made
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True)
