"""Windows, simulated on Linux: the host side runs without POSIX-only modules, and every
command a task runs reaches its program with exactly the arguments it meant.

1. A cmd.exe-style splitter, written from Microsoft's documentation (``cmd /?`` on /C's quote
   handling; "Parsing C command-line arguments" / CommandLineToArgvW), splits the exact lines
   the tasks give invoke when on Windows (a checkout path and an interpreter path with
   spaces): each must come back as the argument list the task built.
2. A Python whose import hook refuses fcntl, pwd, grp, termios, tty, pty and resource to the
   lab's own modules, without os.pread/os.pwrite/os.getuid & co, and with sys.platform set to
   "win32" once the standard library and third-party packages have picked their platform
   (they handle Windows themselves; os.name stays "posix" because pathlib and os.path chose
   their flavour from it): the host modules import, `invoke --list`, `python -m lab doctor
   --json` and `lab data download` (from the local test server) run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Context
from support.dl_server import FileServer
from support.dl_support import SYNTHETIC, write_registry

import tasks
from lab import host
from lab.host import HostProblem, docker, placement

ROOT = Path(__file__).resolve().parents[2]


# --- 1. cmd.exe /c, then the program's C runtime ------------------------------------------
CMD_METACHARACTERS = "&|<>^"


def cmd_split(line: str) -> list[str]:
    """What a program gets when invoke on Windows runs ``line``: Popen(shell=True) runs
    ``cmd.exe /c "line"``; with more than two quotes (or none but the outer ones around
    something that is not one program's name) cmd.exe strips the first and the last quote
    and runs the rest. It expands %VARIABLES% anywhere and acts on & | < > ^ outside quotes:
    a line that would let it is refused here. What remains is the command line the C
    runtime splits."""
    if "%" in line:
        raise ValueError(f"cmd.exe would expand % in {line!r}")
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char in CMD_METACHARACTERS and not quoted:
            raise ValueError(f"cmd.exe would act on {char!r} in {line!r}")
    return command_line_to_argv(line)


def command_line_to_argv(line: str) -> list[str]:
    """CommandLineToArgvW / the Microsoft C runtime: argv[0] ends at the first whitespace
    outside quotes, quotes removed, no escapes; then arguments split on whitespace outside
    quotes; 2n backslashes before a quote are n backslashes and the quote delimits, 2n+1
    are n backslashes and a literal quote; other backslashes are literal; inside quotes,
    "" is a literal quote."""
    i, n = 0, len(line)
    first, quoted = [], False
    while i < n and (quoted or line[i] not in " \t"):
        if line[i] == '"':
            quoted = not quoted
        else:
            first.append(line[i])
        i += 1
    argv = ["".join(first)]
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return argv
        current, quoted = [], False
        while i < n and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                start = i
                while i < n and line[i] == "\\":
                    i += 1
                count = i - start
                if i < n and line[i] == '"':
                    current.append("\\" * (count // 2))
                    if count % 2:
                        current.append('"')
                        i += 1
                else:
                    current.append("\\" * count)
            elif line[i] == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    current.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                current.append(line[i])
                i += 1
        argv.append("".join(current))


@pytest.mark.parametrize(
    ("line", "argv"),
    [  # Microsoft's "Parsing C command-line arguments" table (argv[1..3] of each example)
        ('p "a b c" d e', ["p", "a b c", "d", "e"]),
        ('p "ab\\"c" "\\\\" d', ["p", 'ab"c', "\\", "d"]),
        ('p a\\\\\\b d"e f"g h', ["p", "a\\\\\\b", "de fg", "h"]),
        ('p a\\\\\\"b c d', ["p", 'a\\"b', "c", "d"]),
        ('p a\\\\\\\\"b c" d e', ["p", "a\\\\b c", "d", "e"]),
        ('p a"b"" c d', ["p", 'ab" c d']),
        ('"C:\\Program Files\\x.exe" -m lab', ["C:\\Program Files\\x.exe", "-m", "lab"]),
    ],
)
def test_the_splitter_follows_microsofts_examples(line, argv):
    assert command_line_to_argv(line) == argv


@pytest.mark.parametrize(
    "line",
    ["docker info --format '{{json .}}' & calc", "a | b", "echo %PATH%", "x > y", "a ^& b"],
)
def test_the_splitter_refuses_what_cmd_exe_would_act_on(line):
    with pytest.raises(ValueError):
        cmd_split(line)


@pytest.fixture
def on_windows(monkeypatch):
    monkeypatch.setattr(host, "windows", lambda: True)


@pytest.mark.parametrize(
    "argv",
    [
        ["docker", "info", "--format", "{{json .}}"],
        ["C:\\Program Files\\Python 3.12\\python.exe", "-m", "lab", "data", "download"],
        ["python", "-m", "lab", "--data-dir", "C:\\Users\\Ada Lovelace\\lab data\\"],
        ["docker", "ps", "--filter", "label=org.autograd-lab.hub=autograd-hub"],
        ["pytest", "-k", "lesson and not slow", "-m", "not e2e"],
        ["x", "a&b", "(c)", "d|e", "", "tab\there"],
    ],
)
def test_an_argument_list_survives_cmd_exe_and_the_c_runtime(on_windows, argv):
    line = host.command_line(argv)
    assert "'" not in line  # cmd.exe passes single quotes on as they are
    assert cmd_split(line) == argv


@pytest.mark.parametrize("argument", ["100%", 'say "hi"'])
def test_what_cmd_exe_cannot_carry_is_refused_in_one_line(on_windows, argument):
    with pytest.raises(HostProblem, match="cannot pass .* through cmd.exe"):
        host.command_line(["docker", argument])


class Shell(Context):
    """An invoke context on a Windows host, as far as the tasks can tell: records every line
    it is asked to run (with its options) and answers like a machine with a Docker engine
    and the lab stack up."""

    def __init__(self) -> None:
        super().__init__()
        self._set(lines=[], remainder="")

    def run(self, line: str, **options):
        self.lines.append((line, options))
        argv = cmd_split(line)
        answer = ""
        if argv[:2] == ["docker", "info"]:
            client = {"Os": "windows", "Context": "desktop-linux"}
            answer = json.dumps({"ServerVersion": "28.3.3", "ClientInfo": client})
        elif argv[:3] == ["docker", "context", "inspect"]:
            answer = json.dumps({"docker": {"Host": "npipe:////./pipe/dockerDesktopLinuxEngine"}})
        elif argv[:2] == ["docker", "version"]:
            answer = json.dumps({"Client": {"Os": "windows"}, "Server": {"Components": []}})
        elif argv[:3] == ["docker", "compose", "version"]:
            answer = "Docker Compose version v2.29.1\n"
        elif "ps" in argv and "--format" in argv:
            answer = json.dumps({"Service": "lab", "State": "running"}) + "\n"
        elif argv[-4:] == ["server", "list", "--json"]:
            answer = json.dumps({"base_url": "/", "token": "t"}) + "\n"
        elif "port" in argv:
            answer = "127.0.0.1:8888\n"
        elif argv[:3] == ["docker", "image", "inspect"] or argv[:2] == ["docker", "ps"]:
            answer = "c1\n"
        return SimpleNamespace(exited=0, stdout=answer, stderr="", ok=True)


def test_every_command_the_tasks_run_reaches_its_program_as_built(
    on_windows, monkeypatch, tmp_path
):
    """The exact lines, through cmd.exe's rules, from a checkout and an interpreter whose
    paths hold spaces; each line must be the rendering of an argument list the task built."""
    checkout = tmp_path / "Ada Lovelace" / "autograd lab"
    (checkout / "data").mkdir(parents=True)
    monkeypatch.setattr(tasks, "ROOT", checkout)
    monkeypatch.setattr(sys, "executable", "C:\\Program Files\\Python 3.12\\python.exe")
    monkeypatch.setattr(docker, "CDI_DIRS", ())
    monkeypatch.setattr(docker, "DAEMON_PATH", ())
    monkeypatch.setattr(placement, "interactive", lambda: False)
    monkeypatch.setattr(tasks.classroom, "socket_gid", lambda: "987")
    built: list[list[str]] = []
    render = host.command_line
    monkeypatch.setattr(host, "command_line", lambda argv: built.append(list(argv)) or render(argv))
    c = Shell()
    data_dir = str(tmp_path / "my data (2)")
    tasks.up(c)
    tasks.lesson(c, "07", local=True)
    tasks.lesson(c, "07")
    tasks.download_data(c, data_dir=data_dir, registry=str(tmp_path / "mirror & co.toml"))
    tasks.generate_labels(c)
    tasks.gpu(c, json_=True, watch="2", id_="0,2")
    tasks.exercise(c, "07")
    tasks.check(c, "07", local=True)
    tasks.doctor(c, json_=True)
    tasks.down(c, volumes=True)
    tasks.build(c)
    tasks.logs(c, service="lab", follow=True)
    tasks.test(c, k="lesson and not slow")
    tasks.lint(c)
    tasks.hub_up(c)
    tasks.hub_down(c, servers=True)
    tasks.hub_logs(c)
    lines = [line for line, _ in c.lines]
    assert len(lines) == len(built) > 40  # nothing reached the shell but a rendered list
    for line, argv in zip(lines, built, strict=True):
        assert cmd_split(line) == argv, line
    programs = {argv[0] for argv in built}
    assert programs == {"docker", "ruff", "C:\\Program Files\\Python 3.12\\python.exe"}
    assert [data_dir] in [argv[i + 1 : i + 2] for argv in built for i in range(len(argv) - 1)]
    assert not any(options.get("pty") for _, options in c.lines)  # no PTY on Windows
    assert not any(line.startswith("cd ") or "&&" in line for line in lines)  # no invoke cd


def test_invoke_runs_from_a_checkout_whose_path_has_a_space(tmp_path):
    """For real: invoke's own `cd` put the path into the shell line, escaping only spaces
    (for bash: parentheses then broke it; cmd.exe takes neither, nor changes drive)."""
    import shutil

    checkout = tmp_path / "my checkout (2)"
    checkout.mkdir()
    shutil.copy(ROOT / "tasks.py", checkout)
    shutil.copytree(ROOT / "lab", checkout / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "lesson", "list", "--local"],
        cwd=checkout / "lab",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "01  manual_gradient" in done.stdout


def test_a_terminal_command_on_windows_gets_the_console_not_a_pty(on_windows, monkeypatch):
    """`invoke shell` (and `invoke lesson` at a terminal): invoke can only pipe on Windows,
    so docker runs attached to this console and allocates the container's TTY itself."""
    monkeypatch.setattr(docker, "CDI_DIRS", ())
    monkeypatch.setattr(docker, "DAEMON_PATH", ())
    attached = []
    monkeypatch.setattr(tasks.subprocess, "call", lambda argv: attached.append(argv) or 0)
    c = Shell()
    tasks.shell(c)
    assert attached and attached[-1][-4:] == ["--user", "lab", "lab", "bash"]
    assert "-T" not in attached[-1]
    assert not any(options.get("pty") for _, options in c.lines)


# --- 2. a Python as on Windows ---------------------------------------------------------------
BOOT = r"""
import builtins, os, runpy, sys
root = sys.argv[1]
# What decides its platform at import does so now, as on this Linux: the standard library,
# invoke, filelock, pynvml, tqdm handle Windows themselves.
import subprocess, platform, tempfile, shutil, tarfile, zipfile, gzip, http.client
import urllib.request, ssl, threading, concurrent.futures, json, argparse, importlib.util
import invoke, invoke.program, invoke.runners, filelock, pynvml, tqdm

POSIX_ONLY = {"fcntl", "pwd", "grp", "termios", "tty", "pty", "resource"}
OURS = (os.path.join(root, "lab") + os.sep, os.path.join(root, "tasks.py"))
real_import = builtins.__import__


def windows_import(name, globals=None, locals=None, fromlist=(), level=0):
    caller = (globals or {}).get("__file__") or ""
    if level == 0 and name.partition(".")[0] in POSIX_ONLY and caller.startswith(OURS):
        raise ModuleNotFoundError(f"No module named {name!r} (simulated Windows)", name=name)
    return real_import(name, globals, locals, fromlist, level)


builtins.__import__ = windows_import
for name in ("pread", "pwrite", "getuid", "geteuid", "getgid", "getegid", "getgroups",
             "chown", "fchown", "lchown", "killpg", "setsid", "openpty", "forkpty"):
    os.__dict__.pop(name, None)
sys.platform = "win32"
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def as_on_windows(*argv: str, **options) -> subprocess.CompletedProcess:
    """``python -m ARGV`` in a Python as on Windows (see the module docstring)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)} | options.pop("env", {})
    return subprocess.run(
        [sys.executable, "-c", BOOT, str(ROOT), *argv],
        cwd=options.pop("cwd", ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        **options,
    )


def test_the_simulation_refuses_posix_modules_to_the_labs_code(tmp_path):
    probe = ROOT / "lab" / "_portability_probe.py"  # a module of ours, for one import
    probe.write_text("import fcntl\n")
    try:
        done = as_on_windows("lab._portability_probe")
    finally:
        probe.unlink()
    assert done.returncode != 0 and "No module named 'fcntl' (simulated Windows)" in done.stderr


HOST_MODULES = [
    "tasks",
    "lab.cli",
    "lab.files",
    "lab.privileges",
    "lab.copies",
    "lab.host.doctor",
    "lab.host.placement",
    "lab.host.jupyter",
    "lab.host.hub",
    "lab.host.torch_build",
    "lab.data.cli",
    "lab.data.download",
    "lab.data.lock",
    "lab.data.labels",
    "lab.gpu.cli",
    "lab.gpu.procinfo",
    "lab.gpu.sampler",
    "lab.exercises.cli",
    "lab.lessons.cli",
]


def test_host_modules_import_without_posix_modules(tmp_path):
    script = tmp_path / "imports.py"
    script.write_text(
        "import importlib, sys\n"
        f"for name in {HOST_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "from lab.cli import build_parser\n"
        "build_parser()  # imports every command's module\n"
        "print('imported', sys.platform)\n"
    )
    done = as_on_windows(
        "imports", cwd=tmp_path, env={"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported win32"


def test_invoke_list_runs_as_on_windows():
    done = as_on_windows("invoke", "--list")
    assert done.returncode == 0, done.stderr
    assert "up" in done.stdout.split() and "download-data" in done.stdout.split()


def test_lab_doctor_json_runs_as_on_windows(tmp_path):
    done = as_on_windows("lab", "doctor", "--json", env={"LAB_DATA_DIR": str(tmp_path)})
    report = json.loads(done.stdout)  # whatever this machine has: a report, no traceback
    assert "Traceback" not in done.stderr, done.stderr
    assert report["schema_version"] == 2 and report["checks"]
    names = [check["name"] for check in report["checks"]]
    assert names[0] == "Docker engine" and "platform" in names
    platform = next(check for check in report["checks"] if check["name"] == "platform")
    assert platform["detail"].startswith("win32")


def test_lab_data_download_runs_as_on_windows(tmp_path):
    """Threads, byte ranges, the lock and resumable part files: os.pread/os.pwrite are gone,
    so lab.files' positional I/O takes its Windows path."""
    data_dir = tmp_path / "data dir"
    with FileServer(SYNTHETIC) as server:
        registry = write_registry(tmp_path / "registry.toml", [server.url("a")])
        done = as_on_windows(
            *("lab", "data", "download", "--registry", str(registry)),
            *("--data-dir", str(data_dir), "--json", "--jobs", "4"),
        )
        summary = json.loads(done.stdout or "{}")
        assert done.returncode == 0 and summary.get("ok"), done.stderr
        assert server.stats.requests > 0
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        unpacked = data_dir / "MNIST" / "raw" / name.removesuffix(".gz")
        assert unpacked.exists(), sorted(p.name for p in data_dir.rglob("*"))
