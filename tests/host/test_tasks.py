"""tasks.py: the exact commands each task runs, where lab commands run, missing prerequisites.

MockContext answers only the commands a test lists: a command nobody expected raises
NotImplementedError, so every test also proves nothing else ran.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Exit, MockContext, Result
from support.engines import COMPOSE_VERSION as VERSION
from support.engines import CPU, DOCKER_VERSION, ENGINE_VERSION, GPU, INFO, up_answers

ROOT = Path(__file__).resolve().parents[2]

import tasks
from lab.host import command_line, compose, docker, placement

PY = sys.executable

NO_GPU_INFO = Result(json.dumps({"Runtimes": {"runc": {"path": "runc"}}}))
# the toolkit installed (its hook where dockerd looks: the `gpu_host` fixture) and configured
NVIDIA_INFO = Result(
    json.dumps(
        {"Runtimes": {"nvidia": {"path": "nvidia-container-runtime"}, "runc": {"path": "runc"}}}
    )
)


def ps(**states: str) -> Result:
    """`compose ps --format json` as Compose >= 2.21 prints it: one object per line."""
    return Result(
        "\n".join(
            json.dumps({"Service": service, "State": state, "Name": service})
            for service, state in states.items()
        )
    )


UP = ps(lab="running", tensorboard="running")


@pytest.fixture(autouse=True)
def _quiet_host(monkeypatch):
    # No CDI specs from the machine running the tests, and no terminal unless a test says so.
    monkeypatch.setattr(docker, "CDI_DIRS", ())
    monkeypatch.setattr(docker, "DAEMON_PATH", ())  # nor its NVIDIA hooks
    monkeypatch.setattr(placement, "interactive", lambda: False)


@pytest.fixture
def gpu_host(tmp_path, monkeypatch):
    """nvidia-container-runtime-hook where dockerd looks for it."""
    (tmp_path / docker.HOOK).touch(mode=0o755)
    monkeypatch.setattr(docker, "DAEMON_PATH", (str(tmp_path),))


def ctx(answers: dict, info: Result = NO_GPU_INFO, remainder: str = "") -> MockContext:
    c = MockContext(
        run={
            INFO: info,
            DOCKER_VERSION: Result(json.dumps(ENGINE_VERSION)),
            VERSION: Result("Docker Compose version v2.29.1\n"),
            **answers,
        }
    )
    c._set(remainder=remainder)  # what invoke puts there from `invoke TASK -- ARGS`
    return c


def ran(c: MockContext) -> list[str]:
    return [call.args[0] for call in c.run.call_args_list]


# --- up ----------------------------------------------------------------------------------


def test_up_without_nvidia_runtime_adds_the_cpu_override_and_prints_both_urls(capsys):
    c = ctx(up_answers(CPU))
    tasks.up(c)
    assert f"{CPU} up -d --build --wait" in ran(c)
    out, err = capsys.readouterr()
    assert "JupyterLab:  http://127.0.0.1:8888/lab?token=0123abcd" in out
    assert "TensorBoard: http://127.0.0.1:6006/" in out
    assert "compose.cpu.yaml" in err and "--gpu" in err
    # what makes plain `docker compose up` work on this host from now on
    assert "put COMPOSE_FILE=compose.yaml:compose.cpu.yaml in .env" in err


def test_up_creates_the_data_folder_before_compose_can_create_it_as_root(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    tasks.up(ctx(up_answers(CPU)))
    assert (tmp_path / "data").is_dir()
    assert (tmp_path / "work").is_dir()


def test_up_with_the_nvidia_toolkit_reserves_the_gpu(gpu_host):
    c = ctx(up_answers(GPU), info=NVIDIA_INFO)
    tasks.up(c)
    assert f"{GPU} up -d --build --wait" in ran(c)


def test_a_registered_runtime_without_its_hook_is_no_gpu(capsys):
    """nvidia-container-toolkit-base registers the runtime without the hook dockerd needs."""
    c = ctx(up_answers(CPU), info=NVIDIA_INFO)
    tasks.up(c)
    assert f"{CPU} up -d --build --wait" in ran(c)
    assert "not on dockerd's PATH" in capsys.readouterr().err


def test_up_with_nvidia_cdi_devices_reserves_the_gpu(tmp_path, monkeypatch):
    info = Result(
        json.dumps(
            {
                "ServerVersion": "29.2.0",
                "Runtimes": {"runc": {}},
                "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"],
                "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}],
            }
        )
    )
    (tmp_path / docker.CDI_HOOK).touch(mode=0o755)  # what serves it through CDI
    monkeypatch.setattr(docker, "DAEMON_PATH", (str(tmp_path),))
    c = ctx(up_answers(GPU), info=info)
    tasks.up(c)
    assert f"{GPU} up -d --build --wait" in ran(c)


def test_up_cpu_forces_the_override_on_a_gpu_host(gpu_host):
    c = ctx(up_answers(CPU), info=NVIDIA_INFO)
    tasks.up(c, cpu=True)
    assert f"{CPU} up -d --build --wait" in ran(c)


def test_up_gpu_forces_the_reservation_without_a_detected_runtime():
    c = ctx(up_answers(GPU))
    tasks.up(c, gpu=True)
    assert f"{GPU} up -d --build --wait" in ran(c)


def test_probes_are_quiet_and_a_failed_probe_is_an_answer():
    c = ctx(up_answers(CPU))
    tasks.up(c)
    probes = [
        call for call in c.run.call_args_list if call.args[0] != f"{CPU} up -d --build --wait"
    ]
    assert len(probes) == 6  # info, version, compose version, server list, two ports
    for call in probes:
        assert call.kwargs == {"hide": True, "warn": True, "in_stream": False}, call


def test_up_refuses_cpu_and_gpu_together():
    c = MockContext(run={})
    with pytest.raises(Exit, match="--cpu and --gpu"):
        tasks.up(c, cpu=True, gpu=True)
    assert ran(c) == []


def test_up_prints_the_port_compose_published(capsys):
    c = ctx(up_answers(CPU, jupyter_port="18888"))
    tasks.up(c)
    assert "http://127.0.0.1:18888/lab?token=0123abcd" in capsys.readouterr().out


def test_up_falls_back_to_the_port_variables_when_compose_cannot_say(capsys, monkeypatch):
    monkeypatch.setenv("LAB_JUPYTER_PORT", "9999")
    monkeypatch.setenv("LAB_TENSORBOARD_PORT", "7007")
    answers = up_answers(CPU)
    answers[f"{CPU} port lab 8888"] = Result(exited=1)
    answers[f"{CPU} port tensorboard 6006"] = Result(exited=1)
    tasks.up(ctx(answers))
    out = capsys.readouterr().out
    assert "http://127.0.0.1:9999/lab?token=" in out and "http://127.0.0.1:7007/" in out


def test_up_without_a_token_says_where_to_find_the_url(capsys):
    answers = up_answers(CPU)
    answers[f"{CPU} exec -T --user lab lab jupyter server list --json"] = Result("")
    tasks.up(ctx(answers))
    out = capsys.readouterr().out
    assert "token=" not in out and "invoke logs --service lab" in out


# --- missing prerequisites ---------------------------------------------------------------

STACK_TASKS = [
    pytest.param(tasks.up, id="up"),
    pytest.param(tasks.down, id="down"),
    pytest.param(tasks.build, id="build"),
    pytest.param(tasks.logs, id="logs"),
    pytest.param(tasks.shell, id="shell"),
]


@pytest.mark.parametrize("task", STACK_TASKS)
@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            {INFO: Result(exited=127, stderr="bash: docker: command not found")},
            "Docker is not installed: install Docker Engine",
        ),
        (
            {INFO: Result(exited=1, stderr="Cannot connect to the Docker daemon at unix:///x")},
            "The Docker daemon is not reachable: start it",
        ),
        (
            {
                INFO: Result(
                    exited=1,
                    stderr="permission denied while trying to connect to the Docker daemon socket",
                )
            },
            "usermod -aG docker",
        ),
        (
            {VERSION: Result(exited=125, stderr="docker: 'compose' is not a docker command.")},
            "Docker Compose v2 is not installed",
        ),
        ({VERSION: Result("Docker Compose version v2.0.1\n")}, "Docker Compose 2.0.1 is too old"),
    ],
    ids=["no-docker", "no-daemon", "no-permission", "no-compose", "old-compose"],
)
def test_stack_tasks_explain_a_missing_prerequisite_in_one_line(task, answers, message):
    c = ctx(answers)
    with pytest.raises(Exit) as raised:
        task(c)
    assert message in raised.value.message and "\n" not in raised.value.message
    assert raised.value.code == 1
    assert not any(command.startswith("docker compose -f") for command in ran(c))


@pytest.mark.parametrize(
    "task", [pytest.param(tasks.logs, id="logs"), pytest.param(tasks.shell, id="shell")]
)
def test_logs_and_shell_need_the_stack_up(task):
    c = ctx({f"{CPU} ps --all --format json": Result("")})
    with pytest.raises(Exit, match="The lab stack is not up: start it with `invoke up`"):
        task(c)


# --- down, build, logs, shell ------------------------------------------------------------


def test_down_keeps_the_runs_volume(capsys):
    c = ctx({f"{CPU} down": Result()})
    tasks.down(c)
    assert ran(c)[-1] == f"{CPU} down"
    assert "warning" not in capsys.readouterr().err


def test_down_volumes_warns_that_the_runs_go(capsys):
    c = ctx({f"{CPU} down --volumes": Result()})
    tasks.down(c, volumes=True)
    assert ran(c)[-1] == f"{CPU} down --volumes"
    assert "deletes the `runs` volume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("no_cache", "command"), [(False, f"{CPU} build"), (True, f"{CPU} build --no-cache")]
)
def test_build(no_cache, command):
    c = ctx({command: Result()})
    tasks.build(c, no_cache=no_cache)
    assert ran(c)[-1] == command


def test_logs_of_every_service():
    c = ctx({f"{CPU} ps --all --format json": UP, f"{CPU} logs": Result()})
    tasks.logs(c)
    assert ran(c)[-1] == f"{CPU} logs"


def test_logs_follow_one_service_even_when_it_stopped():
    # a crashed lab container is exactly when its logs matter
    c = ctx(
        {
            f"{CPU} ps --all --format json": ps(lab="exited", tensorboard="running"),
            f"{CPU} logs --follow lab": Result(),
        }
    )
    tasks.logs(c, service="lab", follow=True)
    assert ran(c)[-1] == f"{CPU} logs --follow lab"


def test_shell_opens_bash_in_the_lab_container_with_a_pty():
    c = ctx({f"{CPU} ps --all --format json": UP, f"{CPU} exec --user lab lab bash": Result()})
    tasks.shell(c)
    c.run.assert_called_with(f"{CPU} exec --user lab lab bash", pty=True)


def test_shell_refuses_a_stopped_lab_container():
    c = ctx({f"{CPU} ps --all --format json": ps(lab="exited", tensorboard="running")})
    with pytest.raises(Exit, match="not up"):
        tasks.shell(c)


# --- lab commands: container or local ----------------------------------------------------


def test_lesson_runs_in_the_container_when_the_stack_is_up(capsys):
    command = f"{CPU} exec -T --user lab lab python -m lab lesson 07"
    c = ctx({f"{CPU} ps --all --format json": UP, command: Result()})
    tasks.lesson(c, "07")
    c.run.assert_called_with(command, pty=False)
    assert "running in the lab container" in capsys.readouterr().err


def test_lesson_in_the_container_uses_the_compose_files_up_used(gpu_host):
    command = f"{GPU} exec -T --user lab lab python -m lab lesson 07"
    c = ctx({f"{GPU} ps --all --format json": UP, command: Result()}, info=NVIDIA_INFO)
    tasks.lesson(c, "07")
    assert ran(c)[-1] == command


def test_lesson_gets_a_tty_in_the_container_for_a_person_at_a_terminal(monkeypatch):
    monkeypatch.setattr(placement, "interactive", lambda: True)
    command = f"{CPU} exec --user lab lab python -m lab lesson all"
    c = ctx({f"{CPU} ps --all --format json": UP, command: Result()})
    tasks.lesson(c, "all")
    c.run.assert_called_with(command, pty=True)


@pytest.mark.parametrize(
    "answers",
    [
        {f"{CPU} ps --all --format json": Result("")},
        {f"{CPU} ps --all --format json": ps(lab="exited", tensorboard="running")},
        {INFO: Result(exited=127)},
        {VERSION: Result(exited=1)},
    ],
    ids=["no-containers", "lab-stopped", "no-docker", "no-compose"],
)
def test_lesson_runs_locally_when_the_stack_is_not_up(answers, capsys):
    command = f"{PY} -m lab lesson 07"
    c = ctx({**answers, command: Result()})
    tasks.lesson(c, "07")
    c.run.assert_called_with(command, pty=False)
    assert "running locally (the lab stack is not up)" in capsys.readouterr().err


def test_lesson_local_skips_the_container_without_asking_docker(capsys):
    c = MockContext(run={f"{PY} -m lab lesson 07": Result()})
    tasks.lesson(c, "07", local=True)
    assert ran(c) == [f"{PY} -m lab lesson 07"]
    assert "running locally (--local)" in capsys.readouterr().err


def test_lesson_list_options_and_passthrough_arguments():
    c = MockContext(
        run={
            f"{PY} -m lab lesson list": Result(),
            f"{PY} -m lab lesson 15 --device cpu --no-gpu-metrics --dry-run --epochs 1": Result(),
        }
    )
    tasks.lesson(c, "list", local=True)
    c._set(remainder="--dry-run --epochs 1")
    tasks.lesson(c, "15", device="cpu", no_gpu_metrics=True, local=True)
    assert ran(c) == [
        f"{PY} -m lab lesson list",
        f"{PY} -m lab lesson 15 --device cpu --no-gpu-metrics --dry-run --epochs 1",
    ]


def test_a_short_flag_means_the_same_option_in_every_task():
    from invoke import Collection

    meanings: dict[str, set[str]] = {}
    for name in Collection.from_module(tasks).task_names:
        # a copy: get_arguments() consumes the task's help texts
        for argument in copy.deepcopy(Collection.from_module(tasks)[name]).get_arguments():
            long, *short = sorted(argument.names, key=len, reverse=True)
            for flag in short:
                meanings.setdefault(flag, set()).add(long)
    assert meanings["j"] == {"json"} and meanings["d"] == {"data-dir"}
    assert {flag: longs for flag, longs in meanings.items() if len(longs) > 1} == {}


def test_dataset_help_lists_the_registrys_datasets():
    from lab.data.registry import load

    helps = {arg.name: arg.help for arg in copy.deepcopy(tasks.download_data).get_arguments()}
    assert helps["dataset"].startswith("|".join([*load().datasets, "all"]))


def without(monkeypatch, module: str) -> None:
    real_find_spec = tasks.importlib.util.find_spec
    monkeypatch.setattr(
        tasks.importlib.util,
        "find_spec",
        lambda name, *a: None if name == module else real_find_spec(name, *a),
    )


def test_a_local_lesson_without_torch_says_how_to_get_it(monkeypatch):
    without(monkeypatch, "torch")
    with pytest.raises(Exit, match=r"PyTorch is not installed on this host: start the lab"):
        tasks.lesson(MockContext(run={}), "07", local=True)
    # listing reads files only, and the container has its own torch
    c = ctx(
        {
            f"{CPU} ps --all --format json": UP,
            f"{CPU} exec -T --user lab lab python -m lab lesson 07": Result(),
            f"{PY} -m lab lesson list": Result(),
        }
    )
    tasks.lesson(c, "list", local=True)
    tasks.lesson(c, "07")
    assert ran(c)[-1] == f"{CPU} exec -T --user lab lab python -m lab lesson 07"


def test_download_data_passes_every_option_into_the_container(capsys):
    command = (
        f"{CPU} exec -T --user lab lab python -m lab data download "
        "--dataset mnist --jobs 8 --quiet --json"
    )
    c = ctx({f"{CPU} ps --all --format json": UP, command: Result()})
    tasks.download_data(c, dataset="mnist", jobs=8, quiet=True, json_=True)
    assert ran(c)[-1] == command
    out, err = capsys.readouterr()
    assert out == ""  # the JSON summary on stdout is the command's alone
    assert "running in the lab container" in err


def test_download_data_with_a_host_data_dir_runs_locally_without_asking_docker(tmp_path, capsys):
    command = f"{PY} -m lab data download --data-dir {tmp_path}"
    c = MockContext(run={command: Result()})
    tasks.download_data(c, data_dir=str(tmp_path))
    assert ran(c) == [command]
    assert "running locally (--data-dir is a host path)" in capsys.readouterr().err


def test_download_data_resolves_relative_host_paths_where_the_caller_stands(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    command = (
        f"{PY} -m lab data download --data-dir {tmp_path / 'd'} "
        f"--registry {tmp_path / 'mirror.toml'}"
    )
    c = MockContext(run={command: Result()})
    tasks.download_data(c, data_dir="d", registry="mirror.toml")
    assert ran(c) == [command]
    assert "--data-dir and --registry are host paths" in capsys.readouterr().err


def test_paths_inside_the_mounted_folders_go_into_the_container(monkeypatch):
    """./data, ./work and ./lab are the container's /workspace/data, work, lab: a registry
    or data folder there is passed relative to the checkout, which both places run from."""
    monkeypatch.chdir(ROOT / "lab")
    command = (
        f"{CPU} exec -T --user lab lab python -m lab data download --data-dir data/sub "
        "--registry work/mirror.toml"
    )
    c = ctx({f"{CPU} ps --all --format json": UP, command: Result()})
    tasks.download_data(c, data_dir=str(ROOT / "data" / "sub"), registry="../work/mirror.toml")
    assert ran(c)[-1] == command


def test_download_data_runs_locally_when_the_stack_is_not_up():
    command = f"{PY} -m lab data download"
    c = ctx({f"{CPU} ps --all --format json": Result(""), command: Result()})
    tasks.download_data(c)
    assert ran(c)[-1] == command


def test_generate_labels_in_the_container_and_with_a_host_data_dir(tmp_path):
    in_container = f"{CPU} exec -T --user lab lab python -m lab data labels --quiet --json"
    local = f"{PY} -m lab data labels --data-dir {tmp_path}"
    c = ctx({f"{CPU} ps --all --format json": UP, in_container: Result(), local: Result()})
    tasks.generate_labels(c, quiet=True, json_=True)
    tasks.generate_labels(c, data_dir=str(tmp_path))
    assert ran(c)[-1] == local and in_container in ran(c)


@pytest.mark.parametrize(
    ("kwargs", "args"),
    [
        ({}, "gpu"),
        ({"json_": True, "watch": True}, "gpu --json --watch"),
        ({"watch": "2", "id_": "0,2"}, "gpu --watch 2 --id 0,2"),
    ],
)
def test_gpu_in_the_container(kwargs, args):
    command = f"{CPU} exec -T --user lab lab python -m lab {args}"
    c = ctx({f"{CPU} ps --all --format json": UP, command: Result()})
    tasks.gpu(c, **kwargs)
    assert ran(c)[-1] == command


def test_gpu_locally_when_the_stack_is_not_up_or_asked(capsys):
    c = ctx({f"{CPU} ps --all --format json": Result(""), f"{PY} -m lab gpu --json": Result()})
    tasks.gpu(c, json_=True)
    tasks.gpu(c, json_=True, local=True)
    assert ran(c).count(f"{PY} -m lab gpu --json") == 2
    err = capsys.readouterr().err
    assert "(the lab stack is not up)" in err and "(--local)" in err


def test_doctor_always_checks_this_host():
    # no docker answers: doctor must not look for the container at all
    c = MockContext(run={f"{PY} -m lab doctor": Result(), f"{PY} -m lab doctor --json": Result()})
    tasks.doctor(c)
    tasks.doctor(c, json_=True)
    assert ran(c) == [f"{PY} -m lab doctor", f"{PY} -m lab doctor --json"]


# --- test and lint -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "remainder", "args"),
    [
        ({}, "", ""),
        ({"k": "lesson and not slow"}, "", " -k 'lesson and not slow'"),
        ({"e2e_only": True}, "", " -m e2e"),
        ({"marker": "not e2e"}, "-x tests/test_cli.py", " -m 'not e2e' -x tests/test_cli.py"),
    ],
)
def test_test_runs_pytest(kwargs, remainder, args):
    command = f"{PY} -m pytest{args}"
    c = MockContext(run={command: Result()})
    c._set(remainder=remainder)
    tasks.test(c, **kwargs)
    assert ran(c) == [command]


def test_test_refuses_two_marker_selections():
    with pytest.raises(Exit, match="pass one of them"):
        tasks.test(MockContext(run={}), marker="browser", e2e_only=True)


def test_test_without_pytest_says_how_to_install_it(monkeypatch):
    without(monkeypatch, "pytest")
    with pytest.raises(Exit, match=r"pytest is not installed: pip install -e '\.\[dev\]'"):
        tasks.test(MockContext(run={}))


def test_lint_passes_ruffs_verdict_on():
    tasks.lint(MockContext(run={"ruff check .": Result()}))
    with pytest.raises(Exit) as raised:
        tasks.lint(MockContext(run={"ruff check .": Result(exited=1)}))
    assert raised.value.code == 1 and raised.value.message is None


def test_lint_without_ruff_says_how_to_install_it():
    with pytest.raises(Exit, match="ruff is not installed"):
        tasks.lint(MockContext(run={"ruff check .": Result(exited=127)}))


# --- for real, in a subprocess -----------------------------------------------------------

TASK_NAMES = [
    "build",
    "check",
    "class-grade",
    "class-progress",
    "doctor",
    "down",
    "download-data",
    "exercise",
    "generate-labels",
    "gpu",
    "hint",
    "hub-admin",
    "hub-down",
    "hub-logs",
    "hub-up",
    "lesson",
    "lint",
    "logs",
    "progress",
    "shell",
    "test",
    "up",
]


def invoke(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "invoke", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def test_invoke_list_lists_every_task():
    done = invoke("--list")
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"^  (\S+)", done.stdout, flags=re.MULTILINE)  # not the wrapped lines
    assert listed == TASK_NAMES


def test_importing_tasks_does_not_import_torch():
    code = "import tasks, sys; assert 'torch' not in sys.modules, 'tasks imported torch'"
    done = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_lab_command_runs_from_the_repository_root_wherever_invoke_starts():
    done = invoke("lesson", "list", "--local", cwd=ROOT / "tests")
    assert done.returncode == 0, done.stderr
    assert "running locally (--local)" in done.stderr
    assert "01  manual_gradient" in done.stdout


def test_without_docker_on_path_up_says_so_in_one_line(tmp_path):
    (tmp_path / "bash").symlink_to(shutil.which("bash"))  # invoke's shell, and nothing else
    env = {**os.environ, "PATH": str(tmp_path)}  # so the real shell finds no docker
    done = invoke("up", env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == docker.NOT_INSTALLED


def test_compose_command_quotes_its_arguments():
    argv = compose.Stack(("compose.yaml",)).command("exec", "-T", "lab", "python", "-c", "print(1)")
    assert argv == [
        "docker",
        "compose",
        "-f",
        "compose.yaml",
        "exec",
        "-T",
        "lab",
        "python",
        "-c",
        "print(1)",
    ]
    assert command_line(argv) == "docker compose -f compose.yaml exec -T lab python -c 'print(1)'"


# --- exercises -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "argv"),
    [
        (lambda c: tasks.exercise(c, "07"), "exercise 07"),
        (lambda c: tasks.exercise(c, "list"), "exercise --list"),
        (lambda c: tasks.exercise(c, "07", solution=True), "exercise 07 --solution"),
        (lambda c: tasks.check(c, "07"), "check 07"),
        (lambda c: tasks.check(c, "07", watch=True), "check 07 --watch"),
        (lambda c: tasks.hint(c, "07.1"), "hint 07.1"),
        (lambda c: tasks.progress(c), "progress"),
    ],
)
def test_exercise_tasks_run_in_the_container_when_the_stack_is_up(call, argv, capsys):
    command = f"{CPU} exec -T --user lab lab python -m lab {argv}"
    c = ctx({f"{CPU} ps --all --format json": UP, command: Result()})
    call(c)
    c.run.assert_called_with(command, pty=False)
    assert "running in the lab container" in capsys.readouterr().err


def test_exercise_tasks_run_locally_with_local_or_no_stack(capsys):
    c = MockContext(
        run={
            f"{PY} -m lab exercise 07": Result(),
            f"{PY} -m lab hint 07.1": Result(),
            f"{PY} -m lab progress": Result(),
        }
    )
    tasks.exercise(c, "07", local=True)
    tasks.hint(c, "07.1", local=True)
    tasks.progress(c, local=True)
    assert ran(c) == [f"{PY} -m lab exercise 07", f"{PY} -m lab hint 07.1", f"{PY} -m lab progress"]
    assert capsys.readouterr().err.count("running locally (--local)") == 3


def test_check_needs_torch_when_it_runs_locally(monkeypatch):
    monkeypatch.setattr(tasks, "_installed", lambda module: module != "torch")
    with pytest.raises(Exit, match="PyTorch is not installed on this host"):
        tasks.check(MockContext(run={}), "07", local=True)


# --- hub-up / hub-down / hub-logs (the classroom hub) --------------------------------------

HUB = "docker compose -f compose.hub.yaml"
LAB_IMAGE_PROBE = "docker image inspect --format '{{.Id}}' autograd-lab/lab:latest"


@pytest.fixture
def hub_host(tmp_path, monkeypatch):
    """A host whose Docker socket belongs to group 987, with no hub settings in the env."""
    from lab.host import hub

    for name in ("DOCKER_GID", "LAB_IMAGE", "HUB_PORT", "HUB_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    monkeypatch.setattr(hub, "SOCKET", tmp_path / "docker.sock")
    (tmp_path / "docker.sock").touch()
    if os.geteuid() == 0:
        os.chown(tmp_path / "docker.sock", -1, 987)
    return str(os.stat(tmp_path / "docker.sock").st_gid)


def hub_up_answers(gid: str, build: bool = False) -> dict:
    return {
        LAB_IMAGE_PROBE: Result("sha256:0f2c\n"),
        f"{HUB} up -d --wait{' --build' if build else ''}": Result(),
        f"{HUB} port hub 8000": Result("127.0.0.1:8123\n"),
    }


def hub_up_env(c: MockContext) -> str:
    """The DOCKER_GID `hub-up` gave compose (in its environment: no `VAR=x cmd` on cmd.exe)."""
    (call,) = [call for call in c.run.call_args_list if " up " in call.args[0]]
    return call.kwargs["env"]["DOCKER_GID"]


@pytest.mark.parametrize("build", [False, True])
def test_hub_up_runs_the_hub_in_the_docker_socket_group_and_prints_its_url(hub_host, capsys, build):
    c = ctx(hub_up_answers(hub_host, build))
    tasks.hub_up(c, build=build)
    assert f"{HUB} up -d --wait{' --build' if build else ''}" in ran(c)
    assert hub_up_env(c) == hub_host
    assert "JupyterHub: http://127.0.0.1:8123/hub/" in capsys.readouterr().out
    assert (tasks.ROOT / "data").is_dir()  # before compose could create it as root


def test_hub_up_takes_docker_gid_from_the_environment(hub_host, monkeypatch):
    monkeypatch.setenv("DOCKER_GID", "4242")
    c = ctx(hub_up_answers("4242"))
    tasks.hub_up(c)
    assert hub_up_env(c) == "4242"


def test_hub_up_without_the_lab_image_says_to_build_it(hub_host):
    c = ctx({LAB_IMAGE_PROBE: Result(exited=1, stderr="No such image")})
    with pytest.raises(Exit) as caught:
        tasks.hub_up(c)
    message = str(caught.value.message)
    assert "autograd-lab/lab:latest is not built" in message and "invoke build" in message
    assert "\n" not in message and not any(" up " in command for command in ran(c))


def test_hub_up_checks_the_lab_image_the_hub_will_start(hub_host, monkeypatch):
    monkeypatch.setenv("LAB_IMAGE", "registry.example/lab:2")
    probe = "docker image inspect --format '{{.Id}}' registry.example/lab:2"
    c = ctx({probe: Result(exited=1)})
    with pytest.raises(Exit, match="registry.example/lab:2 is not built"):
        tasks.hub_up(c)


def test_hub_up_without_a_docker_socket_explains(hub_host):
    from lab.host import hub

    hub.SOCKET.unlink()
    c = ctx({LAB_IMAGE_PROBE: Result("sha256:0f2c\n")})
    with pytest.raises(Exit, match="no Docker socket at /var/run/docker.sock"):
        tasks.hub_up(c)


def test_hub_up_without_docker_says_so(hub_host):
    c = ctx({}, info=Result(exited=docker.COMMAND_NOT_FOUND[0]))
    with pytest.raises(Exit, match="Docker is not installed"):
        tasks.hub_up(c)


def test_hub_down_leaves_learner_servers_running_by_default(hub_host):
    c = ctx({f"{HUB} down": Result()})
    tasks.hub_down(c)
    assert ran(c) == [f"{HUB} down"]


def test_hub_down_servers_removes_this_hub_learner_containers_first(hub_host):
    listing = "docker ps -aq --filter label=org.autograd-lab.hub=autograd-hub"
    c = ctx({listing: Result("c1\nc2\n"), "docker rm -f c1 c2": Result(), f"{HUB} down": Result()})
    tasks.hub_down(c, servers=True)
    assert ran(c) == [listing, "docker rm -f c1 c2", f"{HUB} down"]


@pytest.mark.parametrize("exited", [0, 2])
def test_hub_admin_sets_an_admins_password_in_the_running_hub(hub_host, exited):
    command = f"{HUB} exec hub python -m classroom_auth admin 'ann o'"
    c = ctx({command: Result(exited=exited)})
    if exited:
        with pytest.raises(Exit):  # the hub said why (not in HUB_ADMINS, a weak password)
            tasks.hub_admin(c, "ann o")
    else:
        tasks.hub_admin(c, "ann o")
    c.run.assert_called_with(command, pty=True, warn=True)


@pytest.mark.parametrize(
    "follow, command", [(False, f"{HUB} logs hub"), (True, f"{HUB} logs --follow hub")]
)
def test_hub_logs(hub_host, follow, command):
    c = ctx({command: Result()})
    tasks.hub_logs(c, follow=follow)
    assert ran(c) == [command]


def test_nothing_says_invoke_up_passes_lab_uid(tmp_path, monkeypatch):
    """compose.yaml said `invoke up` passes LAB_UID; it never did, and must not: under a
    rootless engine the host's uid is another user inside. The entrypoint adopts the
    checkout's owner; LAB_UID is the learner's own override, in .env."""
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    c = ctx(up_answers(CPU))
    tasks.up(c)
    (up,) = [call for call in c.run.call_args_list if " up -d " in call.args[0]]
    assert "LAB_UID" not in (up.kwargs.get("env") or {}) and "LAB_UID" not in up.args[0]
    for name in ("compose.yaml", "docker/lab/lab-entrypoint", ".env.example", "README.md"):
        text = (ROOT / name).read_text()
        assert not re.search(r"`invoke up` (passes|sets) (yours|your uid|LAB_UID)", text), name


@pytest.mark.parametrize("exited", [0, 1])
def test_class_grade_runs_the_grader_in_the_hub_for_the_named_learners(hub_host, exited):
    command = f"{HUB} exec -T hub python -m class_grade --timeout=600 alice 'ann o'"
    c = ctx({command: Result(exited=exited)})
    if exited:  # a learner could not be graded: the grader said who and why
        with pytest.raises(Exit):
            tasks.class_grade(c, name=["alice", "ann o"], timeout=600)
    else:
        tasks.class_grade(c, name=["alice", "ann o"], timeout=600)
    assert ran(c) == [command]


def test_class_progress_writes_the_class_table_to_a_csv_file_whole(hub_host, tmp_path, capsys):
    table = "learner,exercise,graded\nalice,01.1,passed\nalice,01.2,\nbob,01.1,failed\n"
    command = f"{HUB} exec -T hub python -m lab.classroom.service csv"
    target = tmp_path / "out" / "class.csv"
    target.parent.mkdir()
    tasks.class_progress(ctx({command: Result(table)}), csv=str(target))
    assert target.read_text() == table
    assert capsys.readouterr().out == f"class table: {target} (2 learners)\n"
    tasks.class_progress(ctx({command: Result(table)}))
    assert capsys.readouterr().out == table
    # the hub not running: its error, no file written
    with pytest.raises(Exit):
        tasks.class_progress(ctx({command: Result("", exited=1)}), csv=str(tmp_path / "x.csv"))
    assert not (tmp_path / "x.csv").exists()
