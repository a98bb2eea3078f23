"""Host-side tasks for Autograd Lab: `invoke --list`.

Each task builds one command, as an argument list, and runs it from the repository root
(lab.host renders it for the shell invoke uses: bash, or cmd.exe on Windows). Docker and
Compose detection lives in lab/host; nothing here imports torch, so `invoke --list` stays
instant.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import invoke
from invoke import Exit

import lab.host
from lab.data.registry import dataset_choices
from lab.files import atomic_write
from lab.gpu.cli import EXIT_NO_GPU
from lab.gpu.nvml import MACOS
from lab.host import HostProblem, compose, docker, jupyter, placement, run
from lab.host import hub as classroom
from lab.host.docker import COMMAND_NOT_FOUND, engine_info

ROOT = Path(__file__).resolve().parent

VOLUMES_WARNING = (
    "warning: --volumes deletes the `runs` volume: every TensorBoard run logged in the lab is lost"
)
DEV_INSTALL = "pip install -e '.[dev]'"
NO_LOCAL_TORCH = (
    "PyTorch is not installed on this host: start the lab (`invoke up`) to run lessons there, "
    "or `pip install -e '.[lab]'`"
)


# One meaning per short flag across every task. invoke would pick each task's first free
# letters itself, and they drifted apart (-j was --jobs in one task, --json in the others;
# -d meant --device, --dataset and --data-dir). Options not listed here have no short flag.
SHORT_FLAGS = {
    "json": "j",
    "quiet": "q",
    "local": "l",
    "data-dir": "d",
    "registry": "r",
    "cpu": "c",
    "gpu": "g",
    "volumes": "v",
    "no-cache": "n",
    "service": "s",
    "follow": "f",
    "watch": "w",
    "id": "i",
    "marker": "m",
    "e2e-only": "e",
}


class LabTask(invoke.Task):
    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(opts["names"][0])
        if short and not opts["positional"]:
            opts["names"].append(short)
        return opts


def task(*args, **kwargs):
    """invoke's @task, with the short flags of SHORT_FLAGS instead of automatic ones."""
    return invoke.task(*args, klass=LabTask, auto_shortflags=False, **kwargs)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None  # finds it without importing it


def _say(message: str) -> None:
    # stderr, so `--json` output on stdout stays machine-readable
    print(message, file=sys.stderr, flush=True)


def _at_root():
    """Run from the repository root. The process changes directory itself: invoke's `cd`
    would put the path into the shell line, where a space (or cmd.exe) breaks it."""
    return contextlib.chdir(ROOT)


def _split(remainder: str) -> list[str]:
    """What came after `--` (invoke joins it with spaces): Windows paths keep backslashes."""
    return remainder.split() if lab.host.windows() else shlex.split(remainder)


def _execute(c, argv: list[str], terminal: bool = False) -> None:
    """Run ``argv``; ``terminal``: it needs the terminal (a TTY in the container). invoke
    gives it a pty on POSIX; on Windows invoke can only pipe, so the command gets this
    console itself (docker then allocates the TTY and passes Ctrl-C on)."""
    if terminal and not placement.pty_available():
        code = subprocess.call(argv)
        if code:
            raise Exit(code=code)
        return
    run(c, argv, pty=terminal)


def _stack(c, mode: str = "auto") -> compose.Stack:
    try:
        return compose.stack(c, mode)
    except HostProblem as problem:
        raise Exit(str(problem)) from None


def _host_path(value: str) -> str:
    # Relative to where the caller stands, not to the repository root the command runs in.
    return os.path.abspath(os.path.expanduser(value))


# compose.yaml bind-mounts these checkout folders at /workspace/<name>, the container's
# working directory; lab commands on this host run from ROOT. A path inside them, given
# relative to ROOT, therefore names the same file in both places.
MOUNTED = ("lab", "work", "data")


def _path_option(value: str) -> tuple[str, str]:
    """``(argument, host_only)`` for a path option: the argument to pass, and the value
    again when it is a host path the container cannot see ('' when it can, or is unset)."""
    if not value:
        return "", ""
    path = Path(_host_path(value))
    real = Path(os.path.realpath(path))
    for folder in MOUNTED:
        if real.is_relative_to(ROOT / folder):
            return real.relative_to(ROOT).as_posix(), ""
    return str(path), value


def _local_reason(local: bool, **host_paths: str) -> str | None:
    """Why a lab command must run on this host; None lets it go to the container.
    A host path means nothing inside the container, which sees only ./lab, ./work, ./data."""
    if local:
        return "--local"
    given = [f"--{name.replace('_', '-')}" for name, value in host_paths.items() if value]
    if not given:
        return None
    return f"{' and '.join(given)} {'is a host path' if len(given) == 1 else 'are host paths'}"


def _run_lab(c, argv: list[str], local_reason: str | None, needs_torch: bool = False) -> None:
    with _at_root():
        where = placement.place(c, argv, local_reason)
        _say(where.message)
        if needs_torch and not where.in_container and not _installed("torch"):
            raise Exit(NO_LOCAL_TORCH)
        _execute(c, where.command, terminal=where.pty)


# --- the stack ---------------------------------------------------------------------------


@task(
    help={
        "cpu": f"use the CPU override ({compose.CPU_OVERRIDE}) even with the NVIDIA runtime",
        "gpu": "reserve GPUs even if no NVIDIA runtime or CDI device was detected",
    }
)
def up(c, cpu=False, gpu=False):
    """Start JupyterLab + TensorBoard (GPU when Docker has one) and print their URLs.

    Builds the images if needed and waits until both are healthy.
    """
    if cpu and gpu:
        raise Exit("--cpu and --gpu contradict each other: pass at most one of them")
    with _at_root():
        lab_stack = _stack(c, "cpu" if cpu else "gpu" if gpu else "auto")
        remote = docker.remote_problem(lab_stack.engine) if lab_stack.engine else None
        if remote:
            raise Exit(remote)
        _say(lab_stack.reason)
        # ours before compose's bind mounts, or Docker creates them root-owned (the lab's
        # entrypoint would then have to hand them over)
        for folder in ("data", "work"):
            (ROOT / folder).mkdir(exist_ok=True)
        build_args = {"env": lab_stack.env} if lab_stack.env else {}
        run(c, lab_stack.command("up", "-d", "--build", "--wait"), **build_args)
        url = jupyter.lab_url(c, lab_stack)
        tensorboard = compose.published_address(c, lab_stack, *compose.TENSORBOARD)
    print(f"JupyterLab:  {url or 'no token yet: `invoke logs --service lab` prints the URL'}")
    print(f"TensorBoard: http://{tensorboard}/")


@task(help={"volumes": "also delete the `runs` volume: every TensorBoard run logged in the lab"})
def down(c, volumes=False):
    """Stop the stack (the runs volume stays unless --volumes)."""
    with _at_root():
        lab_stack = _stack(c)
        if volumes:
            _say(VOLUMES_WARNING)
        run(c, lab_stack.command("down", *(["--volumes"] if volumes else [])))


@task(help={"no_cache": "rebuild every layer (e.g. to pick up new CA certificates)"})
def build(c, no_cache=False):
    """Build the lab and TensorBoard images."""
    with _at_root():
        lab_stack = _stack(c)
        build_args = {"env": lab_stack.env} if lab_stack.env else {}
        run(c, lab_stack.command("build", *(["--no-cache"] if no_cache else [])), **build_args)


@task(help={"service": "only this service (lab or tensorboard)", "follow": "keep streaming"})
def logs(c, service="", follow=False):
    """Show the stack's logs (the lab's hold the Jupyter URL with its token)."""
    with _at_root():
        lab_stack = _stack(c)
        if not compose.service_states(c, lab_stack):  # stopped containers still have logs
            raise Exit(compose.NOT_UP)
        args = ["logs", *(["--follow"] if follow else []), *([service] if service else [])]
        run(c, lab_stack.command(*args))


@task
def shell(c):
    """Open bash in the running lab container."""
    with _at_root():
        lab_stack = _stack(c)
        if compose.service_states(c, lab_stack).get(compose.LAB) != "running":
            raise Exit(compose.NOT_UP)
        bash = lab_stack.command("exec", *compose.EXEC_AS_LAB_USER, compose.LAB, "bash")
        _execute(c, bash, terminal=True)


# --- lab commands: in the container when the stack is up, on this host otherwise ----------


@task(
    positional=["name"],
    help={
        "name": "a number (07), a name, `all`, or `list` to list the lessons",
        "device": "auto, cpu or cuda (default auto: cuda when available)",
        "no_gpu_metrics": "do not sample GPU metrics into the lesson's TensorBoard run",
        "local": "run on this host even when the lab stack is up",
    },
)
def lesson(c, name, device="", no_gpu_metrics=False, local=False):
    """Run a lesson: 07, a name, all, or list (`-- ARGS` go to the lesson)."""
    argv = ["lesson", name]  # `list` is a name like any other: one spelling everywhere
    if device:
        argv += ["--device", device]
    if no_gpu_metrics:
        argv.append("--no-gpu-metrics")
    argv += _split(c.remainder)  # lesson options such as --dry-run
    _run_lab(c, argv, _local_reason(local), needs_torch=name != "list")


@task(
    help={
        "dataset": f"{dataset_choices()} (default all)",
        "data_dir": "download here instead of ./data (outside lab/, work/, data/: runs locally)",
        "registry": "a registry TOML naming other mirrors (outside lab/, work/, data/: locally)",
        "jobs": "parallel connections",
        "quiet": "print nothing but errors",
        "json": "print a JSON summary for scripts",
        "local": "run on this host even when the lab stack is up",
    }
)
def download_data(
    c, dataset="", data_dir="", registry="", jobs=0, quiet=False, json_=False, local=False
):
    """Download and verify MNIST, CIFAR-10 and hymenoptera into ./data."""
    argv = ["data", "download"]
    if dataset:
        argv += ["--dataset", dataset]
    data_dir, data_dir_host = _path_option(data_dir)
    if data_dir:
        argv += ["--data-dir", data_dir]
    registry, registry_host = _path_option(registry)
    if registry:
        argv += ["--registry", registry]
    if jobs:
        argv += ["--jobs", str(jobs)]
    if quiet:
        argv.append("--quiet")
    if json_:
        argv.append("--json")
    _run_lab(c, argv, _local_reason(local, data_dir=data_dir_host, registry=registry_host))


@task(
    help={
        "data_dir": "the folder holding hymenoptera_data (outside lab/, work/, data/: locally)",
        "quiet": "print nothing but errors",
        "json": "print a JSON summary for scripts",
        "local": "run on this host even when the lab stack is up",
    }
)
def generate_labels(c, data_dir="", quiet=False, json_=False, local=False):
    """Make the image + label folders from hymenoptera_data."""
    argv = ["data", "labels"]
    data_dir, data_dir_host = _path_option(data_dir)
    if data_dir:
        argv += ["--data-dir", data_dir]
    if quiet:
        argv.append("--quiet")
    if json_:
        argv.append("--json")
    _run_lab(c, argv, _local_reason(local, data_dir=data_dir_host))


@task(
    optional=["watch"],
    help={
        "json": "print the report as JSON (stable schema)",
        "watch": "refresh every SECONDS until Ctrl-C",
        "id": "only these GPUs: an index or a comma list (0,2)",
        "local": "run on this host even when the lab stack is up",
    },
)
def gpu(c, json_=False, watch=None, id_="", local=False):
    """GPU usage via NVML: utilization, memory, power, processes."""
    if docker.Host().macos:  # neither this Mac nor Docker's VM on it has an NVIDIA GPU
        raise Exit(f"lab gpu: {MACOS}", code=EXIT_NO_GPU)
    argv = ["gpu"]
    if json_:
        argv.append("--json")
    if watch is True:
        argv.append("--watch")
    elif watch:
        argv += ["--watch", str(watch)]
    if id_:
        argv += ["--id", id_]
    _run_lab(c, argv, _local_reason(local))


# --- exercises: your copies live in ./work (bind-mounted), never overwritten ---------------


@task(
    positional=["lesson"],
    help={
        "lesson": "a lesson number (07), or `list` to list the exercises",
        "solution": "print the reference solutions instead of making your copy",
        "local": "run on this host even when the lab stack is up",
    },
)
def exercise(c, lesson, solution=False, local=False):
    """Copy a lesson's exercises into work/NN_name/ (never over your edits)."""
    argv = ["exercise", "--list"] if lesson == "list" else ["exercise", lesson]
    if solution:
        argv.append("--solution")
    _run_lab(c, argv, _local_reason(local))


@task(
    positional=["lesson"],
    help={
        "lesson": "a lesson number (07): checks every exercise in your copy; 07.1: just that one",
        "watch": "check again on every save, until Ctrl-C",
        "local": "run on this host even when the lab stack is up",
    },
)
def check(c, lesson, watch=False, local=False):
    """Check your exercises: what is right, or the first thing wrong and for which input."""
    argv = ["check", lesson, *(["--watch"] if watch else [])]
    _run_lab(c, argv, _local_reason(local), needs_torch=True)


@task(
    positional=["exercise"],
    help={"exercise": "LESSON.N, e.g. 07.1", "local": "run on this host even when the stack is up"},
)
def hint(c, exercise, local=False):
    """The next hint for an exercise (each call reveals one more)."""
    _run_lab(c, ["hint", exercise], _local_reason(local))


@task(help={"local": "run on this host even when the lab stack is up"})
def progress(c, local=False):
    """Lessons run and exercises passed (first-pass date, attempts)."""
    _run_lab(c, ["progress"], _local_reason(local))


@task(help={"json": "print the checks as JSON"})
def doctor(c, json_=False):
    """Check Docker, Compose, Docker's GPU access, the driver, ports, disk (on this host)."""
    with _at_root():  # always on the host: the host is what it checks
        run(c, placement.local_command(["doctor", *(["--json"] if json_ else [])]))


# --- development ---------------------------------------------------------------------------


@task(
    help={
        "k": "only tests matching this pytest -k expression",
        "marker": "only tests matching this pytest -m expression (e.g. 'not e2e')",
        "e2e_only": "only the end-to-end tests (they build and run the Docker stack)",
    }
)
def test(c, k="", marker="", e2e_only=False):
    """Run the tests (`-- ARGS` go to pytest)."""
    if e2e_only and marker:
        raise Exit("--e2e-only and --marker both select tests: pass one of them")
    if not _installed("pytest"):
        raise Exit(f"pytest is not installed: {DEV_INSTALL}")
    argv = [sys.executable, "-m", "pytest"]
    if k:
        argv += ["-k", k]
    if e2e_only or marker:
        argv += ["-m", "e2e" if e2e_only else marker]
    argv += _split(c.remainder)
    with _at_root():
        run(c, argv)


@task
def lint(c):
    """ruff check the whole repository."""
    with _at_root():
        result = run(c, ["ruff", "check", "."], warn=True)
    if result.exited in COMMAND_NOT_FOUND:
        raise Exit(f"ruff is not installed: {DEV_INSTALL}")
    if result.exited:
        raise Exit(code=result.exited)


# --- the classroom hub (compose.hub.yaml): one lab container per learner -------------------


@task(help={"build": "rebuild the hub image first (the lab image comes from `invoke build`)"})
def hub_up(c, build=False):
    """Start the classroom hub on 127.0.0.1 (JupyterHub, a lab container per learner)."""
    with _at_root():
        try:
            engine_info(c)
            classroom.check_lab_image(c, classroom.lab_image())
            gid = classroom.socket_gid()
        except HostProblem as problem:
            raise Exit(str(problem)) from None
        # ours before compose's bind mount, or Docker creates it root-owned
        (ROOT / "data").mkdir(exist_ok=True)
        up_args = ("up", "-d", "--wait", *(["--build"] if build else []))
        run(c, classroom.command(*up_args), env={"DOCKER_GID": gid})
        address = classroom.published_address(c)
    print(f"JupyterHub: http://{address}/hub/ (first time: `invoke hub-admin NAME` for an admin)")


@task(help={"name": "an admin's name, listed in HUB_ADMINS"})
def hub_admin(c, name):
    """Give a hub admin (a name in HUB_ADMINS) its password; asks for it. The hub must run."""
    with c.cd(ROOT):
        argv = classroom.command("exec", "hub", "python", "-m", "classroom_auth", "admin", name)
        result = run(c, argv, pty=True, warn=True)
    if result.exited:
        raise Exit(code=result.exited)


@task(help={"servers": "also stop every learner's server (their files stay in their volumes)"})
def hub_down(c, servers=False):
    """Stop the classroom hub; learners' servers keep running unless --servers."""
    with _at_root():
        if servers:
            running = classroom.learner_containers(c)
            if running:
                run(c, ["docker", "rm", "-f", *running])
        run(c, classroom.command("down"))


@task(
    help={
        "name": "only this learner (repeatable; default: the whole class)",
        "timeout": "seconds per learner before their grading is stopped (default 1800)",
    },
    iterable=["name"],
)
def class_grade(c, name=None, timeout=1800):
    """Grade every learner's exercises in a fresh, network-less container per learner (the
    hub must run); the teacher's view shows the verdicts beside what learners reported."""
    argv = ["exec", "-T", "hub", "python", "-m", "class_grade", f"--timeout={timeout}"]
    with _at_root():
        result = run(c, classroom.command(*argv, *(name or [])), warn=True)
    if result.exited:
        raise Exit(code=result.exited)


@task(help={"csv": "write the class table to this CSV file instead of printing it"})
def class_progress(c, csv=""):
    """The class table (per learner and exercise: reported, graded), as CSV; the hub must run.
    In a browser: /services/course/ on the hub, for its admins."""
    argv = ["exec", "-T", "hub", "python", "-m", "lab.classroom.service", "csv"]
    with _at_root():
        result = run(c, classroom.command(*argv), hide="out", warn=True)
    if result.exited:
        raise Exit(code=result.exited)
    if not csv:
        print(result.stdout, end="")
        return
    target = Path(_host_path(csv))
    atomic_write(target, result.stdout.encode("utf-8"))
    learners = {line.split(",", 1)[0] for line in result.stdout.splitlines()[1:]}
    print(f"class table: {target} ({len(learners)} learners)")


@task(help={"follow": "keep streaming"})
def hub_logs(c, follow=False):
    """Show the hub's logs (sign-ups, spawns, the culler)."""
    with _at_root():
        run(c, classroom.command("logs", *(["--follow"] if follow else []), "hub"))
