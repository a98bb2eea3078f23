"""Which NVML device each CUDA index is, as CUDA itself enumerates them.

CUDA numbers only what ``CUDA_VISIBLE_DEVICES`` lets through, in the order listed there
(indices, ``GPU-`` UUIDs or their unique prefixes, ``MIG-`` UUIDs); an entry it cannot
resolve ends the list, a repeated one leaves no device. A GPU in MIG mode shows as one of
its MIG devices, and a CUDA process sees one MIG device at most; a GPU in MIG mode without
any MIG device is no CUDA device at all (skipped: the GPUs after it take its CUDA index).
NVML counts every GPU of the machine, so NVML index and CUDA index differ as soon as that
variable is set.

Mixed GPU models with CUDA's default ``CUDA_DEVICE_ORDER=FASTEST_FIRST`` can reorder
indices; callers that have torch pass the UUID CUDA reports (``uuid_of``), which wins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lab.gpu.nvml import DeviceError, Nvml


@dataclass(frozen=True)
class CudaDevice:
    cuda_index: int
    nvml_index: int  # the physical GPU (the parent of a MIG device)
    handle: object  # what to sample: the GPU, or the MIG device CUDA uses
    parent: object  # the physical GPU's handle (power, clocks live there)
    uuid: str | None
    mig_slot: int | None = None


@dataclass(frozen=True)
class _Candidate:
    nvml_index: int
    handle: object
    parent: object
    uuid: str | None
    mig_slot: int | None
    mig_ids: tuple | None = None


def _physical(nvml: Nvml) -> list[tuple[int, object, str | None, list[_Candidate] | None]]:
    """(NVML index, handle, uuid, MIG devices: a list when MIG is on, else None) for every
    GPU; a lost one keeps its place in the order, with no handle."""
    found = []
    for index in range(nvml.device_count()):
        try:
            handle = nvml.device(index)
            mode = nvml.mig_mode(handle)
            migs = None
            if mode and mode[0]:
                migs = []
                for slot, mig in nvml.mig_devices(handle):
                    ids = nvml.mig_instance_ids(mig)
                    migs.append(_Candidate(index, mig, handle, nvml.uuid(mig), slot, ids))
            found.append((index, handle, nvml.uuid(handle), migs))
        except DeviceError:
            found.append((index, None, None, None))
    return found


def _match_uuid(wanted: str, uuids: list[str | None]) -> int | None:
    """Index of the one UUID that ``wanted`` names (CUDA accepts unique prefixes)."""
    hits = [i for i, uuid in enumerate(uuids) if uuid and uuid.startswith(wanted)]
    return hits[0] if len(hits) == 1 else None


def cuda_devices(nvml: Nvml, environ: Mapping[str, str] | None = None) -> list[CudaDevice]:
    """The devices CUDA numbers 0, 1, ... in this process's environment."""
    environ = os.environ if environ is None else environ
    gpus = _physical(nvml)
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    wanted = (
        [str(index) for index, *_ in gpus]
        if listed is None
        else [part.strip() for part in listed.split(",")]
    )
    migs = [mig for *_, gpu_migs in gpus for mig in gpu_migs or []]
    picked: list[_Candidate] = []
    for identifier in wanted:
        candidate = _resolve(identifier, gpus, migs)
        if candidate is None:
            break  # CUDA stops at the first entry it cannot resolve
        if candidate == "skip":
            continue
        if any(seen.handle is candidate.handle for seen in picked):
            return []  # a repeated device: CUDA sees none
        picked.append(candidate)
        if candidate.mig_slot is not None:
            break  # one MIG device per CUDA process
    return [
        CudaDevice(cuda_index, c.nvml_index, c.handle, c.parent, c.uuid, c.mig_slot)
        for cuda_index, c in enumerate(picked)
    ]


def _resolve(identifier: str, gpus, migs: list[_Candidate]):
    """The candidate ``identifier`` names, "skip" for a MIG GPU without MIG devices, None
    for something CUDA cannot resolve."""
    if identifier.startswith("MIG-GPU-"):  # legacy MIG-GPU-<uuid>/<gi>/<ci>
        parent_uuid, _, ids = identifier[len("MIG-") :].partition("/")
        return next(
            (
                m
                for m in migs
                if gpus[m.nvml_index][2] == parent_uuid and "/".join(map(str, m.mig_ids)) == ids
            ),
            None,
        )
    if identifier.startswith("MIG-"):
        hit = _match_uuid(identifier, [m.uuid for m in migs])
        return None if hit is None else migs[hit]
    if identifier.startswith("GPU-"):
        hit = _match_uuid(identifier, [uuid for _, _, uuid, _ in gpus])
    elif identifier.isdigit():
        hit = int(identifier) if int(identifier) < len(gpus) else None
    else:
        return None
    if hit is None or gpus[hit][1] is None:
        return None
    index, handle, uuid, gpu_migs = gpus[hit]
    if gpu_migs is not None:  # MIG mode: CUDA uses its first MIG device, or none at all
        return gpu_migs[0] if gpu_migs else "skip"
    return _Candidate(index, handle, handle, uuid, None)


def device_for(
    nvml: Nvml,
    cuda_index: int,
    environ: Mapping[str, str] | None = None,
    uuid_of: Callable[[int], str | None] | None = None,
) -> CudaDevice | None:
    """The NVML device behind CUDA index ``cuda_index``; None when there is none."""
    devices = cuda_devices(nvml, environ)
    listed = devices[cuda_index] if 0 <= cuda_index < len(devices) else None
    uuid = uuid_of(cuda_index) if uuid_of else None
    if uuid:  # CUDA's own answer beats reconstructing its order
        bare = uuid.removeprefix("GPU-").removeprefix("MIG-")
        for index, handle, gpu_uuid, migs in _physical(nvml):
            if gpu_uuid and gpu_uuid.split("-", 1)[-1] == bare:
                if migs is not None:  # CUDA named a GPU in MIG mode: its slice is what it uses
                    return listed if listed and listed.nvml_index == index else None
                return CudaDevice(cuda_index, index, handle, handle, gpu_uuid)
            for mig in migs or []:
                if mig.uuid and mig.uuid.split("-", 1)[-1] == bare:
                    return CudaDevice(
                        cuda_index, index, mig.handle, mig.parent, mig.uuid, mig.mig_slot
                    )
    return listed


def cuda_index_of(devices: list[CudaDevice], nvml_index: int, mig_slot: int | None = None):
    """The CUDA index of an NVML GPU (or one of its MIG devices); None when CUDA hides it."""
    for device in devices:
        if device.nvml_index == nvml_index and device.mig_slot == mig_slot:
            return device.cuda_index
    return None
