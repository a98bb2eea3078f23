"""The one module that talks to NVML, through nvidia-ml-py's ``pynvml`` (never torch).

Everything else in the lab asks this module, so tests swap NVML out at one boundary (the
binding's loaded library, or ``open_nvml(module=...)``) and the host needs only
nvidia-ml-py. Answers come back as plain Python values (``str``, never ``bytes``):

- each field fails on its own: a field NVML will not give (Not Supported, No Permission,
  Timeout, Unknown ...) is ``None``, and the reason is kept in :attr:`Nvml.field_errors`
  unless it is plain "not supported";
- only a GPU that is really gone (GPU is lost, reset required) raises :class:`DeviceError`
  with ``lost=True``, so a report can say so and carry on with the others;
- NVML unusable as a whole (no library, driver not loaded, no GPU) raises
  :class:`NvmlUnavailable` with NVML's reason and what to do about it.

One module on purpose (gpustat's rule): every NVML call of the lab is here and nowhere else.
Calls that changed with driver generations try the newest symbol first and fall back
(``_v3`` → ``_v2`` process lists, ``nvmlMemory_v2`` → v1, ``TemperatureV`` → the old call),
as gpustat and nvitop do: an old driver answers "Function Not Found", and some binding
wrappers turn that into ``NVMLLibraryMismatchError``, a plain ``Exception``.
"""

from __future__ import annotations

import ctypes
import importlib
import sys
import time
from dataclasses import dataclass
from types import ModuleType

# Per-field answers that only mean "this GPU does not tell you that": n/a, nothing to report.
_NOT_AVAILABLE = ("NOT_SUPPORTED", "NOT_FOUND", "FUNCTION_NOT_FOUND", "NO_DATA")
# Answers that mean the GPU itself is gone until a reset or reboot.
_LOST = ("GPU_IS_LOST", "RESET_REQUIRED")
_MISSING = ("FUNCTION_NOT_FOUND", "ARGUMENT_VERSION_MISMATCH")  # try an older call

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
NOT_AVAILABLE_ULL = 2**64 - 1  # NVML's "no value" for a 64-bit counter (e.g. memory under WDDM)
# NVML failing like this means a GPU is there but nothing can use it: every GPU container fails
UNUSABLE = ("DRIVER_NOT_LOADED", "LIB_RM_VERSION_MISMATCH", "NO_PERMISSION")
MACOS = "there is no NVIDIA GPU on macOS (CUDA does not run on a Mac): lessons run on the CPU"
# Per-process SM %: the first query of a GPU reads NVML's samples of this many last seconds
SM_WINDOW_S = 2.0
# nvmlDeviceGetPcieThroughput samples for ~20 ms before it answers: read it this seldom
PCIE_THROUGHPUT_EVERY_S = 10.0


def _now_us() -> int:  # NVML's sample timestamps: CPU time in microseconds since the epoch
    return int(time.time() * 1_000_000)


def _monotonic() -> float:
    return time.monotonic()


class NvmlUnavailable(Exception):
    """NVML cannot be used here at all; ``str()`` is the one-line message for people.
    ``code``: NVML's error name (``DRIVER_NOT_LOADED`` ...) when NVML itself refused."""

    def __init__(
        self, reason: str, advice: str, code: str | None = None, message: str | None = None
    ) -> None:
        super().__init__(message or f"no usable NVIDIA GPU/driver (NVML: {reason}): {advice}")
        self.reason = reason
        self.advice = advice
        self.code = code

    @property
    def gpu_unusable(self) -> bool:
        """A GPU and driver are there, but nothing can use them (reboot, permissions)."""
        return self.code in UNUSABLE


class DeviceError(Exception):
    """A GPU (not one field of it) stopped answering; ``lost`` when NVML says it is gone."""

    def __init__(self, reason: str, lost: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lost = lost


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory_bytes: int | None  # None: NVML cannot attribute memory (e.g. under WDDM)
    kind: str  # "C" compute, "G" graphics, "C+G" both
    gpu_instance_id: int | None = None  # the MIG instance it runs in; None outside MIG
    compute_instance_id: int | None = None


def text(value) -> str | None:
    """NVML strings as ``str``: an old binding (``pynvml``, ``nvidia-ml-py3``) gives bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def open_nvml(module: ModuleType | object | None = None) -> Nvml:
    """Initialise NVML and check there is a GPU; the caller closes it (or uses ``with``)."""
    if module is None and sys.platform == "darwin":
        raise NvmlUnavailable("macOS", "lessons run on the CPU", message=MACOS)
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
        raise _unavailable(module, exc) from None
    nvml = Nvml(module)
    try:
        count = module.nvmlDeviceGetCount()
    except module.NVMLError as exc:
        nvml.close()
        raise _unavailable(module, exc) from None
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


def _code(module, exc) -> str | None:
    value = getattr(exc, "value", None)
    for name in dir(module):
        if name.startswith("NVML_ERROR_") and getattr(module, name) == value:
            return name.removeprefix("NVML_ERROR_")
    return None


def _unavailable(module, exc) -> NvmlUnavailable:
    code = _code(module, exc)
    return NvmlUnavailable(str(exc), _ADVICE.get(code, DRIVER_ADVICE), code)


def _key(handle) -> int:
    """A device handle as a dict key (the binding's handles are ctypes pointers)."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value or 0
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


class Nvml:
    """An initialised NVML session. Handles come from :meth:`device`; getters take them."""

    def __init__(self, module) -> None:
        self._m = module
        self._not_available = _codes(module, _NOT_AVAILABLE)
        self._lost = _codes(module, _LOST)
        self._missing = _codes(module, _MISSING)
        # a plain Exception in the binding, raised for an old driver's missing symbol
        self._mismatch = getattr(module, "NVMLLibraryMismatchError", ())
        self.field_errors: list[str] = []  # "field: reason" for fields that failed oddly
        self._open = True
        self._sm_seen: dict[int, int] = {}  # handle -> newest SM sample timestamp read
        self._pcie: dict[int, tuple[float, int | None, int | None]] = {}  # handle -> (when, tx, rx)

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

    def constant(self, name: str, default=None):
        return getattr(self._m, name, default)

    def _call(self, *attempts):
        """The first of ``(function, *args)`` attempts this driver and binding answer.

        Not there (older binding, older driver) → the next attempt; not supported → None;
        another field error → None, noted in ``field_errors``; GPU gone → DeviceError.
        """
        for function, *args in attempts:
            fn = getattr(self._m, function, None)
            if fn is None:
                continue
            try:
                return fn(*args)
            except self._m.NVMLError as exc:
                code = getattr(exc, "value", None)
                if code in self._missing:
                    continue
                if code in self._lost:
                    raise DeviceError(str(exc), lost=True) from None
                if code not in self._not_available:
                    self.field_errors.append(f"{function}: {exc}")
                return None
            except TypeError:  # an older binding without this variant's argument
                continue
            except Exception as exc:
                if self._mismatch and isinstance(exc, self._mismatch):  # a bare Exception
                    continue
                raise
        return None

    # -- system ---------------------------------------------------------------------------
    def driver_version(self) -> str | None:
        return text(self._system("nvmlSystemGetDriverVersion"))

    def cuda_version(self) -> str | None:
        """The newest CUDA the driver supports, as "13.0" (NVML answers 13000)."""
        value = self._system("nvmlSystemGetCudaDriverVersion")
        return None if value is None else f"{value // 1000}.{value % 1000 // 10}"

    def _system(self, function: str):
        try:
            return self._call((function,))
        except DeviceError:
            return None

    def device_count(self) -> int:
        return self._call(("nvmlDeviceGetCount",)) or 0

    def device(self, index: int):
        """The handle of GPU ``index``; DeviceError when NVML will not give it."""
        try:
            return self._m.nvmlDeviceGetHandleByIndex(index)
        except self._m.NVMLError as exc:
            raise DeviceError(str(exc), lost=getattr(exc, "value", None) in self._lost) from None

    # -- per device (also MIG device handles, where NVML supports the field) -------------
    def name(self, handle) -> str | None:
        return text(self._call(("nvmlDeviceGetName", handle)))

    def uuid(self, handle) -> str | None:
        return text(self._call(("nvmlDeviceGetUUID", handle)))

    def pci_bus_id(self, handle) -> str | None:
        info = self._call(("nvmlDeviceGetPciInfo_v3", handle), ("nvmlDeviceGetPciInfo", handle))
        return None if info is None else text(info.busId)

    def utilization(self, handle) -> tuple[int, int] | None:
        """(gpu %, memory-controller %) over NVML's last sample period."""
        rates = self._call(("nvmlDeviceGetUtilizationRates", handle))
        return None if rates is None else (rates.gpu, rates.memory)

    def memory(self, handle) -> tuple[int, int] | None:
        """(used bytes, total bytes), as nvidia-smi counts them: the v2 struct leaves the
        driver's reserved memory out of "used"; v1 (older drivers) counts it in."""
        version = self.constant("nvmlMemory_v2")
        attempts = [("nvmlDeviceGetMemoryInfo", handle)]
        if version is not None:
            attempts.insert(0, ("nvmlDeviceGetMemoryInfo", handle, version))
        info = self._call(*attempts)
        return None if info is None else (info.used, info.total)

    def temperature_c(self, handle) -> int | None:
        sensor = self.constant("NVML_TEMPERATURE_GPU", 0)
        return self._call(
            ("nvmlDeviceGetTemperatureV", handle, sensor),
            ("nvmlDeviceGetTemperature", handle, sensor),
        )

    def power_w(self, handle) -> float | None:
        milliwatts = self._call(("nvmlDeviceGetPowerUsage", handle))
        return None if milliwatts is None else milliwatts / 1000

    def power_limit_w(self, handle) -> float | None:
        milliwatts = self._call(("nvmlDeviceGetEnforcedPowerLimit", handle))
        return None if milliwatts is None else milliwatts / 1000

    def fan_percent(self, handle) -> int | None:
        return self._call(("nvmlDeviceGetFanSpeed", handle))

    def performance_state(self, handle) -> str | None:
        state = self._call(("nvmlDeviceGetPerformanceState", handle))
        return None if state is None or state == 32 else f"P{state}"  # 32: unknown

    def clocks_mhz(self, handle) -> tuple[int | None, int | None]:
        """(SM clock, memory clock) in MHz."""
        return (
            self._call(("nvmlDeviceGetClockInfo", handle, self.constant("NVML_CLOCK_SM", 1))),
            self._call(("nvmlDeviceGetClockInfo", handle, self.constant("NVML_CLOCK_MEM", 2))),
        )

    def clocks_event_reasons(self, handle) -> int | None:
        """Why clocks are held down (bit mask; "throttle reasons" before R535)."""
        return self._call(
            ("nvmlDeviceGetCurrentClocksEventReasons", handle),
            ("nvmlDeviceGetCurrentClocksThrottleReasons", handle),
        )

    def ecc_uncorrected_volatile(self, handle) -> int | None:
        return self._call(
            (
                "nvmlDeviceGetTotalEccErrors",
                handle,
                self.constant("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1),
                self.constant("NVML_VOLATILE_ECC", 0),
            )
        )

    def pcie(self, handle) -> dict:
        """Current link generation and width, and throughput in KiB/s. NVML measures the
        throughput for ~20 ms per call, so it is read at most every PCIE_THROUGHPUT_EVERY_S
        per GPU: a ``--watch`` frame does not wait for it."""
        now, key = _monotonic(), _key(handle)
        when, tx, rx = self._pcie.get(key, (None, None, None))
        if when is None or now - when >= PCIE_THROUGHPUT_EVERY_S:
            tx, rx = (
                self._call(("nvmlDeviceGetPcieThroughput", handle, self.constant(name, default)))
                for name, default in (
                    ("NVML_PCIE_UTIL_TX_BYTES", 0),
                    ("NVML_PCIE_UTIL_RX_BYTES", 1),
                )
            )
            self._pcie[key] = (now, tx, rx)
        return {
            "generation": self._call(("nvmlDeviceGetCurrPcieLinkGeneration", handle)),
            "width": self._call(("nvmlDeviceGetCurrPcieLinkWidth", handle)),
            "tx_kib_s": tx,
            "rx_kib_s": rx,
        }

    def processes(self, handle) -> tuple[list[GpuProcess], bool] | None:
        """(compute and graphics processes, one entry per pid; whether both lists came).
        None when NVML listed neither: "no processes" is only said when both answered."""
        compute = self._call(
            ("nvmlDeviceGetComputeRunningProcesses_v3", handle),
            ("nvmlDeviceGetComputeRunningProcesses_v2", handle),
            ("nvmlDeviceGetComputeRunningProcesses", handle),
        )
        graphics = self._call(
            ("nvmlDeviceGetGraphicsRunningProcesses_v3", handle),
            ("nvmlDeviceGetGraphicsRunningProcesses_v2", handle),
            ("nvmlDeviceGetGraphicsRunningProcesses", handle),
        )
        if compute is None and graphics is None:
            return None
        merged: dict[int, GpuProcess] = {}
        for kind, listed in (("C", compute or []), ("G", graphics or [])):
            for proc in listed:
                merge_process(merged, _process(proc, kind))
        complete = compute is not None and graphics is not None
        return sorted(merged.values(), key=lambda p: p.pid), complete

    def process_sm_percent(self, handle) -> dict[int, int] | None:
        """{pid: SM %}: per pid, the newest of NVML's samples taken since this session last
        asked about this GPU (the first time: the last SM_WINDOW_S). A pid without a sample
        was idle: NVML samples only what ran (``{}`` when nothing did). None when the GPU
        does not tell."""
        key = _key(handle)
        since = self._sm_seen.get(key) or _now_us() - int(SM_WINDOW_S * 1_000_000)
        try:
            samples = self._m.nvmlDeviceGetProcessUtilization(handle, since)
        except AttributeError:
            return None
        except self._m.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == self.constant("NVML_ERROR_NOT_FOUND"):
                return {}  # no sample since then: nothing ran
            if code in self._lost:
                raise DeviceError(str(exc), lost=True) from None
            if code not in self._not_available:
                self.field_errors.append(f"nvmlDeviceGetProcessUtilization: {exc}")
            return None
        newest: dict[int, tuple[int, int]] = {}  # pid -> (timestamp, SM %)
        for sample in samples:
            if sample.timeStamp > since and sample.timeStamp >= newest.get(sample.pid, (0, 0))[0]:
                newest[sample.pid] = (sample.timeStamp, sample.smUtil)
        self._sm_seen[key] = max([since, *(stamp for stamp, _ in newest.values())])
        return {pid: sm for pid, (_, sm) in newest.items()}

    def mig_mode(self, handle) -> tuple[bool, bool] | None:
        """(MIG on now, MIG on after the pending change); None when the GPU has no MIG."""
        modes = self._call(("nvmlDeviceGetMigMode", handle))
        if modes is None:
            return None
        enable = self.constant("NVML_DEVICE_MIG_ENABLE", 1)
        return modes[0] == enable, modes[1] == enable

    def mig_devices(self, handle) -> list[tuple[int, object]]:
        """(slot, MIG handle) for every populated MIG slot of a GPU in MIG mode."""
        slots = self._call(("nvmlDeviceGetMaxMigDeviceCount", handle)) or 0
        found = []
        for slot in range(slots):
            mig = self._call(("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot))
            if mig is not None:  # Not Found: an empty slot
                found.append((slot, mig))
        return found

    def mig_instance_ids(self, mig_handle) -> tuple[int | None, int | None]:
        """(GPU instance id, compute instance id) of a MIG device."""
        return (
            self._call(("nvmlDeviceGetGpuInstanceId", mig_handle)),
            self._call(("nvmlDeviceGetComputeInstanceId", mig_handle)),
        )


def merge_process(merged: dict[int, GpuProcess], found: GpuProcess) -> None:
    """Add ``found`` to ``{pid: process}``; the same process doing both kinds (or seen from
    the parent and its MIG device) is reported once."""
    seen = merged.get(found.pid)
    if seen is not None:
        known = [m for m in (seen.used_memory_bytes, found.used_memory_bytes) if m is not None]
        kinds = sorted(set(seen.kind.split("+")) | set(found.kind.split("+")))
        found = GpuProcess(
            found.pid,
            max(known, default=None),
            "+".join(kinds),
            seen.gpu_instance_id if seen.gpu_instance_id is not None else found.gpu_instance_id,
            seen.compute_instance_id
            if seen.compute_instance_id is not None
            else found.compute_instance_id,
        )
    merged[found.pid] = found


def _process(proc, kind: str) -> GpuProcess:
    used = getattr(proc, "usedGpuMemory", None)
    if used == NOT_AVAILABLE_ULL:
        used = None
    ids = [getattr(proc, name, None) for name in ("gpuInstanceId", "computeInstanceId")]
    # 0xFFFFFFFF: not in a MIG instance
    ids = [None if value is None or value >= 0xFFFFFFFF else value for value in ids]
    return GpuProcess(proc.pid, used, kind, *ids)
