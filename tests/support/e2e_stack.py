"""Drive the lab's Docker images and compose stack from tests and benchmarks (docker CLI only)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
COMPOSE_FILES = (ROOT / "compose.yaml", ROOT / "compose.cpu.yaml")
DOCKERFILE = ROOT / "docker" / "Dockerfile"
IMAGES = {  # compose service (= Dockerfile target) -> the tag compose.yaml gives it
    "lab": "autograd-lab/lab:latest",
    "tensorboard": "autograd-lab/tensorboard:latest",
}
BUILD_CONTEXT = ROOT / "docker"
LAB_UID = 1000  # the images' user; the lab's entrypoint takes it for a root-owned checkout
# What a checkout holds that the stack needs: compose files, the bind-mounted folders, and
# what `invoke` needs to drive it (tasks.py imports lab.host).
CHECKOUT = ("compose.yaml", "compose.cpu.yaml", "tasks.py", "lab", "work", "data")


def engine_problem() -> str | None:
    """Why the Docker stack cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["`docker info` failed"])[-1]
        return f"no Docker engine is reachable: {reason}"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if compose.returncode != 0:
        return "the Docker Compose v2 plugin is not installed"
    return None


def build_image(service: str, *extra: str, log_name: str | None = None) -> float:
    """``docker build`` one image with the classic builder (what every engine has); returns
    the seconds it took. The log goes to artifacts/, its tail into the error on failure."""
    tag = IMAGES[service]
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / (log_name or f"build-{service}.log")
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            [
                *("docker", "build", "-f", str(DOCKERFILE), "--target", service, "-t", tag),
                *extra,
                str(BUILD_CONTEXT),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"building {tag} failed (full log: {log}):\n{tail}")
    return time.monotonic() - started


def buildkit_client() -> tuple[list[str], dict[str, str]] | None:
    """A way to build with BuildKit here: the buildx plugin, or a pre-23 client (Debian
    bookworm's docker.io 20.10) that drives the engine's BuildKit itself; None if neither."""
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0:
        return ["docker", "buildx", "build", "--load"], {}
    for client in dict.fromkeys(filter(None, [shutil.which("docker"), "/usr/bin/docker"])):
        version = subprocess.run(
            [client, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return [client, "build"], {"DOCKER_BUILDKIT": "1"}
    return None


def build_images() -> dict[str, str]:
    """Build both images; ``{service: image ID}`` of what was built. The IDs, not the tags:
    on a shared Docker daemon another checkout may retag ``autograd-lab/*:latest`` meanwhile."""
    built = {}
    for service, tag in IMAGES.items():
        build_image(service)
        built[service] = image_id(tag)
    return built


def image_id(reference: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", reference],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def image_size(service: str) -> int:
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", IMAGES[service]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_checkout(workdir: Path, owner: int | None = None) -> Path:
    """A copy of what a checkout holds for the stack (``CHECKOUT``; ``data/`` and ``work/``
    empty but for their placeholders), owned by uid:gid ``owner`` (needs root), or by
    whoever runs the tests when None."""
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    for name in CHECKOUT:
        source, target = ROOT / name, workdir / name
        if name in ("data", "work"):
            target.mkdir()
            (target / ".gitkeep").touch()
        elif source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    if owner is not None:
        subprocess.run(["chown", "-R", f"{owner}:{owner}", str(workdir)], check=True)
    return workdir


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10):
    """``(status, body bytes)``; HTTP errors are answers here, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Stack:
    """One compose project of the lab, with its own ports, token and project directory."""

    project: str
    workdir: Path
    token: str
    jupyter_port: int = field(default_factory=free_port)
    tensorboard_port: int = field(default_factory=free_port)
    images: dict[str, str] = field(default_factory=dict)  # service -> image ID to run
    engine: dict[str, str] = field(default_factory=dict)  # e.g. DOCKER_HOST of another engine
    files: tuple[Path, ...] = COMPOSE_FILES

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
        return (
            env
            | self.engine
            | {
                "JUPYTER_TOKEN": self.token,
                "LAB_JUPYTER_PORT": str(self.jupyter_port),
                "LAB_TENSORBOARD_PORT": str(self.tensorboard_port),
            }
        )

    @property
    def volume(self) -> str:
        return f"{self.project}_runs"

    @property
    def jupyter_url(self) -> str:
        return f"http://127.0.0.1:{self.jupyter_port}"

    @property
    def tensorboard_url(self) -> str:
        return f"http://127.0.0.1:{self.tensorboard_port}"

    def compose(self, *args: str, check: bool = True, timeout: float = 600):
        files = [flag for path in self.files for flag in ("-f", str(path))]
        command = [
            "docker",
            "compose",
            "-p",
            self.project,
            "--project-directory",
            str(self.workdir),
            *files,
            *args,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def up(self) -> float:
        """Start the stack from the built images; seconds until every service is healthy."""
        for service, built in self.images.items():
            # compose runs the tag; point it back at our build (a shared daemon's other
            # checkouts may have retagged it since)
            subprocess.run(["docker", "tag", built, IMAGES[service]], check=True, env=self.env)
        started = time.monotonic()
        result = self.compose(
            "up",
            "-d",
            "--wait",
            "--wait-timeout",
            "180",
            "--no-build",
            "--pull",
            "never",
            check=False,
        )
        seconds = time.monotonic() - started
        if result.returncode != 0:
            logs = self.compose("logs", "--no-color", "--tail", "40", check=False).stdout
            raise AssertionError(f"compose up failed:\n{result.stderr}\n{logs}")
        return seconds

    def down(self, volumes: bool) -> None:
        self.compose("down", "--remove-orphans", *(["-v"] if volumes else []), check=False)

    def exec(self, service: str, *command: str, user: str | None = None, check: bool = False):
        return self.compose(
            "exec", "-T", *(["--user", user] if user else []), service, *command, check=check
        )

    def invoke(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``invoke ARGS`` as a learner runs it, from this stack's checkout (so its tasks.py,
        routed into this compose project's lab container)."""
        env = self.env | {"COMPOSE_PROJECT_NAME": self.project}
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def gateway(self) -> str:
        """The host's address on this project's network: where a server the containers must
        reach listens (bound to it alone, not to every interface)."""
        return subprocess.run(
            [
                *("docker", "network", "inspect", f"{self.project}_default"),
                *("-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        ).stdout.strip()

    def processes(self, service: str) -> dict[int, tuple[int, int, str]]:
        """``{pid: (real uid, effective capabilities, command)}`` of every process in the
        service's container, read from /proc by a probe that itself runs as the image's user
        (``exec`` would otherwise start it as the lab service's root)."""
        script = (
            "import os, re\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    try:\n"
            "        status = open(f'/proc/{pid}/status').read()\n"
            "        command = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ')\n"
            "    except OSError: continue\n"
            "    uid = re.search(r'^Uid:\\s+(\\d+)', status, re.M).group(1)\n"
            "    caps = re.search(r'^CapEff:\\s+(\\w+)', status, re.M).group(1)\n"
            "    command = ' '.join(command.decode(errors='replace').split()) or '-'\n"
            "    print(pid, uid, int(caps, 16), command)\n"
        )
        user = "lab" if service == "lab" else None
        out = self.exec(service, "python3", "-c", script, user=user, check=True).stdout
        found = {}
        for line in out.splitlines():
            pid, uid, caps, command = line.split(maxsplit=3)
            found[int(pid)] = (int(uid), int(caps), command)
        return found

    def process_uids(self, service: str) -> dict[int, int]:
        """``{pid: real uid}`` of every process in the service's container."""
        return {pid: uid for pid, (uid, _, _) in self.processes(service).items()}

    def volume_exists(self) -> bool:
        names = subprocess.run(
            ["docker", "volume", "ls", "-q"],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        ).stdout.split()
        return self.volume in names

    def jupyter_api(self, path: str, token: str | None = None):
        headers = {"Authorization": f"token {token}"} if token is not None else {}
        return http_get(f"{self.jupyter_url}/api/{path}", headers)

    def jupyter_save(self, path: str, model: dict) -> tuple[int, dict]:
        """PUT a contents model (what JupyterLab's Save does); ``(status, answer)``."""
        request = urllib.request.Request(
            f"{self.jupyter_url}/api/contents/{path}",
            data=json.dumps(model).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            method="PUT",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, {"message": error.read().decode(errors="replace")}

    def tensorboard_json(self, path: str):
        status, body = http_get(f"{self.tensorboard_url}/data/{path}")
        assert status == 200, f"TensorBoard /data/{path} answered {status}"
        return json.loads(body)

    def tensorboard_runs(self, until, timeout: float = 60) -> set[str]:
        """TensorBoard's run list once ``until(runs)`` holds (it rescans its logdir every
        second, so a run written a moment ago may not be listed yet); fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            runs = set(self.tensorboard_json("runs"))
            if until(runs):
                return runs
            assert time.monotonic() < deadline, f"TensorBoard still lists {sorted(runs)}"
            time.sleep(0.5)

    def run_lesson_and_watch_tensorboard(self, number: str, timeout: float = 30) -> dict:
        """``invoke lesson NN`` (routed into this stack's lab container), then poll
        TensorBoard until the new run and its scalars are listed; ``latency_s`` is counted
        from the moment the lesson's process returned."""
        before = set(self.tensorboard_json("runs"))
        result = self.invoke("lesson", number)
        finished = time.monotonic()
        assert result.returncode == 0, f"invoke lesson {number}:\n{result.stdout}\n{result.stderr}"
        deadline = finished + timeout
        while True:
            new = sorted(set(self.tensorboard_json("runs")) - before)
            tags = self.tensorboard_json("plugin/scalars/tags") if new else {}
            if new and tags.get(new[0]):
                latency = time.monotonic() - finished
                return {
                    "run": new[0],
                    "tags": sorted(tags[new[0]]),
                    "latency_s": latency,
                    "output": result.stdout + result.stderr,
                }
            assert time.monotonic() < deadline, (
                f"no new run with scalars in TensorBoard {timeout:.0f} s after the lesson "
                f"ended; runs now: {sorted(set(self.tensorboard_json('runs')))}"
            )
            time.sleep(0.1)
