"""`lab doctor`: on this machine as it really is, and on faked answers for the rest."""

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

from lab.host import doctor
from lab.host.doctor import FAIL, GB, OK, WARN, Probes, Result

ROOT = Path(__file__).resolve().parents[2]
from support.fake_pynvml import FakeGpu, FakePynvml

NO_DRIVER = FakePynvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


class FakeRunner:
    """Answers commands by their first two words; an unknown program is not installed."""

    def __init__(self, answers: dict) -> None:
        self.answers, self.calls = answers, []

    def __call__(self, command, timeout):
        self.calls.append(list(command))
        answer = self.answers.get(" ".join(command[:2]))
        if answer is None:
            raise FileNotFoundError(command[0])
        if isinstance(answer, Exception):
            raise answer
        return answer


def docker_info(tmp_path, runtimes=("runc",), **extra) -> Result:
    info = {
        "ServerVersion": "27.3.1",
        "DockerRootDir": str(tmp_path / "docker"),
        "Runtimes": {name: {"path": name} for name in runtimes},
        "CDISpecDirs": None,
    }
    return Result(0, json.dumps(info | extra), "")


def gpu_box(tmp_path, **overrides) -> Probes:
    """A healthy GPU host: Docker with the nvidia runtime, a 580 driver, room, free ports."""
    answers = {
        "docker info": docker_info(tmp_path, runtimes=("runc", "nvidia")),
        "docker compose": Result(0, "2.29.7\n", ""),
    }
    settings = dict(
        run=FakeRunner(answers),
        nvml_module=FakePynvml([FakeGpu()]),
        port_free=lambda port: True,
        disk_free=lambda path: 100 * GB,
        cdi_dirs=(str(tmp_path / "cdi"),),
        data_dir=tmp_path / "data",
        env_file=tmp_path / ".env",
        environ={},
    )
    return Probes(**(settings | overrides))


def by_name(checks) -> dict:
    return {check.name.split(" (")[0]: check for check in checks}


def run_doctor(probes: Probes, capsys, as_json=True) -> tuple[int, object]:
    code = doctor.run(argparse.Namespace(json=as_json), probes)
    out = capsys.readouterr().out
    return code, json.loads(out) if as_json else out


# -- this machine, as it is ----------------------------------------------------------------
def test_this_machine_as_it_really_is(tmp_path, capsys):
    code, report = run_doctor(Probes(data_dir=tmp_path / "data"), capsys)
    checks = {c["name"].split(" (")[0]: c for c in report["checks"]}
    assert list(checks) == [
        "Docker engine",
        "Compose v2",
        "NVIDIA runtime/CDI",
        "GPU driver vs torch CUDA",
        "port 8888",
        "port 6006",
        "disk for images",
        "disk for datasets",
    ]
    info = (
        subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
        )
        if shutil.which("docker")
        else None
    )
    if info is not None and info.returncode == 0:
        assert checks["Docker engine"]["status"] == OK
        assert info.stdout.strip() in checks["Docker engine"]["detail"]
    else:
        assert checks["Docker engine"]["status"] == FAIL
        assert any("still work" in note for note in report["notes"])
    if info is not None:
        compose = subprocess.run(
            ["docker", "compose", "version", "--short"], capture_output=True, text=True
        )
        if compose.returncode == 0:
            assert checks["Compose v2"]["status"] == OK
            assert compose.stdout.strip().lstrip("v") in checks["Compose v2"]["detail"]
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:  # no GPU here: a warning that says why, never a failure
        gpu = checks["GPU driver vs torch CUDA"]
        assert gpu["status"] == WARN and str(exc) in gpu["detail"]
        assert checks["NVIDIA runtime/CDI"]["status"] in (OK, WARN)
    assert report["ok"] == (code == 0) == all(c["status"] != FAIL for c in checks.values())


def test_text_table_lists_every_check_with_its_status(tmp_path, capsys):
    code, out = run_doctor(gpu_box(tmp_path), capsys, as_json=False)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert any(line.startswith("Docker engine") and " ok " in line for line in lines)
    assert out.rstrip().endswith("nothing failed")


# -- faked answers -------------------------------------------------------------------------
def test_a_healthy_gpu_box_passes_everything(tmp_path, capsys):
    code, report = run_doctor(gpu_box(tmp_path), capsys)
    assert code == 0 and report["ok"] is True
    assert {c["status"] for c in report["checks"]} == {OK}
    detail = by_name(doctor.run_checks(gpu_box(tmp_path)))["GPU driver vs torch CUDA"].detail
    assert detail == (
        "1 GPU(s), driver 580.65.06 supports CUDA 13.0; the lab image's torch "
        "needs CUDA 13.0 (torch 2.14.1 default wheels)"
    )


def test_no_docker_and_no_gpu_says_so_and_what_still_works(tmp_path, capsys):
    probes = gpu_box(tmp_path, run=FakeRunner({}), nvml_module=NO_DRIVER)
    code, out = run_doctor(probes, capsys, as_json=False)
    checks = by_name(doctor.run_checks(probes))
    assert code == 1
    assert checks["Docker engine"].status == FAIL
    assert checks["Docker engine"].detail == "`docker` not found"
    assert "docs.docker.com/engine/install" in checks["Docker engine"].fix
    assert checks["Compose v2"].status == FAIL
    assert checks["NVIDIA runtime/CDI"].status == WARN
    assert "compose.cpu.yaml" in checks["NVIDIA runtime/CDI"].detail
    gpu = checks["GPU driver vs torch CUDA"]
    assert gpu.status == WARN and "NVML Shared Library Not Found" in gpu.detail
    assert "lessons run locally on the CPU" in out and "invoke download-data" in out
    assert "2 failed (Docker engine, Compose v2)" in out
    assert checks["disk for images"].detail.endswith("GB free at /")


def test_engine_down_or_hanging_fails_with_dockers_own_words(tmp_path):
    down = Result(
        1,
        "",
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        " Is the docker daemon running?\n",
    )
    runner = FakeRunner({"docker info": down, "docker compose": Result(0, "v2.29.7\n", "")})
    checks = by_name(doctor.run_checks(gpu_box(tmp_path, run=runner, port_free=lambda port: False)))
    assert checks["Docker engine"].status == FAIL
    assert "Cannot connect to the Docker daemon" in checks["Docker engine"].detail
    assert checks["Compose v2"].status == OK and checks["Compose v2"].detail.endswith("2.29.7")
    assert not any(call[:2] == ["docker", "ps"] for call in runner.calls)  # engine is down
    hang = subprocess.TimeoutExpired(["docker", "info"], 15)
    checks = by_name(doctor.run_checks(gpu_box(tmp_path, run=FakeRunner({"docker info": hang}))))
    assert checks["Docker engine"].status == FAIL
    assert "did not answer within 15 s" in checks["Docker engine"].detail


@pytest.mark.parametrize(
    "answer, status",
    [
        (Result(0, "2.29.7\n", ""), OK),
        (Result(0, "5.6.1\n", ""), OK),
        (Result(0, "1.29.2\n", ""), FAIL),
        (Result(1, "", "docker: 'compose' is not a docker command.\n"), FAIL),
    ],
)
def test_compose_v2_is_required(tmp_path, answer, status):
    runner = FakeRunner({"docker info": docker_info(tmp_path), "docker compose": answer})
    check = by_name(doctor.run_checks(gpu_box(tmp_path, run=runner)))["Compose v2"]
    assert check.status == status
    if status == FAIL:
        assert "docker-compose-plugin" in check.fix


def test_gpu_without_nvidia_runtime_fails_unless_a_cdi_spec_is_there(tmp_path):
    runner = FakeRunner(
        {"docker info": docker_info(tmp_path), "docker compose": Result(0, "2.29.7", "")}
    )
    probes = gpu_box(tmp_path, run=runner)
    check = by_name(doctor.run_checks(probes))["NVIDIA runtime/CDI"]
    assert check.status == FAIL and "nvidia-ctk runtime configure" in check.fix
    (tmp_path / "cdi").mkdir()
    (tmp_path / "cdi" / "nvidia.yaml").write_text("cdiVersion: 0.6.0\n")
    check = by_name(doctor.run_checks(probes))["NVIDIA runtime/CDI"]
    assert check.status == OK


@pytest.mark.parametrize(
    "cuda, driver, build", [(12080, "570.86.15", "cu128"), (12060, "560.35.03", "cu126")]
)
def test_an_old_driver_names_the_build_argument_for_an_older_torch(tmp_path, cuda, driver, build):
    probes = gpu_box(tmp_path, nvml_module=FakePynvml([FakeGpu()], driver=driver, cuda=cuda))
    check = by_name(doctor.run_checks(probes))["GPU driver vs torch CUDA"]
    assert check.status == FAIL
    assert f"driver {driver} supports CUDA {cuda // 1000}.{cuda % 1000 // 10}" in check.detail
    assert "needs CUDA 13.0" in check.detail
    assert "driver >= 580" in check.fix
    url = f"https://download.pytorch.org/whl/{build}"
    assert f"TORCH_INDEX_URL={url} in .env" in check.fix
    assert f"docker compose build --build-arg TORCH_INDEX_URL={url}" in check.fix


def test_a_driver_too_old_for_any_build_only_says_update(tmp_path):
    probes = gpu_box(tmp_path, nvml_module=FakePynvml([FakeGpu()], driver="535.1", cuda=12020))
    check = by_name(doctor.run_checks(probes))["GPU driver vs torch CUDA"]
    assert check.status == FAIL and "TORCH_INDEX_URL" not in check.fix
    assert check.fix == "update the NVIDIA driver (CUDA 13.0 needs driver >= 580)"


def test_an_older_torch_build_chosen_in_env_is_what_the_driver_is_checked_against(tmp_path):
    old_driver = FakePynvml([FakeGpu()], driver="570.86.15", cuda=12080)
    (tmp_path / ".env").write_text(
        "JUPYTER_TOKEN=x\nTORCH_INDEX_URL=https://download.pytorch.org/whl/cu126\n"
    )
    check = by_name(doctor.run_checks(gpu_box(tmp_path, nvml_module=old_driver)))
    assert check["GPU driver vs torch CUDA"].status == OK
    assert "needs CUDA 12.6 (TORCH_INDEX_URL in" in check["GPU driver vs torch CUDA"].detail
    environ = {"TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu130"}  # shell beats .env
    check = by_name(doctor.run_checks(gpu_box(tmp_path, nvml_module=old_driver, environ=environ)))
    assert check["GPU driver vs torch CUDA"].status == FAIL


def test_a_busy_port_is_found_by_really_binding_it(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert doctor.port_is_free(port) is False
        check = doctor.check_port(gpu_box(tmp_path, port_free=doctor.port_is_free), port, True)
        assert check.status == FAIL and check.detail == "in use by another program"
        assert f"sport = :{port}" in check.fix
        runner = FakeRunner({"docker ps": Result(0, "autograd-lab-lab-1\n", "")})
        check = doctor.check_port(
            gpu_box(tmp_path, run=runner, port_free=doctor.port_is_free), port, True
        )
        assert check.status == WARN and "container autograd-lab-lab-1" in check.detail
        assert runner.calls == [
            ["docker", "ps", "--filter", f"publish={port}", "--format", "{{.Names}}"]
        ]
    assert doctor.port_is_free(port) is True


def test_lab_ports_in_use_by_another_program_fail_the_doctor(tmp_path, capsys):
    busy = gpu_box(tmp_path, port_free=lambda port: port != 8888)
    code, report = run_doctor(busy, capsys)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert code == 1 and statuses["port 8888 (JupyterLab)"] == FAIL
    assert statuses["port 6006 (TensorBoard)"] == OK


def test_low_disk_warns_where_images_and_datasets_go(tmp_path, capsys):
    asked = []

    def disk_free(path):
        asked.append(Path(path))
        return int(2 * GB) if path == tmp_path / "docker" else int(0.2 * GB)

    code, report = run_doctor(gpu_box(tmp_path, disk_free=disk_free), capsys)
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
    assert report["checks"][0]["detail"] == "`docker` not found"
    help_text = subprocess.run(
        [sys.executable, "-m", "lab", "doctor", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "exit status: 0 nothing failed" in help_text
