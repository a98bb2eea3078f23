"""``lab doctor`` (``invoke doctor``): is this machine ready for the lab? One table of checks.

Checks: Docker engine reachable; Compose v2 and its version; NVIDIA runtime or CDI spec
registered with Docker; the host driver's CUDA version against the CUDA build of the lab
image's torch; ports 8888 and 6006 free; free disk for images and datasets. Each check is
ok, warn or fail, and says how to fix a warn or fail. Run it on the host, not in a container.

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed.

Every check reads the machine through :class:`Probes` (the subprocess runner, the NVML
module, the port and disk probes), so tests fake the answers at those boundaries.
Stdlib + nvidia-ml-py only: never torch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.gpu.nvml import NvmlUnavailable, open_nvml
from lab.host.docker import nvidia_available
from lab.paths import data_dir

SCHEMA_VERSION = 1
OK, WARN, FAIL = "ok", "warn", "fail"
GB = 10**9
IMAGES_GB, DATASETS_GB = 7.0, 0.5
PORTS = {8888: "JupyterLab", 6006: "TensorBoard"}
LAB_TORCH, LAB_TORCH_CUDA = "2.14.1", "13.0"  # PyPI's torch 2.14.1 wheels are cu130
TORCH_INDEX = "https://download.pytorch.org/whl/"
# PyTorch CUDA builds, newest first, and the driver each needs (NVIDIA's CUDA release notes).
TORCH_CUDA_BUILDS = (("13.0", "cu130", 580), ("12.8", "cu128", 570), ("12.6", "cu126", 560))
STILL_WORKS = (
    "without Docker these still work here: lessons run locally on the CPU "
    "(`invoke lesson 07 --local` or `python -m lab lesson 07`), "
    "`invoke download-data` and `invoke gpu`"
)


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_command(command: Sequence[str], timeout: float) -> Result:
    """Raises FileNotFoundError (no such program) or subprocess.TimeoutExpired."""
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_bytes(path: Path) -> int:
    """Free space on the filesystem holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


@dataclass
class Probes:
    run: Callable[[Sequence[str], float], Result] = run_command
    nvml_module: object | None = None  # None: the real pynvml
    port_free: Callable[[int], bool] = port_is_free
    disk_free: Callable[[Path], int] = free_bytes
    cdi_dirs: tuple[str, ...] = ("/etc/cdi", "/var/run/cdi")
    data_dir: Path = field(default_factory=data_dir)
    env_file: Path = Path(".env")
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")


def _call(probes: Probes, command: list[str], timeout: float = 15) -> Result | str:
    """The command's result, or why it could not run."""
    try:
        return probes.run(command, timeout)
    except FileNotFoundError:
        return f"`{command[0]}` not found"
    except subprocess.TimeoutExpired:
        return f"`{' '.join(command)}` did not answer within {timeout:g} s"


def check_docker(probes: Probes) -> tuple[Check, dict | None]:
    result = _call(probes, ["docker", "info", "--format", "{{json .}}"])
    fix = (
        "install Docker Engine (https://docs.docker.com/engine/install/), start it "
        "(`sudo systemctl start docker`) and let your user use it (`docker` group)"
    )
    if isinstance(result, str):
        return Check("Docker engine", FAIL, result, fix), None
    if result.returncode != 0:
        return Check(
            "Docker engine", FAIL, f"not reachable: {_first_line(result.stderr)}", fix
        ), None
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        return Check(
            "Docker engine", FAIL, "`docker info` answered something unreadable", fix
        ), None
    return Check("Docker engine", OK, f"Docker {info.get('ServerVersion', '?')} reachable"), info


def check_compose(probes: Probes) -> Check:
    fix = (
        "install the Compose v2 plugin (Debian/Ubuntu: docker-compose-plugin; "
        "https://docs.docker.com/compose/install/linux/)"
    )
    result = _call(probes, ["docker", "compose", "version", "--short"])
    if isinstance(result, str):
        return Check("Compose v2", FAIL, result, fix)
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", result.stdout)
    if result.returncode != 0 or not match:
        return Check(
            "Compose v2",
            FAIL,
            f"`docker compose` missing: {_first_line(result.stderr or result.stdout)}",
            fix,
        )
    version = match.group(0).lstrip("v")
    if int(match.group(1)) < 2:
        return Check("Compose v2", FAIL, f"Compose {version} is too old", fix)
    return Check("Compose v2", OK, f"Docker Compose {version}")


def check_nvidia_runtime(probes: Probes, info: dict | None, has_gpu: bool) -> Check:
    name = "NVIDIA runtime/CDI"
    if nvidia_available(info or {}, probes.cdi_dirs):  # the same judgement `invoke up` makes
        return Check(name, OK, "Docker can hand out NVIDIA GPUs (runtime or CDI)")
    detail = "Docker has no `nvidia` runtime and no CDI spec for NVIDIA"
    if not has_gpu:
        return Check(
            name,
            WARN,
            f"{detail}; fine without an NVIDIA GPU: `invoke up` adds "
            "compose.cpu.yaml and lessons use the CPU",
        )
    return Check(
        name,
        FAIL,
        detail,
        "install the NVIDIA Container Toolkit, then "
        "`sudo nvidia-ctk runtime configure --runtime=docker && "
        "sudo systemctl restart docker`",
    )


def _cuda(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def image_torch_cuda(probes: Probes) -> tuple[str, str]:
    """(CUDA of the lab image's torch, where that came from): TORCH_INDEX_URL wins."""
    url, source = probes.environ.get("TORCH_INDEX_URL"), "TORCH_INDEX_URL in the environment"
    if not url and probes.env_file.is_file():
        for line in probes.env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "TORCH_INDEX_URL" and value.strip():
                url, source = value.strip().strip("'\""), f"TORCH_INDEX_URL in {probes.env_file}"
    match = re.search(r"/cu(\d+)(\d)/?$", url or "")
    if match:
        return f"{int(match.group(1))}.{match.group(2)}", source
    return LAB_TORCH_CUDA, f"torch {LAB_TORCH} default wheels"


def check_driver(probes: Probes) -> tuple[Check, bool]:
    """(the check, whether an NVIDIA GPU is usable)."""
    name = "GPU driver vs torch CUDA"
    try:
        with open_nvml(probes.nvml_module) as nvml:
            driver, cuda, count = nvml.driver_version(), nvml.cuda_version(), nvml.device_count()
    except NvmlUnavailable as exc:
        return Check(
            name,
            WARN,
            f"no NVIDIA GPU/driver here (NVML: {exc.reason}); lessons run on the CPU",
            f"only if this machine has an NVIDIA GPU: {exc.advice}",
        ), False
    needed, source = image_torch_cuda(probes)
    if cuda is None:
        return Check(name, WARN, f"driver {driver} did not say which CUDA it supports"), True
    detail = (
        f"{count} GPU(s), driver {driver} supports CUDA {cuda}; the lab image's torch "
        f"needs CUDA {needed} ({source})"
    )
    if _cuda(cuda) >= _cuda(needed):
        return Check(name, OK, detail), True
    older = next((b for b in TORCH_CUDA_BUILDS if _cuda(b[0]) <= _cuda(cuda)), None)
    upgrade = f"update the NVIDIA driver (CUDA {needed} needs driver >= " + next(
        (f"{b[2]})" for b in TORCH_CUDA_BUILDS if b[0] == needed), "a newer one)"
    )
    if older is None:
        return Check(name, FAIL, detail, upgrade), True
    url = TORCH_INDEX + older[1]
    return Check(
        name,
        FAIL,
        detail,
        f"{upgrade}, or build the lab image with an older PyTorch "
        f"CUDA build: TORCH_INDEX_URL={url} in .env (or `docker compose build "
        f"--build-arg TORCH_INDEX_URL={url}`)",
    ), True


def check_port(probes: Probes, port: int, docker_up: bool) -> Check:
    name = f"port {port} ({PORTS.get(port, '?')})"
    if probes.port_free(port):
        return Check(name, OK, "free on 127.0.0.1")
    holder = None
    if docker_up:
        result = _call(
            probes, ["docker", "ps", "--filter", f"publish={port}", "--format", "{{.Names}}"]
        )
        if isinstance(result, Result) and result.returncode == 0 and result.stdout.strip():
            holder = result.stdout.split()[0]
    if holder:
        return Check(
            name,
            WARN,
            f"in use by container {holder} (the lab already up?)",
            f"nothing to do if that is the lab; otherwise stop it (`docker stop {holder}`)",
        )
    return Check(
        name,
        FAIL,
        "in use by another program",
        f"stop it (`ss -ltnp 'sport = :{port}'` shows which), e.g. a local Jupyter",
    )


def check_disk(probes: Probes, name: str, path: Path, need_gb: float, what: str) -> Check:
    try:
        free = probes.disk_free(path) / GB
    except OSError as exc:
        return Check(name, WARN, f"cannot read free space at {path}: {exc}")
    detail = f"{free:.1f} GB free at {Path(path).absolute()}"
    if free >= need_gb:
        return Check(name, OK, detail)
    return Check(
        name,
        WARN,
        f"{detail}; {what} need ~{need_gb:g} GB",
        "free space on that disk (`docker system prune` removes unused images)",
    )


def run_checks(probes: Probes) -> list[Check]:
    docker, info = check_docker(probes)
    checks = [docker, check_compose(probes)]
    driver, has_gpu = check_driver(probes)
    checks += [check_nvidia_runtime(probes, info, has_gpu), driver]
    checks += [check_port(probes, port, info is not None) for port in PORTS]
    root = Path((info or {}).get("DockerRootDir") or "/")
    checks.append(check_disk(probes, "disk for images", root, IMAGES_GB, "the lab images"))
    checks.append(
        check_disk(
            probes,
            "disk for datasets",
            probes.data_dir,
            DATASETS_GB,
            "MNIST, CIFAR-10 and hymenoptera",
        )
    )
    return checks


def notes(checks: list[Check]) -> list[str]:
    failed = [check.name for check in checks if check.status == FAIL]
    lines = [f"{len(failed)} failed ({', '.join(failed)})" if failed else "nothing failed"]
    if checks[0].status == FAIL:
        lines.append(STILL_WORKS)
    return lines


def render(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks) + 2
    lines = [f"{'CHECK':<{width}}{'STATUS':<8}DETAIL"]
    for check in checks:
        lines.append(f"{check.name:<{width}}{check.status:<8}{check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"{'':<{width + 8}}fix: {check.fix}")
    return "\n".join(lines + [""] + notes(checks)) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "exit status: 0 nothing failed (warnings allowed), 1 a check failed"
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def run(args: argparse.Namespace, probes: Probes | None = None) -> int:
    checks = run_checks(probes or Probes())
    failed = any(check.status == FAIL for check in checks)
    if args.json:
        print(
            json.dumps(
                {
                    "schema_version": SCHEMA_VERSION,
                    "ok": not failed,
                    "checks": [asdict(check) for check in checks],
                    "notes": notes(checks),
                },
                indent=2,
            )
        )
    else:
        print(render(checks), end="")
    return 1 if failed else 0
