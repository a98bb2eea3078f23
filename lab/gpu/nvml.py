"""The one module that talks to NVML, through nvidia-ml-py's ``pynvml`` (never torch).

Everything else in the lab asks this module, so a test swaps NVML for a fake at one
boundary (``open_nvml(module=fake)``) and the host needs only nvidia-ml-py installed.
Answers come back as plain Python values:

- a field a GPU cannot report (NVML says Not Supported, No Permission ...) is ``None``;
- a GPU that fell off the bus (GPU is lost, Unknown Error) raises :class:`DeviceError`
  for that GPU only, so a report can say so and carry on with the others;
- NVML unusable as a whole (no library, driver not loaded, no GPU) raises
  :class:`NvmlUnavailable` with NVML's reason and what to do about it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

# Per-field answers that mean "this GPU does not tell you that": shown as n/a.
_NOT_AVAILABLE = (
    "NOT_SUPPORTED",
    "NO_PERMISSION",
    "NO_DATA",
    "NOT_FOUND",
    "FUNCTION_NOT_FOUND",
    "NOT_READY",
)
# Answers that mean the GPU itself is gone until a reset or reboot.
_LOST = ("GPU_IS_LOST", "UNKNOWN", "RESET_REQUIRED", "GPU_NOT_FOUND")

DRIVER_ADVICE = (
    "install the NVIDIA driver on the host (`nvidia-smi` should then work); inside Docker, "
    "install the NVIDIA Container Toolkit on the host and give the container the GPU with "
    "NVIDIA_DRIVER_CAPABILITIES including `utility` (e.g. compute,utility)"
)
_ADVICE = {
    "DRIVER_NOT_LOADED": "the NVIDIA kernel module is not loaded: reboot after installing the "
    "driver (or `sudo modprobe nvidia`), then check `nvidia-smi`",
    "NO_PERMISSION": "this user may not open the GPU device files (/dev/nvidia*): check their "
    "permissions, or run where the GPU is passed through",
    "LIB_RM_VERSION_MISMATCH": "the driver was updated but the old kernel module is still "
    "loaded: reboot",
}
NO_GPU_ADVICE = (
    "check `nvidia-smi`; inside Docker, give the container the GPU (compose "
    "deploy.resources.reservations.devices with count: all, or `docker run --gpus all`) and "
    "check NVIDIA_VISIBLE_DEVICES"
)


class NvmlUnavailable(Exception):
    """NVML cannot be used here at all; ``str()`` is the one-line message for people."""

    def __init__(self, reason: str, advice: str) -> None:
        super().__init__(f"no usable NVIDIA GPU/driver (NVML: {reason}): {advice}")
        self.reason = reason
        self.advice = advice


class DeviceError(Exception):
    """One GPU stopped answering; ``lost`` when NVML says it is gone (not just erroring)."""

    def __init__(self, reason: str, lost: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lost = lost


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory_bytes: int | None  # None: NVML cannot attribute memory (e.g. under WDDM, MIG)
    kind: str  # "C" compute, "G" graphics, "C+G" both


def open_nvml(module: ModuleType | object | None = None) -> Nvml:
    """Initialise NVML and check there is a GPU; the caller closes it (or uses ``with``)."""
    if module is None:
        try:
            module = importlib.import_module("pynvml")
        except ImportError:
            raise NvmlUnavailable(
                "the nvidia-ml-py package is not installed", "pip install nvidia-ml-py"
            ) from None
    try:
        module.nvmlInit()
    except module.NVMLError as exc:
        raise NvmlUnavailable(str(exc), _advice(module, exc)) from None
    nvml = Nvml(module)
    try:
        count = module.nvmlDeviceGetCount()
    except module.NVMLError as exc:
        nvml.close()
        raise NvmlUnavailable(str(exc), _advice(module, exc)) from None
    if count == 0:
        nvml.close()
        raise NvmlUnavailable(
            "the driver is loaded but sees no GPU (device count 0)", NO_GPU_ADVICE
        )
    return nvml


def _codes(module, names) -> set[int]:
    return {
        getattr(module, f"NVML_ERROR_{name}")
        for name in names
        if hasattr(module, f"NVML_ERROR_{name}")
    }


def _advice(module, exc) -> str:
    for name, advice in _ADVICE.items():
        if getattr(exc, "value", None) == getattr(module, f"NVML_ERROR_{name}", None):
            return advice
    return DRIVER_ADVICE


class Nvml:
    """An initialised NVML session. Handles come from :meth:`device`; getters take them."""

    def __init__(self, module) -> None:
        self._m = module
        self._not_available = _codes(module, _NOT_AVAILABLE)
        self._lost = _codes(module, _LOST)
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._m.nvmlShutdown()
            except self._m.NVMLError:
                pass  # shutting down a session whose GPU vanished: nothing left to release

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, function: str, *args):
        fn = getattr(self._m, function, None)
        if fn is None:  # an older binding without this call: same as unsupported
            return None
        try:
            return fn(*args)
        except self._m.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in self._not_available:
                return None
            raise DeviceError(str(exc), lost=code in self._lost) from None

    # -- system ---------------------------------------------------------------------------
    def driver_version(self) -> str | None:
        try:
            return self._call("nvmlSystemGetDriverVersion")
        except DeviceError:
            return None

    def cuda_version(self) -> str | None:
        """The newest CUDA the driver supports, as "13.0" (NVML answers 13000)."""
        try:
            value = self._call("nvmlSystemGetCudaDriverVersion")
        except DeviceError:
            return None
        return None if value is None else f"{value // 1000}.{value % 1000 // 10}"

    def device_count(self) -> int:
        return self._call("nvmlDeviceGetCount") or 0

    def device(self, index: int):
        handle = self._call("nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            raise DeviceError("NVML returned no handle", lost=False)
        return handle

    # -- per device (also MIG device handles, where NVML supports the field) -------------
    def name(self, handle) -> str | None:
        return self._call("nvmlDeviceGetName", handle)

    def uuid(self, handle) -> str | None:
        return self._call("nvmlDeviceGetUUID", handle)

    def utilization(self, handle) -> tuple[int, int] | None:
        """(gpu %, memory-controller %) over NVML's last sample period."""
        rates = self._call("nvmlDeviceGetUtilizationRates", handle)
        return None if rates is None else (rates.gpu, rates.memory)

    def memory(self, handle) -> tuple[int, int] | None:
        """(used bytes, total bytes)."""
        info = self._call("nvmlDeviceGetMemoryInfo", handle)
        return None if info is None else (info.used, info.total)

    def temperature_c(self, handle) -> int | None:
        return self._call("nvmlDeviceGetTemperature", handle, self._m.NVML_TEMPERATURE_GPU)

    def power_w(self, handle) -> float | None:
        milliwatts = self._call("nvmlDeviceGetPowerUsage", handle)
        return None if milliwatts is None else milliwatts / 1000

    def power_limit_w(self, handle) -> float | None:
        milliwatts = self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
        return None if milliwatts is None else milliwatts / 1000

    def processes(self, handle) -> list[GpuProcess] | None:
        """Compute and graphics processes, one entry per pid; None if NVML cannot list them."""
        compute = self._call("nvmlDeviceGetComputeRunningProcesses", handle)
        graphics = self._call("nvmlDeviceGetGraphicsRunningProcesses", handle)
        if compute is None and graphics is None:
            return None
        merged: dict[int, GpuProcess] = {}
        for kind, listed in (("C", compute or []), ("G", graphics or [])):
            for proc in listed:
                used = getattr(proc, "usedGpuMemory", None)
                seen = merged.get(proc.pid)
                if seen is not None:  # the same process doing both: report it once
                    known = [m for m in (seen.used_memory_bytes, used) if m is not None]
                    kind_both = seen.kind if kind in seen.kind else f"{seen.kind}+{kind}"
                    merged[proc.pid] = GpuProcess(proc.pid, max(known, default=None), kind_both)
                else:
                    merged[proc.pid] = GpuProcess(proc.pid, used, kind)
        return sorted(merged.values(), key=lambda p: p.pid)

    def mig_enabled(self, handle) -> bool | None:
        """Current MIG mode; None when the GPU has no MIG (NVML: Not Supported)."""
        modes = self._call("nvmlDeviceGetMigMode", handle)
        return None if modes is None else modes[0] == self._m.NVML_DEVICE_MIG_ENABLE

    def mig_devices(self, handle) -> list[tuple[int, object]]:
        """(slot, MIG handle) for every populated MIG slot of a GPU in MIG mode."""
        slots = self._call("nvmlDeviceGetMaxMigDeviceCount", handle) or 0
        found = []
        for slot in range(slots):
            mig = self._call("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
            if mig is not None:  # Not Found: an empty slot
                found.append((slot, mig))
        return found

    def mig_instance_ids(self, mig_handle) -> tuple[int | None, int | None]:
        """(GPU instance id, compute instance id) of a MIG device."""
        return (
            self._call("nvmlDeviceGetGpuInstanceId", mig_handle),
            self._call("nvmlDeviceGetComputeInstanceId", mig_handle),
        )
