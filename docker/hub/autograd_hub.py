"""The classroom hub's settings and policies, kept out of jupyterhub_config.py so host tests
can import them: nothing here imports jupyterhub, dockerspawner or docker at module level.

Every setting comes from the environment (compose.hub.yaml passes them through from .env);
a bad value stops the hub with one line naming the variable and what to put there.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import itertools
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Container, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# The hub's database and generated secrets (the hub-state volume).
STATE_DIR = Path(os.environ.get("HUB_STATE_DIR", "/srv/jupyterhub"))
# Where compose.hub.yaml mounts the repository's lessons and datasets into the hub: the hub
# reads the host paths behind them from its own container, to bind them into each learner's.
LESSONS_MOUNT = "/srv/autograd-lab/lab"
DATA_MOUNT = "/srv/autograd-lab/data"
# Paths inside the lab image (its contract with the hub; see docker/hub/README section).
WORK_DIR = "/workspace/work"
RUNS_DIR = "/workspace/runs"
LAB_LESSONS_DIR = "/opt/autograd-lab/lab"
LAB_DATA_DIR = "/workspace/data"
LABEL = "org.autograd-lab.hub"  # on every learner container and volume: `docker ps --filter`
HEALTHCHECK = (
    "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:8888'"
    " + os.environ['JUPYTERHUB_SERVICE_PREFIX'] + 'api', timeout=4)"
)

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,39}$")
_MEMORY = re.compile(r"^([0-9]+)([bkmgtBKMGT]?)$")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# Learners' usernames: short, lowercase ASCII, so every name is visibly itself (no control
# characters, no look-alikes) and maps to Docker names that cannot collide (see safe_name).
USERNAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,31}"
USERNAME_RULE = "1-32 characters: a-z, 0-9, '-' or '_', starting with a letter or digit"
MIN_PASSWORD = 8
# The hub's own name on every learner's network (learners' servers call the hub API there).
PACKAGE_PROXY_PORT = 3128
# The teacher's view (lab/classroom/service.py), a hub service; learners' labs reach it
# through the hub's proxy at /services/course/.
COURSE_SERVICE = "course"
COURSE_SERVICE_PORT = 10101
_DEVICE_ID = re.compile(r"^(GPU|MIG)-[0-9a-fA-F-]+$|^MIG-GPU-[0-9a-fA-F-]+/[0-9]+/[0-9]+$")


class HubConfigError(Exception):
    """A setting the hub cannot start with; str() is the one line to show the admin."""


@dataclass(frozen=True)
class GpuPolicy:
    """Which GPUs a learner's container may see.

    kind: ``none`` (CPU servers), ``all`` (every GPU to every learner), ``round-robin``
    (GPU ``index % count`` to the learner with that index) or ``list`` (the UUIDs in
    ``devices``, one per learner, in turn).
    """

    kind: str
    count: int = 0
    devices: tuple[str, ...] = ()

    def devices_for(self, index: int) -> list[str] | None:
        """The device IDs learner ``index`` (0, 1, ...) gets; None means all, [] none."""
        if self.kind == "all":
            return None
        if self.kind == "round-robin":
            return [str(index % self.count)]
        if self.kind == "list":
            return [self.devices[index % len(self.devices)]]
        return []

    def device_requests(self, index: int) -> list[dict]:
        """docker-py ``DeviceRequest`` arguments for learner ``index``: exactly the policy's
        devices, and none at all for ``none`` (so a CPU host never needs the NVIDIA driver)."""
        devices = self.devices_for(index)
        if devices == []:
            return []
        request = {"driver": "nvidia", "capabilities": [["gpu"]]}
        if devices is None:
            return [request | {"count": -1}]
        return [request | {"device_ids": devices}]

    def visible_devices(self, index: int) -> str:
        """NVIDIA_VISIBLE_DEVICES for the container: it overrides the lab image's ``all``, so
        a runtime that hands out GPUs by that variable alone still obeys the policy."""
        devices = self.devices_for(index)
        if devices is None:
            return "all"
        return ",".join(devices) if devices else "void"


def parse_gpu_policy(value: str, count: str = "", nvidia_runtime: bool = False) -> GpuPolicy:
    """HUB_GPU_POLICY (+ HUB_GPU_COUNT for round-robin). ``auto`` is ``all`` when the Docker
    engine has the NVIDIA runtime and ``none`` otherwise."""
    value = value.strip()
    if value in ("", "auto"):
        return GpuPolicy("all" if nvidia_runtime else "none")
    if value in ("none", "all"):
        return GpuPolicy(value)
    if value == "round-robin":
        if not count.strip().isdigit() or int(count) < 1:
            raise HubConfigError(
                f"HUB_GPU_COUNT={count!r}: round-robin needs the number of GPUs on the host "
                "(e.g. HUB_GPU_COUNT=8, see `nvidia-smi -L`)"
            )
        return GpuPolicy("round-robin", count=int(count))
    devices = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [device for device in devices if not _DEVICE_ID.match(device)]
    if bad or not devices:
        raise HubConfigError(
            f"HUB_GPU_POLICY={value!r}: use auto, none, all, round-robin, or a comma-separated "
            "list of GPU-/MIG- UUIDs from `nvidia-smi -L`"
        )
    return GpuPolicy("list", devices=devices)


@dataclass(frozen=True)
class Settings:
    lab_image: str
    prefix: str
    uid: int
    gid: int
    mem_limit: str
    cpu_limit: float
    shm_size: str
    idle_timeout: int
    cull_every: int
    admins: frozenset[str]
    gpu: GpuPolicy
    hub_connect_host: str
    pids_limit: int = 1024
    disk_limit: int = 10 * 1024**3  # bytes: work + runs volumes + the container's own layer
    disk_check_every: int = 20
    max_age: int = 12 * 3600  # a server is stopped this long after its start, busy or not
    login_attempts: int = 5
    lockout_seconds: int = 600
    learner_subnets: ipaddress.IPv4Network = ipaddress.IPv4Network("10.213.0.0/16")
    package_hosts: tuple[str, ...] = ("pypi.org", "files.pythonhosted.org")
    max_servers: int = 0  # 0: no cap

    @property
    def activity_interval(self) -> int:
        """How often a learner's server tells the hub it is in use: often enough that the
        culler never mistakes a busy server for an idle one."""
        return max(1, min(300, self.idle_timeout // 6))


def _int(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip() or str(default)
    if not raw.isdigit() or int(raw) < minimum:
        raise HubConfigError(f"{name}={raw!r}: give a whole number >= {minimum}")
    return int(raw)


def _name(env: dict, name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _NAME.match(value):
        raise HubConfigError(f"{name}={value!r}: use up to 40 letters, digits, '_', '.' or '-'")
    return value


def _size(env: dict, name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _MEMORY.match(value):
        raise HubConfigError(f"{name}={value!r}: give a size like 512M or 4G")
    return value


def size_bytes(value: str) -> int:
    """``512M``, ``4G``, ``1024`` -> bytes (Docker's units: powers of 1024)."""
    number, unit = _MEMORY.match(value.strip()).groups()
    return int(number) * _UNITS[unit.lower()]


def _subnets(env: dict) -> ipaddress.IPv4Network:
    raw = env.get("HUB_LEARNER_SUBNETS", "").strip() or "10.213.0.0/16"
    try:
        network = ipaddress.IPv4Network(raw)
    except ValueError:
        network = None
    if network is None or network.prefixlen > 24:
        raise HubConfigError(
            f"HUB_LEARNER_SUBNETS={raw!r}: give an IPv4 range of /24 or larger, e.g. "
            "10.213.0.0/16, that no other Docker network uses"
        )
    return network


def settings_from_env(env: dict | None = None, nvidia_runtime: bool = False) -> Settings:
    env = dict(os.environ if env is None else env)
    cpu_raw = env.get("HUB_CPU_LIMIT", "").strip() or "2"
    try:
        cpu_limit = float(cpu_raw)
    except ValueError:
        cpu_limit = 0.0
    if cpu_limit <= 0:
        raise HubConfigError(f"HUB_CPU_LIMIT={cpu_raw!r}: give a number of CPUs, e.g. 2 or 0.5")
    idle_timeout = _int(env, "HUB_IDLE_TIMEOUT", 3600, minimum=1)
    admins = frozenset(
        name.strip().lower()
        for name in (env.get("HUB_ADMINS") or "admin").split(",")
        if name.strip()
    )
    if not admins:
        raise HubConfigError("HUB_ADMINS is empty: name at least one admin, e.g. HUB_ADMINS=admin")
    bad = sorted(name for name in admins if username_problem(name, reserved=()))
    if bad:
        raise HubConfigError(f"HUB_ADMINS: {', '.join(bad)} cannot be a username ({USERNAME_RULE})")
    hosts = tuple(
        host.strip().lower()
        for host in env.get("HUB_PACKAGE_HOSTS", "pypi.org,files.pythonhosted.org").split(",")
        if host.strip()
    )
    if any(not re.fullmatch(r"[a-z0-9.-]+", host) for host in hosts):
        raise HubConfigError(
            f"HUB_PACKAGE_HOSTS={','.join(hosts)!r}: give host names, comma-separated "
            "(e.g. pypi.org,files.pythonhosted.org), or nothing to keep learners offline"
        )
    return Settings(
        lab_image=env.get("LAB_IMAGE", "").strip() or "autograd-lab/lab:latest",
        prefix=_name(env, "HUB_PREFIX", "autograd-hub"),
        uid=_int(env, "LAB_UID", 1000, minimum=1),
        gid=_int(env, "LAB_GID", 1000, minimum=1),
        mem_limit=_size(env, "HUB_MEM_LIMIT", "4G"),
        cpu_limit=cpu_limit,
        shm_size=_size(env, "HUB_SHM_SIZE", "1G"),
        idle_timeout=idle_timeout,
        # the culler looks this often; by default a few times per timeout, at most once a minute
        cull_every=_int(env, "HUB_CULL_EVERY", max(1, min(60, idle_timeout // 3)), minimum=1),
        admins=admins,
        gpu=parse_gpu_policy(
            env.get("HUB_GPU_POLICY", ""), env.get("HUB_GPU_COUNT", ""), nvidia_runtime
        ),
        hub_connect_host=_name(env, "HUB_CONNECT_HOST", "hub"),
        pids_limit=_int(env, "HUB_PIDS_LIMIT", 1024, minimum=64),
        disk_limit=size_bytes(_size(env, "HUB_DISK_LIMIT", "10G")),
        disk_check_every=_int(env, "HUB_DISK_CHECK_EVERY", 20, minimum=1),
        max_age=_int(env, "HUB_MAX_AGE", 12 * 3600),
        login_attempts=_int(env, "HUB_LOGIN_ATTEMPTS", 5, minimum=1),
        lockout_seconds=_int(env, "HUB_LOCKOUT_SECONDS", 600, minimum=1),
        learner_subnets=_subnets(env),
        package_hosts=hosts,
        max_servers=_int(env, "HUB_MAX_SERVERS", 0),
    )


# --- who may sign up, with which password ---------------------------------------------------


def username_problem(name: str, reserved: Container[str]) -> str | None:
    """Why ``name`` (as typed) cannot be a learner's username, in one line; None if it can.
    ``reserved``: the admins' names, which nobody gets by signing up, in any case."""
    lowered = name.lower()
    if not (name.isascii() and re.fullmatch(USERNAME_PATTERN, lowered)):
        shown = name if len(name) <= 40 else name[:40] + "..."
        return f"{shown!r} cannot be a username: use {USERNAME_RULE}"
    if lowered in reserved:
        return f"{lowered!r} is reserved for this hub's teachers: choose another username"
    return None


def password_problem(username: str, password: str, common: Container[str]) -> str | None:
    """Why ``password`` is too weak for ``username``, in one line; None if it will do."""
    if len(password) < MIN_PASSWORD:
        return f"Use a password of at least {MIN_PASSWORD} characters"
    if len(set(password)) < 5:
        return "Use a password with at least 5 different characters"
    # (a name of 1-3 letters is in too many good passwords to refuse them all)
    if username.lower() in password.lower() and (len(username) > 3 or username == password):
        return "Use a password that does not contain your username"
    if password in common or password.lower() in common:
        return "That password is one of the most common ones: choose another"
    return None


class Turns:
    """Runs slow blocking calls (bcrypt: ~0.3 s a password check) in ``workers`` threads,
    beside the event loop, so they never stall the hub's other requests; when all threads
    are busy, the call with the lowest ``rank`` goes next (then the earliest). Ranked by
    recent failed logins, 8 clients guessing passwords do not make a learner wait behind
    their queue of guesses."""

    def __init__(self, workers: int = 2) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt")
        self.free = workers
        self.waiting: list = []  # heap of (rank, arrival, future)
        self.arrivals = itertools.count()

    async def run(self, rank: int, call: Callable, *args):
        loop = asyncio.get_running_loop()
        if self.free:
            self.free -= 1
        else:
            turn = loop.create_future()
            heapq.heappush(self.waiting, (rank, next(self.arrivals), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._pass_on()  # given a thread, but gone: the next one takes it
                raise
        try:
            return await loop.run_in_executor(self.pool, call, *args)
        finally:
            self._pass_on()

    def _pass_on(self) -> None:
        while self.waiting:
            turn = heapq.heappop(self.waiting)[2]
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1


def safe_name(username: str) -> str:
    """The learner's part of their container, volume and network names: a-z and 0-9 as they
    are, every other byte of the UTF-8 as ``-`` and two hex digits. Exactly DockerSpawner's
    escaping for the names sign-up allows (so existing volumes keep their names), but always
    two digits, which makes it one-to-one for any string: distinct users, distinct names."""
    return "".join(
        chr(byte) if chr(byte) in _SAFE else f"-{byte:02x}" for byte in username.encode()
    )


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def username_of(escaped: str) -> str:
    """The learner whose :func:`safe_name` is ``escaped`` (how the grader finds who owns a
    work volume); ValueError for a string safe_name never makes."""
    if not escaped:
        raise ValueError("an empty name is no learner's")
    out, i = bytearray(), 0
    while i < len(escaped):
        if escaped[i] == "-" and re.fullmatch(r"[0-9a-f]{2}", escaped[i + 1 : i + 3]):
            out.append(int(escaped[i + 1 : i + 3], 16))
            i += 3
        elif escaped[i] in _SAFE:
            out.append(ord(escaped[i]))
            i += 1
        else:
            raise ValueError(f"{escaped!r} is not a learner's escaped name")
    name = out.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if safe_name(name) != escaped:
        raise ValueError(f"{escaped!r} is not a learner's escaped name")
    return name


# --- what the machine can hold ------------------------------------------------------------


def capacity_warnings(
    settings: Settings, servers: int, memory: int, cpus: int, pid_max: int
) -> list[str]:
    """One line per limit that ``servers`` learners' servers together exceed on a machine
    with ``memory`` bytes, ``cpus`` CPUs and ``pid_max`` process ids."""
    warnings = []
    mem_limit = size_bytes(settings.mem_limit)
    if servers * mem_limit > memory:
        warnings.append(
            f"{servers} servers x HUB_MEM_LIMIT={settings.mem_limit} = "
            f"{servers * mem_limit / 1024**3:.1f} GiB is more than this machine's "
            f"{memory / 1024**3:.1f} GiB: learners' kernels may be killed when memory runs out"
        )
    if servers * settings.cpu_limit > 2 * cpus:
        warnings.append(
            f"{servers} servers x HUB_CPU_LIMIT={settings.cpu_limit:g} CPUs is more than twice "
            f"this machine's {cpus} CPUs: busy learners will be slow"
        )
    if servers * settings.pids_limit > pid_max // 2:
        warnings.append(
            f"{servers} servers x HUB_PIDS_LIMIT={settings.pids_limit} processes is more than "
            f"half of this machine's {pid_max} process ids"
        )
    return warnings


# --- the learners' own networks ---------------------------------------------------------------

LEARNER_SUBNET_PREFIX = 29  # 8 addresses: network, (unused) gateway, the hub, the learner


def free_subnet(
    pool: ipaddress.IPv4Network, used: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network:
    """The first /29 of ``pool`` that overlaps none of ``used`` (every Docker network's)."""
    used = list(used)
    for subnet in pool.subnets(new_prefix=LEARNER_SUBNET_PREFIX):
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise HubConfigError(
        f"HUB_LEARNER_SUBNETS={pool}: every /{LEARNER_SUBNET_PREFIX} in it is taken; give a "
        "larger range"
    )


# --- disk: a learner's files may not grow past the limit ---------------------------------------


class DiskWatch:
    """Which servers to stop for their files: those above their allowance, which is the limit,
    or for a server that started above it the least it has been seen using since (so a learner
    over the limit can start their server and delete files, but not add any), plus ``slack``
    for what JupyterLab itself writes. The allowance never goes up while a server runs."""

    def __init__(self, limit: int, slack: int = 64 * 1024**2) -> None:
        self.limit, self.slack = limit, slack
        self.lowest: dict[str, int] = {}  # container id -> least bytes seen

    def to_stop(self, usage: dict[str, int]) -> list[str]:
        """``usage``: container id of each running server -> bytes its learner uses now."""
        lowest = {c: min(size, self.lowest.get(c, size)) for c, size in usage.items()}
        stop = [c for c, size in usage.items() if size > max(self.limit, lowest[c]) + self.slack]
        self.lowest = {c: least for c, least in lowest.items() if c not in stop}
        return stop


def learner_usage(df: dict, prefix: str, safe: str) -> tuple[str | None, int]:
    """From ``docker system df`` (the API's /system/df): the id of the learner's container
    and the bytes of their work and runs volumes plus that container's own layer."""
    volumes = learner_volumes(prefix, safe)
    size = sum(
        max(volume.get("UsageData", {}).get("Size", 0), 0)
        for volume in df.get("Volumes") or []
        if volume.get("Name") in volumes
    )
    container = None
    for candidate in df.get("Containers") or []:
        if f"/{prefix}-{safe}" in (candidate.get("Names") or []):
            container = candidate["Id"]
            size += candidate.get("SizeRw") or 0
    return container, size


def learner_index(user_id: int) -> int:
    """A learner's stable place in the GPU rotation: hub user ids start at 1 and never change,
    so a learner keeps the same GPU across restarts."""
    return max(user_id - 1, 0)


def learner_volumes(prefix: str, escaped_name: str) -> dict[str, str]:
    """Named volume -> mount point, one pair per learner for their files and their runs."""
    return {
        f"{prefix}-work-{escaped_name}": WORK_DIR,
        f"{prefix}-runs-{escaped_name}": RUNS_DIR,
    }


def solution_masks(course: Path = Path(LESSONS_MOUNT)) -> list[dict]:
    """Mounts that hide the reference solutions in a learner's container (and the grader's):
    an empty file (/dev/null) over each ``solutions.py`` of the course in ``course`` (the
    lessons as the hub sees them). A learner gets a lesson's solutions from the course
    service once the teacher released them (``lab exercise NN --solution``)."""
    return [
        {
            "type": "bind",
            "source": "/dev/null",
            "target": f"{LAB_LESSONS_DIR}/{path.relative_to(course).as_posix()}",
            "read_only": True,
        }
        for path in sorted(course.glob("course/*/solutions.py"))
    ]


def course_dirs(mounts: list[dict], env: dict | None = None) -> tuple[str, str]:
    """The host paths of the repository's lab/ and data/ (bound read-only into learners'
    containers), from the hub's own ``docker inspect`` Mounts or HUB_LESSONS_HOST_DIR /
    HUB_DATA_HOST_DIR."""
    env = os.environ if env is None else env
    lessons = env.get("HUB_LESSONS_HOST_DIR") or host_source(mounts, LESSONS_MOUNT)
    data = env.get("HUB_DATA_HOST_DIR") or host_source(mounts, DATA_MOUNT)
    if not lessons or not data:
        raise HubConfigError(
            f"mount the repository's lab/ at {LESSONS_MOUNT} and data/ at {DATA_MOUNT} "
            "(compose.hub.yaml does), or set HUB_LESSONS_HOST_DIR/HUB_DATA_HOST_DIR"
        )
    return lessons, data


def host_source(mounts: list[dict], destination: str) -> str | None:
    """The host path behind the bind mount at ``destination`` in a ``docker inspect``'s
    Mounts, or None."""
    for mount in mounts:
        if mount.get("Destination") == destination and mount.get("Type") == "bind":
            return mount.get("Source")
    return None


def has_nvidia_runtime(info: dict) -> bool:
    """Whether ``docker info`` shows the NVIDIA runtime or NVIDIA CDI devices."""
    if "nvidia" in (info.get("Runtimes") or {}):
        return True
    return any(
        str(device.get("ID", "")).startswith("nvidia.com/gpu")
        for device in info.get("DiscoveredDevices") or []
    )


def ensure_secret(path: Path, nbytes: int = 32) -> str:
    """The hex secret in ``path``, generated on first use. Written 0600 through a temp file
    and a rename, so a crash never leaves a half-written secret; never printed."""
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    value = secrets.token_hex(nbytes)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return value
