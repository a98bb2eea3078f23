"""The GPU report: one document per query, rendered as text for people or JSON for scripts.

The JSON schema is stable (bump ``SCHEMA_VERSION`` on any incompatible change). Every key
is always present; a value NVML cannot give is ``null`` (``n/a`` in the text)::

    {"schema_version": 1, "available": true, "error": null,
     "driver_version": "580.65.06", "cuda_version": "13.0",
     "gpus": [{"index": 0, "status": "ok" | "lost" | "error", "error": null | "reason",
               "name": str, "uuid": str,
               "utilization": {"gpu_percent": int, "memory_percent": int},
               "memory": {"used_mib": int, "total_mib": int},
               "temperature_c": int, "power": {"draw_w": float, "limit_w": float},
               "mig": {"enabled": bool | null,
                       "devices": [{"slot": int, "uuid": str, "name": str,
                                    "gpu_instance_id": int, "compute_instance_id": int,
                                    "memory": {"used_mib": int, "total_mib": int}}]},
               "processes": [{"pid": int, "name": str | null, "type": "C" | "G" | "C+G",
                              "used_memory_mib": int | null}] | null}]}

``cuda_version`` is the newest CUDA the driver supports (not a toolkit that is installed).
Stdlib only: the host runs this without torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from lab.gpu.nvml import DeviceError, Nvml, NvmlUnavailable

SCHEMA_VERSION = 1
MIB = 1024 * 1024
NA = "n/a"


def collect(
    nvml: Nvml, indices: Iterable[int] | None = None, proc_root: Path = Path("/proc")
) -> dict:
    """Query every selected GPU (all when ``indices`` is None) into the report document."""
    if indices is None:
        indices = range(nvml.device_count())
    return {
        "schema_version": SCHEMA_VERSION,
        "available": True,
        "error": None,
        "driver_version": nvml.driver_version(),
        "cuda_version": nvml.cuda_version(),
        "gpus": [gpu_entry(nvml, index, proc_root) for index in indices],
    }


def unavailable(error: NvmlUnavailable) -> dict:
    """The document for a machine where NVML cannot be used (same keys, no GPUs)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "available": False,
        "error": str(error),
        "driver_version": None,
        "cuda_version": None,
        "gpus": [],
    }


def _mib(value: int | None) -> int | None:
    return None if value is None else value // MIB


def _memory(pair: tuple[int, int] | None) -> dict:
    used, total = pair if pair is not None else (None, None)
    return {"used_mib": _mib(used), "total_mib": _mib(total)}


def _empty_entry(index: int) -> dict:
    return {
        "index": index,
        "status": "ok",
        "error": None,
        "name": None,
        "uuid": None,
        "utilization": {"gpu_percent": None, "memory_percent": None},
        "memory": {"used_mib": None, "total_mib": None},
        "temperature_c": None,
        "power": {"draw_w": None, "limit_w": None},
        "mig": {"enabled": None, "devices": []},
        "processes": None,
    }


def gpu_entry(nvml: Nvml, index: int, proc_root: Path = Path("/proc")) -> dict:
    """One GPU's answers; a GPU that stops answering is reported as lost, not raised."""
    entry = _empty_entry(index)
    try:
        handle = nvml.device(index)
        gpu_percent, memory_percent = nvml.utilization(handle) or (None, None)
        mig_enabled = nvml.mig_enabled(handle)
        processes = nvml.processes(handle)
        entry.update(
            name=nvml.name(handle),
            uuid=nvml.uuid(handle),
            utilization={"gpu_percent": gpu_percent, "memory_percent": memory_percent},
            memory=_memory(nvml.memory(handle)),
            temperature_c=nvml.temperature_c(handle),
            power={"draw_w": nvml.power_w(handle), "limit_w": nvml.power_limit_w(handle)},
            mig={
                "enabled": mig_enabled,
                "devices": _mig_devices(nvml, handle) if mig_enabled else [],
            },
            processes=None
            if processes is None
            else [
                {
                    "pid": p.pid,
                    "name": process_name(p.pid, proc_root),
                    "type": p.kind,
                    "used_memory_mib": _mib(p.used_memory_bytes),
                }
                for p in processes
            ],
        )
    except DeviceError as exc:
        entry = _empty_entry(index) | {
            "status": "lost" if exc.lost else "error",
            "error": exc.reason,
        }
    return entry


def _mig_devices(nvml: Nvml, handle) -> list[dict]:
    devices = []
    for slot, mig in nvml.mig_devices(handle):
        gpu_instance, compute_instance = nvml.mig_instance_ids(mig)
        devices.append(
            {
                "slot": slot,
                "uuid": nvml.uuid(mig),
                "name": nvml.name(mig),
                "gpu_instance_id": gpu_instance,
                "compute_instance_id": compute_instance,
                "memory": _memory(nvml.memory(mig)),
            }
        )
    return devices


def process_name(pid: int, proc_root: Path = Path("/proc")) -> str | None:
    """The process's name as this machine sees it; None when its pid is not visible here.

    NVML answers with the host's pids, even inside a container (the driver does not know PID
    namespaces): there a pid is usually absent, or is some unrelated process of the
    container's own. So a name is only given for a process that has an NVIDIA device open.
    """
    base = Path(proc_root) / str(pid)
    if not _has_nvidia_device_open(base):
        return None
    try:
        name = (base / "comm").read_text().strip()
        if name:
            return name
        argv0 = (base / "cmdline").read_bytes().split(b"\0", 1)[0]
        return Path(argv0.decode(errors="replace")).name or None
    except OSError:
        return None


def _has_nvidia_device_open(base: Path) -> bool:
    try:
        descriptors = os.listdir(base / "fd")
    except PermissionError:
        return True  # another user's process: cannot check, and on the host the pid is right
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(base / "fd" / descriptor).startswith("/dev/nvidia"):
                return True
        except OSError:
            continue  # closed while we looked
    return False


def to_json(document: dict, indent: int | None = 2) -> str:
    return json.dumps(document, indent=indent, sort_keys=False)


# -- text ---------------------------------------------------------------------------------
def _na(value, unit: str = "", fmt: str = "{}") -> str:
    return NA if value is None else fmt.format(value) + unit


def _pair(a, b, unit: str, fmt: str = "{}") -> str:
    return f"{_na(a, fmt=fmt)} / {_na(b, fmt=fmt)}{unit}"


def render_text(document: dict) -> str:
    """The report for people: a header line, then one block per GPU."""
    if not document["available"]:
        return document["error"] + "\n"
    gpus = document["gpus"]
    lines = [
        f"NVIDIA driver {_na(document['driver_version'])}, "
        f"CUDA {_na(document['cuda_version'])} (newest this driver supports), "
        f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} shown"
    ]
    for gpu in gpus:
        lines.append("")
        lines.extend(_gpu_lines(gpu))
    return "\n".join(lines) + "\n"


def _gpu_lines(gpu: dict) -> list[str]:
    if gpu["status"] != "ok":
        what = "LOST" if gpu["status"] == "lost" else "ERROR"
        return [
            f"GPU {gpu['index']}  {what}: {gpu['error']} "
            "(check `nvidia-smi`; a lost GPU needs a reset or reboot)"
        ]
    util, memory, power = gpu["utilization"], gpu["memory"], gpu["power"]
    lines = [
        f"GPU {gpu['index']}  {_na(gpu['name'])}  {_na(gpu['uuid'])}",
        f"  utilization  gpu {_na(util['gpu_percent'], ' %')}"
        f"  memory {_na(util['memory_percent'], ' %')}",
        f"  memory       {_pair(memory['used_mib'], memory['total_mib'], ' MiB')}",
        f"  temperature  {_na(gpu['temperature_c'], ' C')}",
        f"  power        {_pair(power['draw_w'], power['limit_w'], ' W', '{:.1f}')}",
    ]
    mig = gpu["mig"]
    if mig["enabled"] is not None:
        lines.append(
            f"  MIG          {'on' if mig['enabled'] else 'off'}"
            + (f", {len(mig['devices'])} devices" if mig["enabled"] else "")
        )
    for dev in mig["devices"]:
        lines.append(
            f"    MIG {dev['slot']}  {_na(dev['name'])}  {_na(dev['uuid'])}  "
            f"GI {_na(dev['gpu_instance_id'])} CI {_na(dev['compute_instance_id'])}  "
            f"memory {_pair(dev['memory']['used_mib'], dev['memory']['total_mib'], ' MiB')}"
        )
    processes = gpu["processes"]
    if processes is None:
        lines.append(f"  processes    {NA}")
    elif not processes:
        lines.append("  processes    none")
    else:
        lines.append(f"  processes    {'PID':>8}  {'TYPE':<4}  {'NAME':<20}  GPU MEMORY")
        for proc in processes:
            lines.append(
                f"               {proc['pid']:>8}  {proc['type']:<4}  "
                f"{_na(proc['name']):<20}  {_na(proc['used_memory_mib'], ' MiB')}"
            )
    return lines
