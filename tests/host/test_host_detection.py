"""lab/host: reading what Docker, Compose and Jupyter answer."""

from __future__ import annotations

import json
import shutil

import pytest
from invoke import Context, MockContext, Result

from lab.host import HostProblem, compose, docker, jupyter

CPU_STACK = compose.Stack(gpu=False)
CPU = "docker compose -f compose.yaml -f compose.cpu.yaml"


@pytest.fixture(autouse=True)
def _no_machine_cdi_dirs(monkeypatch):
    monkeypatch.setattr(docker, "CDI_DIRS", ())


# --- the NVIDIA runtime / CDI -------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}}, True),
        ({"Runtimes": {"runc": {}}}, False),
        ({"Runtimes": None}, False),  # what an unreachable daemon's info holds
        (
            {
                "Runtimes": {"runc": {}},
                "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=all"}],
            },
            True,
        ),
        (
            {
                "Runtimes": {"runc": {}},
                "DiscoveredDevices": [{"Source": "cdi", "ID": "amd.com/gpu=0"}],
            },
            False,
        ),
    ],
    ids=["runtime", "runc-only", "null", "cdi-device", "other-vendor"],
)
def test_nvidia_available_from_docker_info(info, expected):
    assert docker.nvidia_available(info) is expected


def test_an_nvidia_cdi_spec_in_the_engines_spec_dirs_counts(tmp_path):
    info = {"Runtimes": {"runc": {}}, "CDISpecDirs": [str(tmp_path / "missing"), str(tmp_path)]}
    assert docker.nvidia_available(info) is False
    (tmp_path / "other-vendor.yaml").write_text("kind: example.com/fpga\n")
    assert docker.nvidia_available(info) is False
    (tmp_path / "nvidia.yaml").write_text("kind: nvidia.com/gpu\n")
    assert docker.nvidia_available(info) is True


def test_the_default_cdi_dirs_count_when_the_engine_names_none(tmp_path):
    info = {"Runtimes": {"runc": {}}, "CDISpecDirs": None}
    assert docker.nvidia_available(info, cdi_dirs=(str(tmp_path),)) is False
    (tmp_path / "nvidia.json").write_text("{}")
    assert docker.nvidia_available(info, cdi_dirs=(str(tmp_path),)) is True


def test_docker_info_that_is_not_json_means_no_daemon():
    c = MockContext(run={docker.INFO: Result("Client: Docker Engine\n")})
    with pytest.raises(HostProblem, match="not reachable"):
        docker.engine_info(c)


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")
def test_a_real_unreachable_daemon_is_reported(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(HostProblem) as raised:
        docker.engine_info(Context())
    assert str(raised.value) == docker.NOT_REACHABLE


# --- Compose -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "ok"),
    [
        ("2.29.1", True),
        ("v2.1.1", True),
        ("5.6.1", True),
        ("dev", True),
        ("2.0.1", False),
        ("v1.29.2", False),
    ],
)
def test_compose_version_floor(found, ok):
    c = MockContext(run={compose.VERSION: Result(found + "\n")})
    if ok:
        compose.require_compose(c)
    else:
        with pytest.raises(HostProblem, match=f"Docker Compose {found} is too old"):
            compose.require_compose(c)


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
            f"{CPU} exec -T lab jupyter server list --json": Result(servers),
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
