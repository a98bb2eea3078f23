"""The classroom hub's settings and policies, kept out of jupyterhub_config.py so host tests
can import them: nothing here imports jupyterhub, dockerspawner or docker at module level.

Every setting comes from the environment (compose.hub.yaml passes them through from .env);
a bad value stops the hub with one line naming the variable and what to put there.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

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

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_MEMORY = re.compile(r"^[0-9]+[bkmgBKMG]?$")
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
    network: str
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


def _int(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip() or str(default)
    if not raw.isdigit() or int(raw) < minimum:
        raise HubConfigError(f"{name}={raw!r}: give a whole number >= {minimum}")
    return int(raw)


def _name(env: dict, name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _NAME.match(value):
        raise HubConfigError(f"{name}={value!r}: use letters, digits, '_', '.' or '-'")
    return value


def settings_from_env(env: dict | None = None, nvidia_runtime: bool = False) -> Settings:
    env = dict(os.environ if env is None else env)
    mem_limit = env.get("HUB_MEM_LIMIT", "").strip() or "4G"
    shm_size = env.get("HUB_SHM_SIZE", "").strip() or "1G"
    for name, value in (("HUB_MEM_LIMIT", mem_limit), ("HUB_SHM_SIZE", shm_size)):
        if not _MEMORY.match(value):
            raise HubConfigError(f"{name}={value!r}: give a size like 512M or 4G")
    cpu_raw = env.get("HUB_CPU_LIMIT", "").strip() or "2"
    try:
        cpu_limit = float(cpu_raw)
    except ValueError:
        cpu_limit = 0.0
    if cpu_limit <= 0:
        raise HubConfigError(f"HUB_CPU_LIMIT={cpu_raw!r}: give a number of CPUs, e.g. 2 or 0.5")
    idle_timeout = _int(env, "HUB_IDLE_TIMEOUT", 3600, minimum=1)
    admins = frozenset(
        name.strip() for name in (env.get("HUB_ADMINS") or "admin").split(",") if name.strip()
    )
    if not admins:
        raise HubConfigError("HUB_ADMINS is empty: name at least one admin, e.g. HUB_ADMINS=admin")
    return Settings(
        lab_image=env.get("LAB_IMAGE", "").strip() or "autograd-lab/lab:latest",
        prefix=_name(env, "HUB_PREFIX", "autograd-hub"),
        network=_name(env, "HUB_NETWORK", "autograd-hub"),
        uid=_int(env, "LAB_UID", 1000, minimum=1),
        gid=_int(env, "LAB_GID", 1000, minimum=1),
        mem_limit=mem_limit,
        cpu_limit=cpu_limit,
        shm_size=shm_size,
        idle_timeout=idle_timeout,
        # the culler looks this often; by default a few times per timeout, at most once a minute
        cull_every=_int(env, "HUB_CULL_EVERY", max(1, min(60, idle_timeout // 3)), minimum=1),
        admins=admins,
        gpu=parse_gpu_policy(
            env.get("HUB_GPU_POLICY", ""), env.get("HUB_GPU_COUNT", ""), nvidia_runtime
        ),
        hub_connect_host=_name(env, "HUB_CONNECT_HOST", "hub"),
    )


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
