"""`lab doctor`: on this machine as it really is, and on faked answers for the rest.

Commands are answered by invoke's MockContext (the same answers `invoke up` gets in the
agreement test), NVML by the real binding over the fake NVML library.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest
from invoke import Exit, MockContext, Result
from support.engines import COMPOSE_VERSION as VERSION
from support.engines import (
    CPU,
    DOCKER_VERSION,
    ENGINE_VERSION,
    GPU,
    INFO,
    compose_answer,
    up_answers,
)
from support.fake_pynvml import FakeGpu, FakeNvmlLibrary, install

import tasks
from lab.host import Shell, compose, docker, doctor, placement, torch_build
from lab.host.doctor import FAIL, GB, OK, WARN, Probes

ROOT = Path(__file__).resolve().parents[2]
TORCH = "https://download.pytorch.org/whl/"
PIN = torch_build.torch_pin()


@pytest.fixture(autouse=True)
def _nothing_from_this_machine(monkeypatch):
    monkeypatch.setattr(docker, "CDI_DIRS", ())
    monkeypatch.setattr(docker, "DAEMON_PATH", ())
    monkeypatch.setattr(placement, "interactive", lambda: False)


def info_answer(tmp_path, runtimes=("runc",), **extra) -> Result:
    info = {
        "ServerVersion": "27.3.1",
        "DockerRootDir": str(tmp_path / "docker"),
        "Runtimes": {name: {"path": name} for name in runtimes},
        "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"],
    }
    return Result(json.dumps(info | extra))


def gpu_box(tmp_path, monkeypatch, driver="580.65.06", gpus=1, answers=None, **overrides):
    """A healthy GPU host: the toolkit's hook, a 580 driver, room, free ports."""
    install(monkeypatch, FakeNvmlLibrary([FakeGpu(uuid=f"GPU-{i}") for i in range(gpus)], driver))
    hooks = tmp_path / "bin"
    hooks.mkdir(exist_ok=True)
    (hooks / docker.HOOK).touch(mode=0o755)
    monkeypatch.setattr(docker, "DAEMON_PATH", (str(hooks),))
    run = {
        INFO: info_answer(tmp_path),
        DOCKER_VERSION: Result(json.dumps(ENGINE_VERSION)),
        VERSION: compose_answer("2.29.7"),
    }
    settings = dict(
        context=MockContext(run=run | (answers or {})),
        port_free=lambda port: True,
        disk_free=lambda path: 100 * GB,
        data_dir=tmp_path / "data",
        env_file=tmp_path / ".env",
        environ={},
        platform="linux",
        jetson_release=tmp_path / "nv_tegra_release",
    )
    return Probes(**(settings | overrides))


def by_name(checks) -> dict:
    return {check.name.split(" (")[0]: check for check in checks}


def run_doctor(probes: Probes, capsys, as_json=True) -> tuple[int, object]:
    code = doctor.run(argparse.Namespace(json=as_json), probes)
    out = capsys.readouterr().out
    return code, json.loads(out) if as_json else out


# -- this machine, as it is ----------------------------------------------------------------
def test_this_machine_as_it_really_is(tmp_path, capsys, monkeypatch):
    monkeypatch.undo()  # the real CDI dirs and hooks
    code, report = run_doctor(Probes(data_dir=tmp_path / "data"), capsys)
    checks = {c["name"].split(" (")[0]: c for c in report["checks"]}
    info = (
        subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
        )
        if shutil.which("docker")
        else None
    )
    if info is not None and info.returncode == 0:
        assert list(checks)[:4] == ["Docker engine", "Compose", "platform", "Docker GPU access"]
        assert checks["Docker engine"]["status"] == OK
        assert info.stdout.strip() in checks["Docker engine"]["detail"]
    else:
        assert checks["Docker engine"]["status"] == FAIL
        assert "Docker GPU access" not in checks  # one cause, one line
        assert any("still work" in note for note in report["notes"])
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:  # no GPU here: a warning that says why, never a failure
        gpu = checks["GPU driver vs torch build"]
        assert gpu["status"] == WARN and str(exc) in gpu["detail"]
        assert checks.get("Docker GPU access", {"status": OK})["status"] in (OK, WARN)
    assert report["ok"] == (code == 0) == all(c["status"] != FAIL for c in checks.values())


def test_text_table_lists_every_check_with_its_status(tmp_path, monkeypatch, capsys):
    code, out = run_doctor(gpu_box(tmp_path, monkeypatch), capsys, as_json=False)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert any(line.startswith("Docker engine") and " ok " in line for line in lines)
    assert out.rstrip().endswith("nothing failed")


# -- faked answers -------------------------------------------------------------------------
def test_a_healthy_gpu_box_passes_everything(tmp_path, monkeypatch, capsys):
    code, report = run_doctor(gpu_box(tmp_path, monkeypatch), capsys)
    assert code == 0 and report["ok"] is True
    assert {c["status"] for c in report["checks"]} == {OK}
    detail = by_name(doctor.run_checks(gpu_box(tmp_path, monkeypatch)))["GPU driver vs torch build"]
    assert detail.detail == (
        f"1 GPU(s), driver 580.65.06 (CUDA <= 13.0); the image's torch {PIN} CUDA 13.0 build "
        "(PyPI default) needs driver >= 580"
    )


def test_the_torch_pin_has_one_source_the_image_requirements():
    requirements = (ROOT / "docker" / "lab" / "requirements-torch.txt").read_text()
    assert f"torch=={PIN}\n" in requirements
    assert f'"torch=={PIN}"' in (ROOT / "pyproject.toml").read_text()
    assert PIN not in (ROOT / "lab" / "host" / "doctor.py").read_text()
    major_minor = ".".join(PIN.split(".")[:2])
    assert major_minor in torch_build.PYPI_TORCH_CUDA  # which CUDA its PyPI wheels are


def test_no_docker_is_one_failed_line_and_says_what_still_works(tmp_path, monkeypatch, capsys):
    missing = {INFO: Result(exited=127), VERSION: Result(exited=127)}
    probes = gpu_box(tmp_path, monkeypatch, answers=missing)
    install(monkeypatch, FakeNvmlLibrary([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    code, out = run_doctor(probes, capsys, as_json=False)
    checks = by_name(doctor.run_checks(probes))
    assert code == 1
    assert checks["Docker engine"].status == FAIL
    assert checks["Docker engine"].detail == docker.NOT_INSTALLED
    assert "Compose" not in checks and "Docker GPU access" not in checks
    gpu = checks["GPU driver vs torch build"]
    assert gpu.status == WARN and "NVML Shared Library Not Found" in gpu.detail
    assert "lessons run locally on the CPU" in out and "invoke download-data" in out
    assert "1 failed (Docker engine)" in out
    assert checks["disk for images"].detail.endswith("GB free at /")


def test_an_unreachable_engine_is_one_failure_not_two(tmp_path, monkeypatch):
    down = Result(stderr="Cannot connect to the Docker daemon\n", exited=1)
    probes = gpu_box(tmp_path, monkeypatch, answers={INFO: down}, port_free=lambda p: False)
    checks = by_name(doctor.run_checks(probes))
    assert checks["Docker engine"].status == FAIL
    assert checks["Docker engine"].detail == docker.NOT_REACHABLE
    assert "Docker GPU access" not in checks  # not a second failure for the same cause
    assert checks["Compose"].status == OK  # the client still answers
    assert [c.name for c in checks.values() if c.status == FAIL and "port" not in c.name] == [
        "Docker engine"
    ]


def test_an_engine_that_hangs_is_reported_within_the_timeout():
    shell = Shell(timeout=0.5)  # what doctor asks through when invoke is not running it
    result = shell.run("sleep 5")
    assert result.exited == 124 and "did not answer within 0.5 s" in result.stderr


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (compose_answer("2.29.7"), OK),
        (compose_answer("5.6.1"), OK),
        (compose_answer("2.18.0"), OK),
        (compose_answer("2.17.3"), FAIL),
        (compose_answer("2.0.1"), FAIL),  # passed doctor before, failed `invoke up`
        (Result("docker-compose version 1.29.2, build 5becea4c\n"), FAIL),
        (Result(stderr="docker: 'compose' is not a docker command.\n", exited=1), FAIL),
    ],
)
def test_compose_floor_is_invoke_ups(tmp_path, monkeypatch, answer, status):
    check = by_name(doctor.run_checks(gpu_box(tmp_path, monkeypatch, answers={VERSION: answer})))
    assert check["Compose"].status == status
    if status == FAIL:
        assert "docker-compose-plugin" in check["Compose"].detail


# -- driver x torch build: CUDA minor-version compatibility ---------------------------------
DRIVERS = ["470.256.02", "525.60.13", "535.104.05", "550.54.15", "570.86.15", "580.65.06"]
BUILDS = {"unset": None, "cu126": TORCH + "cu126", "cu132": TORCH + "cu132", "cpu": TORCH + "cpu"}
# (driver, TORCH_INDEX_URL) -> status; cu126 runs on >= 525.60.13, cu130 and cu132 on >= 580
VERDICTS = {
    "470.256.02": {"unset": FAIL, "cu126": FAIL, "cu132": FAIL, "cpu": WARN},
    "525.60.13": {"unset": FAIL, "cu126": OK, "cu132": FAIL, "cpu": WARN},
    "535.104.05": {"unset": FAIL, "cu126": OK, "cu132": FAIL, "cpu": WARN},
    "550.54.15": {"unset": FAIL, "cu126": OK, "cu132": FAIL, "cpu": WARN},
    "570.86.15": {"unset": FAIL, "cu126": OK, "cu132": FAIL, "cpu": WARN},
    "580.65.06": {"unset": OK, "cu126": OK, "cu132": OK, "cpu": WARN},
}


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("driver", DRIVERS)
def test_driver_verdicts(tmp_path, monkeypatch, driver, build):
    environ = {"TORCH_INDEX_URL": BUILDS[build]} if BUILDS[build] else {}
    probes = gpu_box(tmp_path, monkeypatch, driver=driver, environ=environ)
    check = by_name(doctor.run_checks(probes))["GPU driver vs torch build"]
    assert check.status == VERDICTS[driver][build]
    if check.status == FAIL and driver != "470.256.02":
        # name the build that fits this driver (torch 2.14 publishes no cu128), and the
        # driver the chosen build needs
        assert f"TORCH_INDEX_URL={TORCH}cu126 in .env" in check.fix
        assert "update the NVIDIA driver to >= 580" in check.fix
    if check.status == FAIL and driver == "470.256.02":
        assert "TORCH_INDEX_URL" not in check.fix  # no build of this torch runs there
        assert "update the NVIDIA driver to >= " in check.fix
    if build == "cpu":
        assert "will not use the GPU" in check.detail


def test_a_build_chosen_in_dot_env_is_what_the_driver_is_checked_against(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"JUPYTER_TOKEN=x\nTORCH_INDEX_URL={TORCH}cu126\n")
    check = by_name(doctor.run_checks(gpu_box(tmp_path, monkeypatch, driver="535.104.05")))
    assert check["GPU driver vs torch build"].status == OK
    environ = {"TORCH_INDEX_URL": TORCH + "cu130"}  # the shell beats .env, as with Compose
    probes = gpu_box(tmp_path, monkeypatch, driver="535.104.05", environ=environ)
    assert by_name(doctor.run_checks(probes))["GPU driver vs torch build"].status == FAIL


def test_a_cpu_build_on_a_machine_without_gpu_is_fine(tmp_path, monkeypatch):
    probes = gpu_box(tmp_path, monkeypatch, environ={"TORCH_INDEX_URL": TORCH + "cpu"})
    install(monkeypatch, FakeNvmlLibrary([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert by_name(doctor.run_checks(probes))["GPU driver vs torch build"].status == OK


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "modprobe nvidia"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "reboot"),  # driver upgraded, no reboot
        (pynvml.NVML_ERROR_NO_PERMISSION, "/dev/nvidia"),
    ],
    ids=["driver-not-loaded", "rm-library-mismatch", "no-permission"],
)
def test_nvml_refusing_a_gpu_that_is_there_fails_the_doctor(
    tmp_path, monkeypatch, capsys, error, advice
):
    """Every GPU container would fail: that is a failure, not a warning with exit 0."""
    probes = gpu_box(tmp_path, monkeypatch)
    install(monkeypatch, FakeNvmlLibrary([FakeGpu()], init_error=error))
    code, report = run_doctor(probes, capsys)
    check = next(c for c in report["checks"] if c["name"] == "GPU driver vs torch build")
    assert code == 1 and report["ok"] is False
    assert check["status"] == FAIL and advice in check["fix"]
    assert check["detail"] == f"NVML: {pynvml.NVMLError(error)}"


def test_no_nvml_library_at_all_is_still_only_a_warning(tmp_path, monkeypatch):
    probes = gpu_box(tmp_path, monkeypatch)
    install(monkeypatch, FakeNvmlLibrary([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert by_name(doctor.run_checks(probes))["GPU driver vs torch build"].status == WARN


# -- doctor and `invoke up` agree ------------------------------------------------------------
NVIDIA_CDI = [{"Source": "cdi", "ID": "nvidia.com/gpu=all"}]
ENGINES = {  # name: (docker info extras, hooks installed)
    "hook only": ({}, {docker.HOOK}),
    "runtime registered": ({"Runtimes": {"runc": {}, "nvidia": {}}}, set()),
    "nothing": ({}, set()),
    "CDI on, Docker 29": (
        {"ServerVersion": "29.1.0", "DiscoveredDevices": NVIDIA_CDI},
        {docker.CDI_HOOK},
    ),
    "CDI on, Docker 28": (
        {"ServerVersion": "28.3.3", "DiscoveredDevices": NVIDIA_CDI},
        {docker.CDI_HOOK},
    ),
    "CDI off": ({"CDISpecDirs": [], "DiscoveredDevices": NVIDIA_CDI}, {docker.CDI_HOOK}),
}
COMPOSES = ["2.0.1", "2.17.3", "2.18.0", "2.29.7"]


@pytest.mark.parametrize("compose_version", COMPOSES)
@pytest.mark.parametrize("engine", list(ENGINES))
def test_doctor_and_invoke_up_agree(tmp_path, monkeypatch, engine, compose_version):
    extras, hooks = ENGINES[engine]
    probes = gpu_box(tmp_path, monkeypatch)
    for hook in (docker.HOOK, docker.CDI_HOOK):
        (tmp_path / "bin" / hook).unlink(missing_ok=True)
    for hook in hooks:
        (tmp_path / "bin" / hook).touch(mode=0o755)
    answers = {
        INFO: info_answer(tmp_path, **extras),
        DOCKER_VERSION: Result(json.dumps(ENGINE_VERSION)),
        VERSION: compose_answer(compose_version),
    }
    cpu, gpu = CPU, GPU
    up_context = MockContext(run=answers | up_answers(cpu) | up_answers(gpu))
    probes.context = MockContext(run=answers)
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    checks = by_name(doctor.run_checks(probes))
    try:
        tasks.up(up_context)
        up_failed, used_gpu = (
            False,
            any(
                call.args[0] == f"{gpu} up -d --build --wait"
                for call in up_context.run.call_args_list
            ),
        )
    except Exit:
        up_failed, used_gpu = True, None
    assert (checks["Compose"].status == FAIL) == up_failed
    if not up_failed:
        assert (checks["Docker GPU access"].status == OK) == used_gpu


# -- ports, disk ---------------------------------------------------------------------------
def test_a_busy_port_is_found_by_really_binding_it(tmp_path, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert doctor.port_is_free(port) is False
        environ = {"LAB_JUPYTER_PORT": str(port)}
        probes = gpu_box(tmp_path, monkeypatch, port_free=doctor.port_is_free, environ=environ)
        check = doctor.check_port(probes, compose.JUPYTER, False)
        assert check.status == FAIL and check.detail == "in use by another program"
        assert f"sport = :{port}" in check.fix and "LAB_JUPYTER_PORT=<port> in .env" in check.fix
        ps = f"docker ps --filter publish={port} --format '{{{{.Names}}}}'"
        probes.context = MockContext(run={ps: Result("autograd-lab-lab-1\n")})
        check = doctor.check_port(probes, compose.JUPYTER, True)
        assert check.status == WARN and "container autograd-lab-lab-1" in check.detail
    assert doctor.port_is_free(port) is True


def test_the_ports_checked_are_the_ones_compose_publishes(tmp_path, monkeypatch, capsys):
    (tmp_path / ".env").write_text("LAB_JUPYTER_PORT=18888\n")
    asked = []
    probes = gpu_box(
        tmp_path,
        monkeypatch,
        environ={"LAB_TENSORBOARD_PORT": "16006"},
        port_free=lambda port: asked.append(port) or port != 18888,
        answers={"docker ps --filter publish=18888 --format '{{.Names}}'": Result("")},
    )
    code, report = run_doctor(probes, capsys)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert asked == [18888, 16006]
    assert code == 1 and statuses["port 18888 (lab)"] == FAIL
    assert statuses["port 16006 (tensorboard)"] == OK


def test_low_disk_warns_where_images_and_datasets_go(tmp_path, monkeypatch, capsys):
    asked = []

    def disk_free(path):
        asked.append(Path(path))
        return int(2 * GB) if path == tmp_path / "docker" else int(0.2 * GB)

    code, report = run_doctor(gpu_box(tmp_path, monkeypatch, disk_free=disk_free), capsys)
    checks = {c["name"]: c for c in report["checks"]}
    assert asked == [tmp_path / "docker", tmp_path / "data"]  # docker's root dir; the data dir
    assert checks["disk for images"]["status"] == WARN
    assert "2.0 GB free" in checks["disk for images"]["detail"]
    assert "need ~7 GB" in checks["disk for images"]["detail"]
    assert checks["disk for datasets"]["status"] == WARN
    assert "need ~0.5 GB" in checks["disk for datasets"]["detail"]
    assert code == 0  # warnings do not fail the doctor


def test_free_bytes_looks_at_the_nearest_existing_folder(tmp_path):
    missing = tmp_path / "not" / "yet" / "data"
    assert abs(doctor.free_bytes(missing) - shutil.disk_usage(tmp_path).free) < GB


def test_doctor_as_a_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lab", "doctor", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/nonexistent", "LAB_DATA_DIR": str(tmp_path)},
    )
    report = json.loads(done.stdout)  # no docker on this PATH: fails, says what still works
    assert done.returncode == 1 and report["ok"] is False and "Traceback" not in done.stderr
    assert report["checks"][0]["detail"] == docker.NOT_INSTALLED
    help_text = subprocess.run(
        [sys.executable, "-m", "lab", "doctor", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "exit status: 0 nothing failed" in help_text
