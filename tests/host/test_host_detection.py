"""lab/host: reading what Docker, Compose and Jupyter answer."""

from __future__ import annotations

import json
import shutil

import pytest
from invoke import Context, MockContext, Result
from support.ci_skip import skip_unless_ci
from support.engines import COMPOSE_VERSION, CPU, INFO, engine_answers

from lab.host import HostProblem, compose, docker, jupyter

CPU_STACK = compose.Stack((compose.BASE_FILE, compose.CPU_OVERRIDE))


@pytest.fixture(autouse=True)
def _no_machine_hooks(monkeypatch):
    monkeypatch.setattr(docker, "CDI_DIRS", ())
    monkeypatch.setattr(docker, "DAEMON_PATH", ())


# --- can Docker hand out an NVIDIA GPU (Compose's `driver: nvidia`)? -----------------------

NVIDIA_CDI_DEVICE = [{"Source": "cdi", "ID": "nvidia.com/gpu=all"}]


def engine(version="29.1.0", runtimes=("runc",), cdi_dirs=("/etc/cdi",), devices=()) -> dict:
    return {
        "ServerVersion": version,
        "Runtimes": {name: {} for name in runtimes},
        "CDISpecDirs": None if cdi_dirs is None else list(cdi_dirs),
        "DiscoveredDevices": list(devices),
    }


# (engine answer, hooks installed where dockerd looks, NVIDIA spec file on disk, verdict)
GPU_SUPPORT_TABLE = [
    ("toolkit, runtime never configured", engine(), {docker.HOOK}, False, True),
    (
        "toolkit, runtime configured",
        engine(runtimes=("runc", "nvidia")),
        {docker.HOOK},
        False,
        True,
    ),
    # nvidia-container-toolkit-base: the runtime, registered, but not the hook dockerd needs
    ("runtime without its hook", engine(runtimes=("runc", "nvidia")), set(), False, False),
    ("nothing", engine(), set(), False, False),
    ("other vendor's CDI device", engine(devices=[{"ID": "amd.com/gpu=0"}]), set(), False, False),
    ("CDI spec, CDI disabled", engine(cdi_dirs=()), {docker.CDI_HOOK}, True, False),
    ("CDI spec, old engine", engine(cdi_dirs=None), {docker.CDI_HOOK}, True, False),
    (
        "CDI on, Docker 29.2, cdi hook",
        engine("29.2.0", devices=NVIDIA_CDI_DEVICE),
        {docker.CDI_HOOK},
        False,
        True,
    ),
    # moby#50228 shipped in 29.2.0, not 29.0
    (
        "CDI on, Docker 29.1, cdi hook",
        engine(devices=NVIDIA_CDI_DEVICE),
        {docker.CDI_HOOK},
        False,
        False,
    ),
    ("CDI on, spec file, Docker 29.2", engine("29.2.0"), {docker.CDI_HOOK}, True, True),
    (
        "CDI on, Docker 28",
        engine("28.3.3", devices=NVIDIA_CDI_DEVICE),
        {docker.CDI_HOOK},
        False,
        False,
    ),
    (
        "CDI on, Docker 29.2, no cdi hook",
        engine("29.2.0", devices=NVIDIA_CDI_DEVICE),
        set(),
        False,
        False,
    ),
    ("unreachable daemon's info", {"Runtimes": None}, set(), False, False),
]


def judge(info: dict) -> docker.GpuSupport:
    return docker.gpu_support(docker.Engine.read(info), docker.Host(platform="linux"))


def machine(monkeypatch, tmp_path, hooks: set, spec_file: bool) -> None:
    """Hooks in the folder dockerd searches, an NVIDIA CDI spec in the engine's CDI dirs."""
    bin_dir, cdi_dir = tmp_path / "bin", tmp_path / "cdi"
    bin_dir.mkdir()
    cdi_dir.mkdir()
    for hook in hooks:
        (bin_dir / hook).touch(mode=0o755)
    if spec_file:
        (cdi_dir / "nvidia.yaml").write_text("kind: nvidia.com/gpu\n")
    monkeypatch.setattr(docker, "DAEMON_PATH", (str(bin_dir),))
    monkeypatch.setattr(docker, "CDI_DIRS", (str(cdi_dir),))


def with_cdi_dir(info: dict, tmp_path) -> dict:
    if info.get("CDISpecDirs"):
        info = info | {"CDISpecDirs": [str(tmp_path / "cdi")]}
    return info


@pytest.mark.parametrize(
    ("info", "hooks", "spec_file", "expected"),
    [row[1:] for row in GPU_SUPPORT_TABLE],
    ids=[row[0] for row in GPU_SUPPORT_TABLE],
)
def test_gpu_support_is_what_dockerd_will_do(
    monkeypatch, tmp_path, info, hooks, spec_file, expected
):
    machine(monkeypatch, tmp_path, hooks, spec_file)
    support = judge(with_cdi_dir(info, tmp_path))
    assert support.available is expected
    assert (support.fix == "") is expected  # a "no" always says what to do
    if not expected:
        assert "nvidia-container-toolkit" in support.fix


def test_a_cdi_spec_with_cdi_disabled_is_named_as_such(monkeypatch, tmp_path):
    machine(monkeypatch, tmp_path, {docker.CDI_HOOK}, True)
    support = judge(engine(cdi_dirs=()))
    assert not support.available and "CDI is disabled in dockerd" in support.detail


def test_a_hook_that_is_not_executable_does_not_count(monkeypatch, tmp_path):
    machine(monkeypatch, tmp_path, set(), False)
    (tmp_path / "bin" / docker.HOOK).touch(mode=0o644)
    assert judge(engine()).available is False


def test_docker_info_that_is_not_json_means_no_daemon():
    c = MockContext(run={INFO: Result("Client: Docker Engine\n")})
    with pytest.raises(HostProblem, match="not reachable"):
        docker.engine_info(c)


def test_a_real_unreachable_daemon_is_reported(monkeypatch):
    if shutil.which("docker") is None:
        skip_unless_ci("needs the docker CLI")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(HostProblem) as raised:
        docker.engine_info(Context())
    assert str(raised.value) == docker.NOT_REACHABLE


# --- Compose -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "found", "ok"),
    [
        ("Docker Compose version v2.29.1", "2.29.1", True),
        ("Docker Compose version 2.18.0", "2.18.0", True),
        ("Docker Compose version 2.24.6+ds1-0ubuntu2", "2.24.6+ds1-0ubuntu2", True),  # Ubuntu's
        ("Docker Compose version v5.6.1", "5.6.1", True),
        ("Docker Compose version dev", "dev", True),
        # reads compose.cpu.yaml's `!reset` as nothing: the GPU stays
        ("Docker Compose version v2.17.3", "2.17.3", False),
        ("Docker Compose version v2.1.1", "2.1.1", False),
        ("Docker Compose version 2.0.1", "2.0.1", False),
        # `podman compose` with the old Python docker-compose as its provider
        ("docker-compose version 1.29.2, build 5becea4c", "1.29.2,", False),
    ],
)
def test_compose_version_floor(answer, found, ok):
    c = MockContext(run={COMPOSE_VERSION: Result(answer + "\n")})
    if ok:
        assert compose.require_compose(c) == found
    else:
        with pytest.raises(HostProblem, match=f"Docker Compose {found} is too old.*2.18.0"):
            compose.require_compose(c)


@pytest.mark.parametrize(
    "answer",
    [
        "podman-compose version 1.6.0\npodman version 5.4.2\n",  # `docker compose` = podman-docker
        "podman-compose version 1.0.6\npodman version 4.9.3\n",
    ],
)
def test_podman_compose_is_refused_with_what_to_install_instead(answer):
    c = MockContext(run={COMPOSE_VERSION: Result(answer)})
    with pytest.raises(HostProblem) as raised:
        compose.require_compose(c)
    message = str(raised.value)
    assert message.startswith("podman-compose 1.") and "too old" not in message
    assert "Docker Compose v2" in message and "`podman compose` then uses it" in message


@pytest.mark.parametrize(
    "stdout",
    [
        # Compose < 2.21: one array
        json.dumps(
            [{"Service": "lab", "State": "running"}, {"Service": "tensorboard", "State": "exited"}]
        ),
        # Compose >= 2.21: one object per line
        '{"Service":"lab","State":"running"}\n{"Service":"tensorboard","State":"exited"}\n',
    ],
    ids=["array", "lines"],
)
def test_service_states_read_both_ps_formats(stdout):
    c = MockContext(run={f"{CPU} ps --all --format json": Result(stdout)})
    assert compose.service_states(c, CPU_STACK) == {"lab": "running", "tensorboard": "exited"}


def test_service_states_of_a_failed_ps_are_empty():
    c = MockContext(run={f"{CPU} ps --all --format json": Result(exited=1)})
    assert compose.service_states(c, CPU_STACK) == {}


@pytest.mark.parametrize(
    ("stdout", "address"),
    [
        ("127.0.0.1:18888\n", "127.0.0.1:18888"),
        ("0.0.0.0:8888\n", "127.0.0.1:8888"),  # bound everywhere: this host reaches it locally
        ("[::]:8888\n", "127.0.0.1:8888"),
    ],
)
def test_published_address(stdout, address):
    c = MockContext(run={f"{CPU} port lab 8888": Result(stdout)})
    assert compose.published_address(c, CPU_STACK, *compose.JUPYTER) == address


# --- Jupyter -------------------------------------------------------------------------------


def jupyter_ctx(servers: str) -> MockContext:
    return MockContext(
        run={
            f"{CPU} exec -T --user lab lab jupyter server list --json": Result(servers),
            f"{CPU} port lab 8888": Result("127.0.0.1:8888\n"),
        }
    )


def test_lab_url_quotes_the_token_and_keeps_the_base_url():
    server = {"base_url": "/jupyter/", "port": 8888, "token": "a b&c"}
    c = jupyter_ctx("[W 12:00] a warning line\n" + json.dumps(server) + "\n")
    assert jupyter.lab_url(c, CPU_STACK) == "http://127.0.0.1:8888/jupyter/lab?token=a%20b%26c"


def test_lab_url_is_none_without_a_tokenized_server():
    assert (
        jupyter.lab_url(jupyter_ctx(json.dumps({"base_url": "/", "token": ""})), CPU_STACK) is None
    )
    assert jupyter.lab_url(jupyter_ctx(""), CPU_STACK) is None


def test_the_compose_floor_covers_what_our_compose_files_use():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    uses_reset = any("!reset" in p.read_text() for p in root.glob("compose*.yaml"))
    assert uses_reset and compose.MIN_VERSION >= (2, 18, 0)


@pytest.mark.parametrize(
    ("environ", "env_file", "port"),
    [
        ({}, "", 8888),
        ({}, "LAB_JUPYTER_PORT=18888\n", 18888),
        ({"LAB_JUPYTER_PORT": "28888"}, "LAB_JUPYTER_PORT=18888\n", 28888),
        ({}, "LAB_JUPYTER_PORT=\n", 8888),  # empty: compose.yaml's default
    ],
)
def test_host_port_is_what_compose_publishes(tmp_path, environ, env_file, port):
    (tmp_path / ".env").write_text(env_file)
    assert compose.host_port(compose.JUPYTER, environ, tmp_path / ".env") == port


def test_a_cpu_host_is_told_how_plain_compose_up_works_unless_env_already_says(
    tmp_path, monkeypatch
):
    def cpu_host() -> MockContext:  # a fresh one each time: MockContext consumes its answers
        return MockContext(run=engine_answers({"Runtimes": {"runc": {}}}))

    monkeypatch.setattr(compose, "ENV_FILE", tmp_path / ".env")
    monkeypatch.delenv("COMPOSE_FILE", raising=False)
    reason = compose.stack(cpu_host()).reason
    assert reason.endswith("put COMPOSE_FILE=compose.yaml:compose.cpu.yaml in .env")
    (tmp_path / ".env").write_text("COMPOSE_FILE=compose.yaml:compose.cpu.yaml\n")
    assert "COMPOSE_FILE" not in compose.stack(cpu_host()).reason
