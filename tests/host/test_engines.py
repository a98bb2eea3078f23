"""Every engine the lab meets, from what its `docker info` / `docker version` print (captured in
tests/host/engines/: Docker Desktop on Windows before and after 4.34, with and without an
NVIDIA GPU, Hyper-V; Docker Desktop on a Mac; rootless Docker; Podman through podman-docker
and through its socket; remote engines; Docker 29.1 vs 29.2 with CDI only; the runtime without
its hook), plus what this machine says (its OS, NVML, hooks, CDI spec, toolkit config).

For each, `invoke up` and `invoke doctor` are run and must give the same verdict and the same
advice line: the compose files `up` starts (or its one-line refusal) and doctor's checks.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import pytest
from invoke import Exit, MockContext, Result
from support.engines import CPU, GPU, PODMAN_GPU, capture, engine_answers, up_answers
from support.fake_pynvml import FakeGpu, FakeNvmlLibrary, install

import tasks
from lab.host import command_line, compose, docker, doctor, torch_build
from lab.host.doctor import FAIL, OK, Probes


@dataclass(frozen=True)
class Machine:
    capture: str
    platform: str = "linux"  # where invoke runs: linux (WSL included), win32, darwin
    gpus: int = 0  # NVIDIA GPUs NVML sees here
    hooks: frozenset = frozenset()  # NVIDIA hooks on dockerd's PATH
    cdi_spec: bool = False  # an NVIDIA CDI spec in /etc/cdi
    no_cgroups: bool = False  # the toolkit's config has no-cgroups = true
    compose: str = "Docker Compose version v2.29.1"
    environ: dict = field(default_factory=dict)
    client_os: str | None = None  # the CLI runs elsewhere than the capture's (WSL)


# (name, machine, what `up` starts: gpu/cpu/podman, or None: refused, verdict, advice line)
TABLE = [
    (
        "Desktop 4.33, Windows, GPU",
        Machine("desktop-windows-4.33", "win32", gpus=1),
        "gpu",
        "Docker Desktop (WSL 2) hands containers this PC's NVIDIA GPU",
        "",
    ),
    (
        "Desktop 4.33, Windows, no GPU",
        Machine("desktop-windows-4.33", "win32"),
        "cpu",
        "Docker Desktop (WSL 2), and NVML finds no NVIDIA GPU on this PC",
        compose.PLAIN_UP_HINT,
    ),
    (
        "Desktop 4.34, Windows, GPU",
        Machine("desktop-windows-4.34", "win32", gpus=1),
        "gpu",
        "Docker Desktop (WSL 2) hands containers this PC's NVIDIA GPU",
        "",
    ),
    (  # 4.34 lists the `nvidia` runtime on every install: no GPU for all that
        "Desktop 4.34, Windows, no GPU",
        Machine("desktop-windows-4.34", "win32"),
        "cpu",
        "Docker Desktop (WSL 2), and NVML finds no NVIDIA GPU on this PC (the `nvidia` runtime "
        "it lists says nothing)",
        compose.PLAIN_UP_HINT,
    ),
    (
        "Desktop 4.34, from WSL, GPU",
        Machine("desktop-windows-4.34", "linux", gpus=1, client_os="linux"),
        "gpu",
        "Docker Desktop (WSL 2) hands containers this PC's NVIDIA GPU",
        "",
    ),
    (
        "Desktop, Hyper-V backend, GPU",
        Machine("desktop-windows-hyperv", "win32", gpus=1),
        "cpu",
        "Docker Desktop's Hyper-V backend gives containers no GPU",
        "Docker Desktop > Settings > General: use the WSL 2 based engine",
    ),
    (
        "Desktop, macOS",
        Machine("desktop-macos", "darwin"),
        "cpu",
        "no NVIDIA GPU on macOS",
        torch_build.MAC_HINT,
    ),
    (
        "rootless Docker, hook, cgroups on",
        Machine("docker-rootless", gpus=1, hooks=frozenset({docker.HOOK})),
        "cpu",
        "rootless Docker: nvidia-container-runtime-hook is installed, but a rootless engine",
        "`sudo nvidia-ctk config --set nvidia-container-cli.no-cgroups --in-place`, then "
        "`systemctl --user restart docker`",
    ),
    (
        "rootless Docker, hook, no-cgroups",
        Machine("docker-rootless", gpus=1, hooks=frozenset({docker.HOOK}), no_cgroups=True),
        "gpu",
        "nvidia-container-runtime-hook is installed",
        "",
    ),
    (
        "podman-docker (Podman 4.3, podman-compose)",
        Machine(
            "podman-docker",
            gpus=1,
            cdi_spec=True,
            compose="podman-compose version 1.6.0\npodman version 4.3.1",
        ),
        None,
        "an NVIDIA CDI spec exists, but Podman 4.3.1 drops the CDI devices Docker Compose asks",
        "upgrade Podman to 5.4 or newer",
    ),
    (
        "Podman 5.4 socket, CDI spec",
        Machine(
            "podman-5.4-socket",
            gpus=1,
            cdi_spec=True,
            environ={"DOCKER_HOST": "unix:///run/user/1000/podman/podman.sock"},
        ),
        "podman",
        "Podman with an NVIDIA CDI spec: the GPU as a CDI device (compose.podman.yaml)",
        "",
    ),
    (
        "Podman 4.3 socket, no GPU",
        Machine("podman-4.3-socket", environ={"DOCKER_HOST": "unix:///tmp/podman.sock"}),
        "cpu",
        "Podman takes GPUs as CDI devices only, and there is no NVIDIA CDI spec",
        compose.PLAIN_UP_HINT,
    ),
    (
        "remote, DOCKER_HOST=ssh://",
        Machine("remote-ssh", environ={"DOCKER_HOST": "ssh://ada@gpu-server"}),
        None,
        "Docker's engine is remote (ssh://ada@gpu-server)",
        "clone the lab there and run `invoke up` on that machine",
    ),
    (
        "remote, docker context",
        Machine("remote-context"),
        None,
        "Docker's engine is remote (tcp://10.0.0.5:2376)",
        "clone the lab there and run `invoke up` on that machine",
    ),
    (
        "Docker 29.1, CDI only",
        Machine("docker-29.1-cdi-only", gpus=1, hooks=frozenset({docker.CDI_HOOK})),
        "cpu",
        "an NVIDIA CDI spec exists, but Docker 29.1.5 serves `driver: nvidia` through CDI only "
        "from 29.2.0",
        "upgrade Docker to 29.2 or newer, or install the NVIDIA Container Toolkit",
    ),
    (
        "Docker 29.2, CDI only",
        Machine("docker-29.2-cdi-only", gpus=1, hooks=frozenset({docker.CDI_HOOK})),
        "gpu",
        "CDI is on with an NVIDIA spec: Docker hands out GPUs via CDI",
        "",
    ),
    (
        "the runtime without its hook",
        Machine("docker-28-runtime-without-hook", gpus=1),
        "cpu",
        "the `nvidia` runtime is registered, but nvidia-container-runtime-hook is not on "
        "dockerd's PATH",
        "install the NVIDIA Container Toolkit (package nvidia-container-toolkit",
    ),
]
FILES = {"gpu": GPU, "cpu": CPU, "podman": PODMAN_GPU}


def answers(machine: Machine) -> dict:
    found = capture(machine.capture)
    version = found["version"]
    if machine.client_os:
        version = version | {"Client": version["Client"] | {"Os": machine.client_os}}
    info = found["info"]
    if machine.client_os:  # the WSL distro's own CLI, on the default context
        info = info | {"ClientInfo": info["ClientInfo"] | {"Context": "default"}}
    result = engine_answers(info, version)
    result[command_line(compose.VERSION)] = Result(machine.compose + "\n")
    context = (info.get("ClientInfo") or {}).get("Context")
    if found.get("context") and context and context != "default":
        inspect = ["docker", "context", "inspect", context, "--format", "{{json .Endpoints}}"]
        result[command_line(inspect)] = Result(json.dumps(found["context"]))
    return result


@pytest.fixture
def machine_as(tmp_path, monkeypatch):
    """This machine made into ``machine``: its hooks, CDI spec, toolkit config, NVML, OS."""

    def make(machine: Machine) -> None:
        bin_dir, cdi_dir = tmp_path / "bin", tmp_path / "cdi"
        bin_dir.mkdir()
        cdi_dir.mkdir()
        for hook in machine.hooks:
            (bin_dir / hook).touch(mode=0o755)
        if machine.cdi_spec:
            (cdi_dir / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
        config = tmp_path / "config.toml"
        config.write_text(
            "[nvidia-container-cli]\n"
            + ("no-cgroups = true\n" if machine.no_cgroups else "#no-cgroups = false\n")
        )
        monkeypatch.setattr(docker, "DAEMON_PATH", (str(bin_dir),))
        monkeypatch.setattr(docker, "CDI_DIRS", (str(cdi_dir),))
        monkeypatch.setattr(docker, "TOOLKIT_CONFIG", config)
        install(
            monkeypatch, FakeNvmlLibrary([FakeGpu(uuid=f"GPU-{i}") for i in range(machine.gpus)])
        )
        monkeypatch.setattr(
            docker, "Host", functools.partial(docker.Host, platform=machine.platform)
        )
        for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "TORCH_INDEX_URL", "COMPOSE_FILE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in machine.environ.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(compose, "ENV_FILE", tmp_path / ".env")
        monkeypatch.setattr(tasks, "ROOT", tmp_path)

    return make


def run_up(machine: Machine, capsys) -> tuple[str | None, str, MockContext]:
    """(the compose files `invoke up` started with, or None when it refused; its stderr)."""
    c = MockContext(
        run=answers(machine) | up_answers(CPU) | up_answers(GPU) | up_answers(PODMAN_GPU)
    )
    try:
        tasks.up(c)
    except Exit as refused:
        return None, str(refused.message), c
    started = [call.args[0] for call in c.run.call_args_list if " up -d " in call.args[0]]
    (files,) = [name for name, line in FILES.items() if started == [f"{line} up -d --build --wait"]]
    return files, capsys.readouterr().err, c


def run_doctor(machine: Machine, tmp_path) -> dict:
    probes = Probes(
        context=MockContext(run=answers(machine)),
        port_free=lambda port: True,
        disk_free=lambda path: 10**12,
        data_dir=tmp_path / "data",
        env_file=tmp_path / ".env",
        environ=machine.environ,
        platform=machine.platform,
        jetson_release=tmp_path / "nv_tegra_release",
    )
    return {check.name.split(" (")[0]: check for check in doctor.run_checks(probes)}


@pytest.mark.parametrize(
    ("machine", "starts", "verdict", "advice"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_up_and_doctor_give_the_same_verdict_and_advice(
    machine_as, tmp_path, capsys, machine, starts, verdict, advice
):
    machine_as(machine)
    files, said, _ = run_up(machine, capsys)
    checks = run_doctor(machine, tmp_path)
    assert files == starts, said

    if machine.capture.startswith("remote"):  # refused: one line, the same in both
        assert said == checks["Docker engine"].detail and "\n" not in said
        assert said.startswith(verdict) and advice in said
        assert checks["Docker engine"].status == FAIL and "Docker GPU access" not in checks
        return
    gpu = checks["Docker GPU access"]
    assert gpu.detail.startswith(verdict)
    assert (gpu.status == OK) == (starts in ("gpu", "podman"))
    if files is None:  # podman-compose: refused by `up` and failed by doctor alike
        assert said == checks["Compose"].detail and checks["Compose"].status == FAIL
        assert advice in gpu.fix
        return
    assert said.splitlines()[0].startswith(verdict)  # `up` says the same verdict first
    if advice and machine.gpus:  # a GPU the engine does not hand out: the same fix
        assert gpu.status == FAIL and gpu.fix.startswith(advice)
        assert f"fix: {gpu.fix}" in said.splitlines()
    elif advice:  # no GPU here: the line that makes plain `docker compose up` work
        assert advice in said.splitlines() and advice in gpu.detail


def test_a_mac_gets_the_cpu_build_of_torch_without_asking(machine_as, tmp_path, capsys):
    machine = Machine("desktop-macos", "darwin")
    machine_as(machine)
    _, said, c = run_up(machine, capsys)
    (up,) = [call for call in c.run.call_args_list if " up -d " in call.args[0]]
    assert up.kwargs["env"] == {"TORCH_INDEX_URL": torch_build.CPU_INDEX}  # a build arg
    driver = run_doctor(machine, tmp_path)["GPU driver vs torch build"]
    assert driver.status == OK and "CPU-only build (chosen for macOS)" in driver.detail
    assert "install" not in driver.detail.lower()  # no driver advice on a Mac


def test_invoke_gpu_on_a_mac_says_so_in_one_line(machine_as):
    machine_as(Machine("desktop-macos", "darwin"))
    with pytest.raises(Exit) as raised:
        tasks.gpu(MockContext(run={}))  # nothing is run: not even the container
    assert raised.value.code == 3 and "\n" not in raised.value.message
    assert "no NVIDIA GPU on macOS" in raised.value.message
    assert "driver" not in raised.value.message


def test_rootful_podman_gets_no_keep_id(machine_as, capsys):
    """keep-id is rootless Podman's; rootful Podman refuses it, so `up` sets the userns."""
    machine = Machine(
        "podman-5.4-socket",
        gpus=1,
        cdi_spec=True,
        environ={"DOCKER_HOST": "unix:///run/podman/podman.sock"},
    )
    machine_as(machine)
    rootful = capture("podman-5.4-socket")["info"] | {
        "DockerRootDir": "/var/lib/containers/storage"
    }
    found = docker.Engine.read(rootful, capture("podman-5.4-socket")["version"])
    assert found.podman and not found.rootless
    c = MockContext(
        run=answers(machine) | engine_answers(rootful, found.version) | up_answers(PODMAN_GPU)
    )
    tasks.up(c)
    (up,) = [call for call in c.run.call_args_list if " up -d " in call.args[0]]
    assert up.kwargs["env"] == {"LAB_PODMAN_USERNS": "host"}


@pytest.mark.parametrize(
    ("name", "label", "rootless", "podman", "desktop"),
    [
        (
            "desktop-windows-4.34",
            "Docker Desktop 4.34.3 (Windows, WSL 2), engine 27.2.0",
            False,
            False,
            "windows",
        ),
        ("desktop-macos", "Docker Desktop 4.37.1 (macOS), engine 27.4.0", False, False, "macos"),
        ("docker-rootless", "rootless Docker 20.10.24+dfsg1", True, False, None),
        ("podman-docker", "Podman 4.3.1 (rootless)", True, True, None),
        ("podman-4.3-socket", "Podman 4.3.1 (rootless)", True, True, None),
        ("docker-29.2-cdi-only", "Docker 29.2.0", False, False, None),
    ],
)
def test_the_engine_is_recognised(name, label, rootless, podman, desktop):
    found = docker.Engine.read(capture(name)["info"], capture(name)["version"])
    assert (found.label, found.rootless, found.podman, found.desktop) == (
        label,
        rootless,
        podman,
        desktop,
    )


@pytest.mark.parametrize(
    ("endpoint", "remote"),
    [
        ("", False),
        ("unix:///run/user/1000/docker.sock", False),
        ("npipe:////./pipe/dockerDesktopLinuxEngine", False),
        ("tcp://127.0.0.1:2375", False),
        ("tcp://localhost:2375", False),
        ("tcp://10.0.0.5:2376", True),
        ("ssh://ada@gpu-server", True),
    ],
)
def test_remote_is_judged_from_the_endpoint(endpoint, remote):
    assert docker.Engine({}, {}, endpoint).remote is remote


def test_docker_desktop_in_windows_containers_mode_is_one_line(machine_as):
    info = capture("desktop-windows-4.34")["info"] | {"OSType": "windows"}
    c = MockContext(run=engine_answers(info))
    with pytest.raises(Exit, match="switch it to Linux containers"):
        tasks.up(c)


@pytest.mark.parametrize(
    ("architecture", "jetson", "status", "detail"),
    [
        ("x86_64", False, OK, "linux, containers on x86_64"),
        ("aarch64", False, OK, "linux, containers on aarch64"),
        ("aarch64", True, doctor.WARN, "NVIDIA Jetson (L4T) is not supported"),
        ("ppc64le", False, FAIL, "ppc64le: PyTorch publishes no Linux wheels for it"),
    ],
)
def test_unsupported_platforms_are_said_in_one_line(tmp_path, architecture, jetson, status, detail):
    if jetson:
        (tmp_path / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3\n")
    found = docker.Engine.read({"Architecture": architecture})
    probes = Probes(platform="linux", jetson_release=tmp_path / "nv_tegra_release")
    check = doctor.check_platform(probes, found)
    assert (check.status, check.detail.startswith(detail)) == (status, True)
    assert "\n" not in check.detail
