"""``lab doctor`` (``invoke doctor``): is this machine ready for the lab? One table of checks.

Checks: the container engine (Docker Engine, rootless, Docker Desktop, Podman; on this
machine, not remote); Compose and its version; the platform (Jetson, architectures torch
has no wheels for); whether the engine can hand out an NVIDIA GPU; the host driver against
the CUDA build of the lab image's torch; the lab's ports free; free disk for images and
datasets. Each check is ok, warn or fail, and says how to fix a warn or fail. Run it on the
host, not in a container.

It asks the same questions ``invoke up`` asks and takes the same answers from lab/host
(``docker.engine``, ``docker.gpu_support``, ``compose.require_compose``,
``compose.host_port``), so the two never disagree. One cause gives one failed line: without
Docker, neither Compose nor the GPU hand-out is judged; with a remote engine, nothing of this
machine that the lab would not use (GPU, driver, ports, image disk).

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed.

The machine is read through :class:`Probes`: an invoke-like context for commands, the
NVML module, the port and disk probes; tests fake those. Stdlib + nvidia-ml-py: never torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.gpu.nvml import NvmlUnavailable, open_nvml
from lab.host import HostProblem, Shell, ask, compose, docker
from lab.host.torch_build import driver_verdict, image_torch
from lab.paths import data_dir

SCHEMA_VERSION = 2
OK, WARN, FAIL = "ok", "warn", "fail"
GB = 10**9
IMAGES_GB, DATASETS_GB = 7.0, 0.5
JETSON_RELEASE = Path("/etc/nv_tegra_release")  # L4T, the OS of NVIDIA Jetson boards
TORCH_ARCHITECTURES = ("x86_64", "amd64", "aarch64", "arm64")  # PyPI's Linux torch wheels
JETSON = (
    "NVIDIA Jetson (L4T) is not supported: the image's torch is PyPI's, not a JetPack build, "
    'so lessons run on the CPU at best (README, "Hosts")'
)
REMOTE_PREFIX = docker.REMOTE.partition(" (")[0]
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
    context: object = field(default_factory=Shell)  # anything with invoke's ``run``
    nvml_module: object | None = None  # None: the real pynvml
    port_free: Callable[[int], bool] = port_is_free
    disk_free: Callable[[Path], int] = free_bytes
    data_dir: Path = field(default_factory=data_dir)
    env_file: Path = compose.ENV_FILE
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    platform: str = field(default_factory=lambda: sys.platform)  # win32, darwin, linux
    jetson_release: Path = JETSON_RELEASE

    @property
    def host(self) -> docker.Host:
        return docker.Host(platform=self.platform, nvml_module=self.nvml_module)


def check_docker(probes: Probes) -> tuple[Check, docker.Engine | None]:
    name = "Docker engine"
    try:
        engine = docker.engine(probes.context, probes.environ)
    except HostProblem as problem:
        return Check(name, FAIL, str(problem)), None
    remote = docker.remote_problem(engine)
    if remote:
        return Check(name, FAIL, remote), engine
    return Check(name, OK, f"{engine.label} reachable"), engine


def check_platform(probes: Probes, engine: docker.Engine | None) -> Check:
    machine = str((engine.info if engine else {}).get("Architecture") or platform.machine())
    name = "platform"
    if probes.jetson_release.exists():
        return Check(name, WARN, JETSON)
    if machine.lower() not in TORCH_ARCHITECTURES:
        return Check(
            name,
            FAIL,
            f"{machine}: PyTorch publishes no Linux wheels for it",
            "run the lab on an x86_64 or arm64 machine",
        )
    return Check(name, OK, f"{probes.platform}, containers on {machine}")


def check_compose(probes: Probes) -> Check:
    floor = ".".join(map(str, compose.MIN_VERSION))
    try:
        found = compose.require_compose(probes.context)
    except HostProblem as problem:
        return Check("Compose", FAIL, str(problem))
    return Check("Compose", OK, f"Docker Compose {found} (the lab needs >= {floor})")


def check_gpu_support(probes: Probes, engine: docker.Engine, has_gpu: bool) -> Check:
    name = "Docker GPU access"
    support = docker.gpu_support(engine, probes.host)  # the same judgement `invoke up` makes
    if support.available:
        return Check(name, OK, support.detail)
    if has_gpu:
        return Check(name, FAIL, support.detail, support.fix)
    macos = docker.on_macos(engine, probes.host)
    hint = compose.plain_up_hint(macos, probes.environ, probes.env_file)
    hint = f"; {hint}" if hint else ""
    return Check(
        name,
        WARN,
        f"{support.detail}; fine without an NVIDIA GPU: `invoke up` adds "
        f"{compose.CPU_OVERRIDE} and lessons use the CPU{hint}",
    )


def check_driver(probes: Probes, macos: bool) -> tuple[Check, bool]:
    """(the check, whether this machine has an NVIDIA GPU, usable or not)."""
    name = "GPU driver vs torch build"
    build = image_torch(probes.environ, probes.env_file, macos)
    try:
        with open_nvml(probes.nvml_module) as nvml:
            driver, cuda, count = nvml.driver_version(), nvml.cuda_version(), nvml.device_count()
    except NvmlUnavailable as exc:
        if exc.gpu_unusable:  # a GPU and a driver, but no container will get to use them
            return Check(name, FAIL, f"NVML: {exc.reason}", exc.advice), True
        if build.cuda is None:
            return Check(name, OK, f"no NVIDIA GPU here and the image's {build.label}"), False
        return Check(
            name,
            WARN,
            f"no NVIDIA GPU/driver here (NVML: {exc.reason}); lessons run on the CPU",
            f"only if this machine has an NVIDIA GPU: {exc.advice}",
        ), False
    status, verdict, fix = driver_verdict(driver, build)
    detail = f"{count} GPU(s), driver {driver} (CUDA <= {cuda}); {verdict}"
    return Check(name, status, detail, fix), True


def check_port(probes: Probes, spec: tuple[str, int, str], docker_up: bool) -> Check:
    service, _, env_var = spec
    port = compose.host_port(spec, probes.environ, probes.env_file)
    name = f"port {port} ({service})"
    if probes.port_free(port):
        return Check(name, OK, "free on 127.0.0.1")
    holder = None
    if docker_up:
        listing = ["docker", "ps", "--filter", f"publish={port}", "--format", "{{.Names}}"]
        result = ask(probes.context, listing)
        if result.exited == 0 and result.stdout.strip():
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
        f"stop it (`ss -ltnp 'sport = :{port}'` shows which), or choose another port: "
        f"{env_var}=<port> in .env",
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
    first, engine = check_docker(probes)
    checks = [first]
    if first.detail != docker.NOT_INSTALLED:  # no Docker CLI: no Compose either, one line
        checks.append(check_compose(probes))
    checks.append(check_platform(probes, engine))
    remote = engine is not None and engine.remote
    if not remote:  # a remote engine's GPUs, ports and disk are not this machine's
        driver, has_gpu = check_driver(probes, docker.on_macos(engine, probes.host))
        if engine is not None:  # an engine that does not answer cannot be asked about GPUs
            checks.append(check_gpu_support(probes, engine, has_gpu))
        checks.append(driver)
        checks += [
            check_port(probes, spec, engine is not None)
            for spec in (compose.JUPYTER, compose.TENSORBOARD)
        ]
        if engine is None or not engine.desktop:  # Docker Desktop's are in its VM's disk
            root = Path((engine.info if engine else {}).get("DockerRootDir") or "/")
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
    if checks[0].status == FAIL and not checks[0].detail.startswith(REMOTE_PREFIX):
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
