"""A checkout made the way Git for Windows makes one (``core.autocrlf=true``) builds a lab image
whose scripts run. Without .gitattributes such a clone has CRLF scripts, and the build stopped
at `install-requirements: cannot execute: required file not found`.

The clone is of the commit under test (CI's checkout), into a path with a space, as Windows
paths often have; the CA certificates .ci/run copies into the working tree go along.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from support import e2e_stack as stack
from support.ci_skip import skip_unless_ci

pytestmark = pytest.mark.e2e

SCRIPTS = (
    "docker/install-requirements",
    "docker/healthcheck",
    "docker/lab/lab-entrypoint",
    "docker/lab/start-lab",
    "docker/lab/start-singleuser",
    ".ci/run",
    ".ci/local-base-image.sh",
    ".ci/copy-host-certs.sh",
)
TAG = "autograd-lab/lab:autocrlf-e2e"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", *args], capture_output=True, text=True)


def test_a_checkout_cloned_with_autocrlf_builds_a_lab_image_whose_scripts_run(
    docker_engine, tmp_path
):
    if shutil.which("git") is None or not (stack.ROOT / ".git").exists():
        skip_unless_ci("needs git and a git checkout of the lab")
    commit = git("-C", str(stack.ROOT), "rev-parse", "HEAD").strip()
    clone = tmp_path / "autocrlf checkout"
    git("clone", "-q", "--no-checkout", "-c", "core.autocrlf=true", str(stack.ROOT), str(clone))
    git("-C", str(clone), "checkout", "--quiet", "--detach", commit)
    assert git("-C", str(clone), "config", "core.autocrlf").strip() == "true"
    crlf = [name for name in SCRIPTS if b"\r\n" in (clone / name).read_bytes()]
    assert crlf == [], f"checked out with CRLF: {crlf}"
    for cert in (stack.ROOT / "docker" / "certs").glob("*.crt"):
        shutil.copy(cert, clone / "docker" / "certs")

    context = clone / "docker"
    build = subprocess.run(
        [
            *("docker", "build", "-f", str(context / "Dockerfile"), "--target", "lab"),
            *("-t", TAG, str(context)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    try:
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        # each script runs under the image's bash (a CRLF one: "required file not found")
        usage = run("--entrypoint", "install-requirements", TAG)
        assert (usage.returncode, usage.stderr.strip()) == (
            2,
            "usage: install-requirements [--index-url URL] FILE...",
        )
        entrypoint = run("--user", "root", TAG, "id", "-u")  # through lab-entrypoint
        assert (entrypoint.returncode, entrypoint.stdout) == (0, "1000\n"), entrypoint.stderr
        start = run(TAG)  # start-lab, with no checkout mounted: says so and stops
        assert start.returncode == 1 and "/opt/autograd-lab/lab is empty" in start.stderr
    finally:
        subprocess.run(["docker", "rmi", TAG], capture_output=True)
