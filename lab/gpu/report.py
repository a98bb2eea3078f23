"""The GPU report: one document per query, rendered as text for people or JSON for scripts.

The JSON schema is stable (bump ``SCHEMA_VERSION`` on any incompatible change). Every key
is always present; a value NVML cannot give is ``null`` (``n/a`` in the text)::

    {"schema_version": 2, "available": true, "error": null,
     "driver_version": "580.65.06", "cuda_version": "13.0", "note": null | str,
     "gpus": [{"index": int, "cuda_index": int | null, "status": "ok" | "lost" | "error",
               "error": null | str, "name": str, "uuid": str, "pci_bus_id": str,
               "utilization": {"gpu_percent": int, "memory_percent": int},
               "memory": {"used_mib": int, "total_mib": int},
               "temperature_c": int, "power": {"draw_w": float, "limit_w": float},
               "fan_percent": int, "performance_state": "P0".."P15",
               "clocks": {"sm_mhz": int, "memory_mhz": int},
               "clocks_event_reasons": [str] | null, "ecc_volatile_uncorrected": int,
               "pcie": {"generation": int, "width": int, "tx_kib_s": int, "rx_kib_s": int},
               "mig": {"enabled": bool | null, "pending": bool | null,
                       "devices": [{"slot": int, "cuda_index": int | null, "uuid": str,
                                    "name": str, "gpu_instance_id": int,
                                    "compute_instance_id": int,
                                    "memory": {"used_mib": int, "total_mib": int}}]},
               "processes": [{"pid": int, "user": str | null, "name": str | null,
                              "command": str | null, "type": "C" | "G" | "C+G",
                              "used_memory_mib": int | null, "sm_percent": int | null,
                              "mig_slot": int | null}] | null,
               "processes_complete": bool,
               "field_errors": [str]}]}

``cuda_version`` is the newest CUDA the driver supports (not a toolkit that is installed).
``mig.pending`` is the MIG mode after the next GPU reset when that differs from now.
``processes_complete`` is false when NVML listed only part (e.g. refused compute processes).
``sm_percent`` is the newest NVML sample since the previous query (0: NVML sampled no work
of that process), null where the GPU gives no per-process samples.
Stdlib only: the host runs this without torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from lab.gpu import procinfo
from lab.gpu.nvml import DeviceError, GpuProcess, Nvml, NvmlUnavailable, merge_process
from lab.gpu.visible import cuda_devices, cuda_index_of

SCHEMA_VERSION = 2
MIB = 1024 * 1024
HOST_PIDS_NOTE = (
    "NVML lists host PIDs, which this container cannot see: process names and users are "
    "n/a here (run `lab gpu` on the host, or `nvidia-smi` there, to see them)"
)
# nvmlClocksEventReason* bits, in NVML's order
CLOCK_EVENT_REASONS = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)


def collect(
    nvml: Nvml,
    indices: Iterable[int] | None = None,
    proc_root: Path = procinfo.PROC,
    environ=None,
) -> dict:
    """Query every selected GPU (all when ``indices`` is None) into the report document."""
    if indices is None:
        indices = range(nvml.device_count())
    cuda = cuda_devices(nvml, environ)
    gpus = [gpu_entry(nvml, index, proc_root, cuda) for index in indices]
    listed = [p for gpu in gpus for p in gpu["processes"] or []]
    hidden = listed and all(p["name"] is None for p in listed)
    return {
        "schema_version": SCHEMA_VERSION,
        "available": True,
        "error": None,
        "driver_version": nvml.driver_version(),
        "cuda_version": nvml.cuda_version(),
        "note": HOST_PIDS_NOTE if hidden else None,
        "gpus": gpus,
    }


def unavailable(error: NvmlUnavailable) -> dict:
    """The document for a machine where NVML cannot be used (same keys, no GPUs)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "available": False,
        "error": str(error),
        "driver_version": None,
        "cuda_version": None,
        "note": None,
        "gpus": [],
    }


def _mib(value: int | None) -> int | None:
    return None if value is None else value // MIB


def _memory(pair: tuple[int, int] | None) -> dict:
    used, total = pair if pair is not None else (None, None)
    return {"used_mib": _mib(used), "total_mib": _mib(total)}


def _reasons(mask: int | None) -> list[str] | None:
    return None if mask is None else [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]


def _empty_entry(index: int, cuda_index: int | None = None) -> dict:
    return {
        "index": index,
        "cuda_index": cuda_index,
        "status": "ok",
        "error": None,
        "name": None,
        "uuid": None,
        "pci_bus_id": None,
        "utilization": {"gpu_percent": None, "memory_percent": None},
        "memory": {"used_mib": None, "total_mib": None},
        "temperature_c": None,
        "power": {"draw_w": None, "limit_w": None},
        "fan_percent": None,
        "performance_state": None,
        "clocks": {"sm_mhz": None, "memory_mhz": None},
        "clocks_event_reasons": None,
        "ecc_volatile_uncorrected": None,
        "pcie": {"generation": None, "width": None, "tx_kib_s": None, "rx_kib_s": None},
        "mig": {"enabled": None, "pending": None, "devices": []},
        "processes": None,
        "processes_complete": False,
        "field_errors": [],
    }


def gpu_entry(nvml: Nvml, index: int, proc_root: Path = procinfo.PROC, cuda=()) -> dict:
    """One GPU's answers, each field on its own; only a lost GPU is reported as lost."""
    entry = _empty_entry(index, cuda_index_of(list(cuda), index))
    nvml.field_errors.clear()
    try:
        handle = nvml.device(index)
        gpu_percent, memory_percent = nvml.utilization(handle) or (None, None)
        sm_mhz, memory_mhz = nvml.clocks_mhz(handle)
        mode = nvml.mig_mode(handle)
        migs = _mig_devices(nvml, handle, index, cuda) if mode and mode[0] else []
        entry.update(
            name=nvml.name(handle),
            uuid=nvml.uuid(handle),
            pci_bus_id=nvml.pci_bus_id(handle),
            utilization={"gpu_percent": gpu_percent, "memory_percent": memory_percent},
            memory=_memory(nvml.memory(handle)),
            temperature_c=nvml.temperature_c(handle),
            power={"draw_w": nvml.power_w(handle), "limit_w": nvml.power_limit_w(handle)},
            fan_percent=nvml.fan_percent(handle),
            performance_state=nvml.performance_state(handle),
            clocks={"sm_mhz": sm_mhz, "memory_mhz": memory_mhz},
            clocks_event_reasons=_reasons(nvml.clocks_event_reasons(handle)),
            ecc_volatile_uncorrected=nvml.ecc_uncorrected_volatile(handle),
            pcie=nvml.pcie(handle),
            mig={
                "enabled": None if mode is None else mode[0],
                "pending": None if mode is None or mode[0] == mode[1] else mode[1],
                "devices": [device for device, _ in migs],
            },
        )
        listing = _processes(nvml, handle, [mig for _, mig in migs])
        if listing is not None:
            processes, complete = listing
            sm = nvml.process_sm_percent(handle)
            slots = {(d["gpu_instance_id"], d["compute_instance_id"]): d["slot"] for d, _ in migs}
            entry["processes"] = [_process_entry(p, sm, slots, proc_root) for p in processes]
            entry["processes_complete"] = complete
        entry["field_errors"] = list(nvml.field_errors)
    except DeviceError as exc:
        entry = _empty_entry(index, entry["cuda_index"]) | {
            "status": "lost" if exc.lost else "error",
            "error": exc.reason,
        }
    return entry


def _processes(nvml: Nvml, handle, mig_handles: list) -> tuple[list[GpuProcess], bool] | None:
    """The GPU's processes; in MIG mode also those each MIG device lists (the parent's
    list can be partial for unprivileged users)."""
    listings = [nvml.processes(h) for h in [handle, *mig_handles]]
    answered = [listing for listing in listings if listing is not None]
    if not answered:
        return None
    merged: dict[int, GpuProcess] = {}
    for processes, _ in answered:
        for process in processes:
            merge_process(merged, process)
    complete = listings[0] is not None and listings[0][1]
    return sorted(merged.values(), key=lambda p: p.pid), complete


def _process_entry(process: GpuProcess, sm: dict | None, slots: dict, proc_root: Path) -> dict:
    info = procinfo.describe(process.pid, proc_root)
    return {
        "pid": process.pid,
        "user": info.user,
        "name": info.name,
        "command": info.command,
        "type": process.kind,
        "used_memory_mib": _mib(process.used_memory_bytes),
        "sm_percent": None if sm is None else sm.get(process.pid, 0),  # no sample: idle
        "mig_slot": slots.get((process.gpu_instance_id, process.compute_instance_id)),
    }


def _mig_devices(nvml: Nvml, handle, index: int, cuda) -> list[tuple[dict, object]]:
    devices = []
    for slot, mig in nvml.mig_devices(handle):
        gpu_instance, compute_instance = nvml.mig_instance_ids(mig)
        entry = {
            "slot": slot,
            "cuda_index": cuda_index_of(list(cuda), index, slot),
            "uuid": nvml.uuid(mig),
            "name": nvml.name(mig),
            "gpu_instance_id": gpu_instance,
            "compute_instance_id": compute_instance,
            "memory": _memory(nvml.memory(mig)),
        }
        devices.append((entry, mig))
    return devices


def to_json(document: dict, indent: int | None = 2) -> str:
    return json.dumps(document, indent=indent, sort_keys=False)
