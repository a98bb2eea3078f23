"""A fake NVML *library* under the real nvidia-ml-py binding: GPUs described as data.

The binding looks every C function up on its loaded library (``pynvml.nvmlLib``, through
``_nvmlGetFunctionPointer``). :class:`FakeNvmlLibrary` stands in for ``libnvidia-ml.so.1``:
attribute lookup plays ``dlsym`` (a symbol an old driver lacks raises AttributeError, which
the binding turns into "Function Not Found"), and each function answers per symbol with a
return code after filling the binding's own ctypes structs and buffers. So return types,
struct versions, the ``_v3`` → mismatch path and exception classes are the binding's own.

``install(monkeypatch, lib)`` swaps it in; ``OldBinding`` plays an old ``pynvml`` /
``nvidia-ml-py3`` (bytes strings, no newer calls) over the same fake library.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field

import pynvml as real
import pytest

MIB = 1024 * 1024
SUCCESS = real.NVML_SUCCESS
NOT_SUPPORTED = real.NVML_ERROR_NOT_SUPPORTED
NOT_FOUND = real.NVML_ERROR_NOT_FOUND
INVALID = real.NVML_ERROR_INVALID_ARGUMENT
NO_MIG = 0xFFFFFFFF  # NVML's instance id for a process outside MIG

# what drivers before R510 lack (gpustat#107, nvitop: *_v3 process lists appeared in R510)
PRE_R510 = frozenset(
    {
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
        "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceGetTemperatureV",
        "nvmlDeviceGetCurrentClocksEventReasons",
    }
)


@dataclass
class FakeMig:
    slot: int
    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    gpu_instance_id: int = 1
    compute_instance_id: int = 0
    memory_used: int = 100 * MIB
    memory_total: int = 4864 * MIB
    lost: bool = False
    errors: dict = field(default_factory=dict)  # C symbol -> NVML return code


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    bus_id: str = "00000000:17:00.0"
    utilization: tuple[int, int] = (87, 45)
    memory_used: int = 12_345 * MIB  # what nvidia-smi shows (the v2 struct's "used")
    memory_reserved: int = 544 * MIB  # the driver's; v1's "used" counts it in
    memory_total: int = 81_559 * MIB
    temperature: int = 54
    power_mw: int = 312_400
    power_limit_mw: int = 700_000
    fan: int = 41
    pstate: int = 0
    clocks: tuple[int, int] = (1980, 2619)  # SM, memory MHz
    clocks_event_reasons: int = 0x4  # SW power cap
    ecc_uncorrected: int = 0
    pcie: tuple[int, int, int, int] = (5, 16, 1200, 3400)  # gen, width, tx, rx KiB/s
    # (pid, bytes or None, gpu instance, compute instance)
    compute: list[tuple] = field(default_factory=list)
    graphics: list[tuple] = field(default_factory=list)
    # pid -> SM % sampled just now, or [(pid, SM %, timestamp in µs)] in NVML's buffer order
    sm_samples: dict | list = field(default_factory=dict)
    mig: list[FakeMig] | None = None  # None: the GPU has no MIG (Not Supported)
    mig_enabled: bool | None = None  # MIG mode now; None: on when it has MIG devices
    mig_pending: bool | None = None  # MIG mode after the next reset; None: as now
    mig_slots: int = 7
    lost: bool = False  # every call on it answers GPU is lost
    errors: dict = field(default_factory=dict)  # C symbol -> NVML return code


def _out(reference):
    """The ctypes object behind ``byref(x)``."""
    return reference._obj


def _value(argument):
    return getattr(argument, "value", argument)


def _encode(buffer, value: str) -> None:
    buffer.value = value.encode()


class FakeNvmlLibrary:
    """``FakeNvmlLibrary([FakeGpu(), ...], missing=PRE_R510)``: a stand-in for the .so."""

    def __init__(
        self,
        gpus: list[FakeGpu],
        driver: str = "580.65.06",
        cuda: int = 13000,
        init_error: int | None = None,
        missing: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        self.init_error = init_error
        self.missing = set(missing)
        self.initialised = 0  # init calls minus shutdown calls
        self.calls: list[tuple[str, str | None]] = []  # (symbol, device uuid)
        self.sm_since: list[int] = []  # the timestamps nvmlDeviceGetProcessUtilization got
        self._symbols: dict[str, object] = {}
        self._handles: dict[int, FakeGpu | FakeMig] = {}
        self._parents: dict[int, FakeGpu] = {}
        for index, gpu in enumerate(gpus):
            self._handles[(index + 1) << 12] = gpu
            for mig in gpu.mig or []:
                key = ((index + 1) << 12) + ((mig.slot + 1) << 4)
                self._handles[key] = mig
                self._parents[key] = gpu

    # -- dlsym ----------------------------------------------------------------------------
    def __getattr__(self, symbol: str):
        if symbol.startswith("_") or symbol in self.missing:
            raise AttributeError(symbol)
        implementation = getattr(type(self), f"c_{symbol}", None)
        if implementation is None:
            raise AttributeError(symbol)  # a symbol this fake does not export
        symbols = self.__dict__["_symbols"]
        if symbol not in symbols:

            def function(*args):  # a plain function: the binding sets .restype on some
                return implementation(self, *args)

            symbols[symbol] = function
        return symbols[symbol]

    def _device(self, symbol: str, handle):
        """(the device, None) or (None, the return code the call must give)."""
        key = ctypes.cast(handle, ctypes.c_void_p).value
        device = self._handles.get(key)
        self.calls.append((symbol, getattr(device, "uuid", None)))
        if device is None:
            return None, INVALID
        if device.lost or (key in self._parents and self._parents[key].lost):
            return None, real.NVML_ERROR_GPU_IS_LOST
        code = device.errors.get(symbol)
        return (None, code) if code is not None else (device, SUCCESS)

    def _set_handle(self, reference, key: int) -> None:
        ctypes.c_void_p.from_buffer(_out(reference)).value = key

    # -- library & system -----------------------------------------------------------------
    def c_nvmlInitWithFlags(self, flags):
        if self.init_error is not None:
            return self.init_error
        self.initialised += 1
        return SUCCESS

    def c_nvmlShutdown(self):
        self.initialised -= 1
        return SUCCESS

    def c_nvmlErrorString(self, code):
        return f"Fake NVML error {_value(code)}".encode()

    def c_nvmlSystemGetDriverVersion(self, buffer, size):
        _encode(buffer, self.driver)
        return SUCCESS

    def c_nvmlSystemGetCudaDriverVersion(self, reference):
        _out(reference).value = self.cuda
        return SUCCESS

    def c_nvmlDeviceGetCount_v2(self, reference):
        _out(reference).value = len(self.gpus)
        return SUCCESS

    def c_nvmlDeviceGetHandleByIndex_v2(self, index, reference):
        index = _value(index)
        if not 0 <= index < len(self.gpus):
            return INVALID
        code = self.gpus[index].errors.get("nvmlDeviceGetHandleByIndex_v2")
        if code is not None:
            return code
        self._set_handle(reference, (index + 1) << 12)
        return SUCCESS

    # -- per device -----------------------------------------------------------------------
    def _answer(self, symbol, handle, fill):
        device, code = self._device(symbol, handle)
        if device is None:
            return code
        return fill(device) or SUCCESS

    def c_nvmlDeviceGetName(self, handle, buffer, size):
        return self._answer("nvmlDeviceGetName", handle, lambda d: _encode(buffer, d.name))

    def c_nvmlDeviceGetUUID(self, handle, buffer, size):
        return self._answer("nvmlDeviceGetUUID", handle, lambda d: _encode(buffer, d.uuid))

    def c_nvmlDeviceGetPciInfo_v3(self, handle, reference):
        def fill(device):
            if isinstance(device, FakeMig):
                return NOT_SUPPORTED
            _out(reference).busId = device.bus_id.encode()

        return self._answer("nvmlDeviceGetPciInfo_v3", handle, fill)

    def c_nvmlDeviceGetUtilizationRates(self, handle, reference):
        def fill(device):
            # NVML gives no utilization for MIG devices nor for a parent in MIG mode
            if isinstance(device, FakeMig) or device.mig:
                return NOT_SUPPORTED
            _out(reference).gpu, _out(reference).memory = device.utilization

        return self._answer("nvmlDeviceGetUtilizationRates", handle, fill)

    def c_nvmlDeviceGetMemoryInfo(self, handle, reference):
        def fill(device):  # v1: "used" includes what the driver reserved
            memory = _out(reference)
            memory.used = device.memory_used + getattr(device, "memory_reserved", 0)
            memory.total = device.memory_total
            memory.free = memory.total - memory.used

        return self._answer("nvmlDeviceGetMemoryInfo", handle, fill)

    def c_nvmlDeviceGetMemoryInfo_v2(self, handle, reference):
        def fill(device):
            memory = _out(reference)
            if memory.version != real.nvmlMemory_v2:
                return real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
            reserved = getattr(device, "memory_reserved", 0)
            memory.used, memory.reserved = device.memory_used, reserved
            memory.total = device.memory_total
            memory.free = memory.total - memory.used - reserved

        return self._answer("nvmlDeviceGetMemoryInfo_v2", handle, fill)

    def c_nvmlDeviceGetTemperatureV(self, handle, reference):
        def fill(device):
            temperature = _out(reference)
            if temperature.version != real.nvmlTemperature_v1:
                return real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
            if temperature.sensorType != real.NVML_TEMPERATURE_GPU:
                return INVALID
            temperature.temperature = device.temperature

        return self._answer("nvmlDeviceGetTemperatureV", handle, fill)

    def c_nvmlDeviceGetTemperature(self, handle, sensor, reference):
        def fill(device):
            _out(reference).value = device.temperature

        return self._answer("nvmlDeviceGetTemperature", handle, fill)

    def _scalar(self, symbol, handle, reference, attribute):
        def fill(device):
            if isinstance(device, FakeMig):
                return NOT_SUPPORTED
            _out(reference).value = getattr(device, attribute)

        return self._answer(symbol, handle, fill)

    def c_nvmlDeviceGetPowerUsage(self, handle, reference):
        return self._scalar("nvmlDeviceGetPowerUsage", handle, reference, "power_mw")

    def c_nvmlDeviceGetEnforcedPowerLimit(self, handle, reference):
        return self._scalar("nvmlDeviceGetEnforcedPowerLimit", handle, reference, "power_limit_mw")

    def c_nvmlDeviceGetFanSpeed(self, handle, reference):
        return self._scalar("nvmlDeviceGetFanSpeed", handle, reference, "fan")

    def c_nvmlDeviceGetPerformanceState(self, handle, reference):
        return self._scalar("nvmlDeviceGetPerformanceState", handle, reference, "pstate")

    def c_nvmlDeviceGetCurrentClocksEventReasons(self, handle, reference):
        symbol = "nvmlDeviceGetCurrentClocksEventReasons"
        return self._scalar(symbol, handle, reference, "clocks_event_reasons")

    def c_nvmlDeviceGetCurrentClocksThrottleReasons(self, handle, reference):
        symbol = "nvmlDeviceGetCurrentClocksThrottleReasons"
        return self._scalar(symbol, handle, reference, "clocks_event_reasons")

    def c_nvmlDeviceGetCurrPcieLinkGeneration(self, handle, reference):
        def fill(device):
            _out(reference).value = device.pcie[0]

        return self._answer("nvmlDeviceGetCurrPcieLinkGeneration", handle, fill)

    def c_nvmlDeviceGetCurrPcieLinkWidth(self, handle, reference):
        def fill(device):
            _out(reference).value = device.pcie[1]

        return self._answer("nvmlDeviceGetCurrPcieLinkWidth", handle, fill)

    def c_nvmlDeviceGetPcieThroughput(self, handle, counter, reference):
        def fill(device):
            _out(reference).value = device.pcie[2 + _value(counter)]

        return self._answer("nvmlDeviceGetPcieThroughput", handle, fill)

    def c_nvmlDeviceGetClockInfo(self, handle, kind, reference):
        def fill(device):
            if isinstance(device, FakeMig):
                return NOT_SUPPORTED
            kind_value = _value(kind)
            if kind_value not in (real.NVML_CLOCK_SM, real.NVML_CLOCK_MEM):
                return INVALID
            _out(reference).value = device.clocks[kind_value == real.NVML_CLOCK_MEM]

        return self._answer("nvmlDeviceGetClockInfo", handle, fill)

    def c_nvmlDeviceGetTotalEccErrors(self, handle, error_type, counter, reference):
        def fill(device):
            _out(reference).value = device.ecc_uncorrected

        return self._answer("nvmlDeviceGetTotalEccErrors", handle, fill)

    # -- processes: the two-call protocol (size first, then the array) --------------------
    def _listed(self, device, kind) -> list[tuple]:
        if isinstance(device, FakeMig):  # a MIG handle lists its own instance's processes
            parent = next(g for g in self.gpus if device in (g.mig or []))
            wanted = (device.gpu_instance_id, device.compute_instance_id)
            return [p for p in getattr(parent, kind) if tuple(p[2:4]) == wanted]
        return getattr(device, kind)

    def _processes(self, symbol, kind, handle, count_ref, array):
        def fill(device):
            listed = self._listed(device, kind)
            count = _out(count_ref)
            if array is None or count.value < len(listed):
                count.value = len(listed)
                return real.NVML_ERROR_INSUFFICIENT_SIZE if listed else SUCCESS
            for slot, (pid, used, *ids) in zip(array, listed, strict=False):
                slot.pid = pid
                slot.usedGpuMemory = real.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
                if used is not None:
                    slot.usedGpuMemory = used
                slot.gpuInstanceId, slot.computeInstanceId = (ids + [NO_MIG, NO_MIG])[:2]
            count.value = len(listed)

        return self._answer(symbol, handle, fill)

    def c_nvmlDeviceGetComputeRunningProcesses_v3(self, handle, count, array):
        symbol = "nvmlDeviceGetComputeRunningProcesses_v3"
        return self._processes(symbol, "compute", handle, count, array)

    def c_nvmlDeviceGetComputeRunningProcesses_v2(self, handle, count, array):
        symbol = "nvmlDeviceGetComputeRunningProcesses_v2"
        return self._processes(symbol, "compute", handle, count, array)

    def c_nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle, count, array):
        symbol = "nvmlDeviceGetGraphicsRunningProcesses_v3"
        return self._processes(symbol, "graphics", handle, count, array)

    def c_nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle, count, array):
        symbol = "nvmlDeviceGetGraphicsRunningProcesses_v2"
        return self._processes(symbol, "graphics", handle, count, array)

    def c_nvmlDeviceGetProcessUtilization(self, handle, samples, count_ref, since):
        def fill(device):
            buffer = getattr(device, "sm_samples", {})
            if isinstance(buffer, dict):
                now = int(time.time() * 1_000_000)
                buffer = [(pid, sm, now) for pid, sm in buffer.items()]
            if samples is None:  # the binding's first call (the size), once per query
                self.sm_since.append(_value(since))
            listed = [sample for sample in buffer if sample[2] > _value(since)]
            if not listed:
                return NOT_FOUND  # what NVML says when no process ran since `since`
            count = _out(count_ref)
            if samples is None or count.value < len(listed):
                count.value = len(listed)
                return real.NVML_ERROR_INSUFFICIENT_SIZE
            for slot, (pid, sm, stamp) in zip(samples, listed, strict=False):
                slot.pid, slot.smUtil, slot.timeStamp = pid, sm, stamp
            count.value = len(listed)

        return self._answer("nvmlDeviceGetProcessUtilization", handle, fill)

    # -- MIG ------------------------------------------------------------------------------
    def c_nvmlDeviceGetMigMode(self, handle, current_ref, pending_ref):
        def fill(device):
            if isinstance(device, FakeMig) or device.mig is None:
                return NOT_SUPPORTED
            on = bool(device.mig) if device.mig_enabled is None else device.mig_enabled
            pending = on if device.mig_pending is None else device.mig_pending
            _out(current_ref).value = real.NVML_DEVICE_MIG_ENABLE if on else 0
            _out(pending_ref).value = real.NVML_DEVICE_MIG_ENABLE if pending else 0

        return self._answer("nvmlDeviceGetMigMode", handle, fill)

    def c_nvmlDeviceGetMaxMigDeviceCount(self, handle, reference):
        def fill(device):
            _out(reference).value = device.mig_slots if device.mig is not None else 0

        return self._answer("nvmlDeviceGetMaxMigDeviceCount", handle, fill)

    def c_nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index, reference):
        def fill(device):
            slot = _value(index)
            if not any(mig.slot == slot for mig in device.mig or []):
                return NOT_FOUND
            parent_key = ctypes.cast(handle, ctypes.c_void_p).value
            self._set_handle(reference, parent_key + ((slot + 1) << 4))

        return self._answer("nvmlDeviceGetMigDeviceHandleByIndex", handle, fill)

    def c_nvmlDeviceGetGpuInstanceId(self, handle, reference):
        def fill(device):
            if not isinstance(device, FakeMig):
                return INVALID
            _out(reference).value = device.gpu_instance_id

        return self._answer("nvmlDeviceGetGpuInstanceId", handle, fill)

    def c_nvmlDeviceGetComputeInstanceId(self, handle, reference):
        def fill(device):
            if not isinstance(device, FakeMig):
                return INVALID
            _out(reference).value = device.compute_instance_id

        return self._answer("nvmlDeviceGetComputeInstanceId", handle, fill)


def install(monkeypatch, library: FakeNvmlLibrary) -> FakeNvmlLibrary:
    """Make the real binding use ``library`` (as if nvmlInit had loaded it) for one test."""
    monkeypatch.setattr(real, "nvmlLib", library)
    monkeypatch.setattr(real, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(real, "_nvmlLib_refcount", 0)
    return library


class OldBinding:
    """An old ``pynvml`` / ``nvidia-ml-py3`` over the same library: strings come back as
    ``bytes`` and the newer calls and struct versions do not exist."""

    _HIDDEN = frozenset(
        {
            "nvmlMemory_v2",
            "nvmlDeviceGetTemperatureV",
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetGraphicsRunningProcesses_v3",
            "nvmlDeviceGetCurrentClocksEventReasons",
            "NVMLLibraryMismatchError",
        }
    )

    def __getattr__(self, name: str):
        if name in self._HIDDEN:
            raise AttributeError(name)
        value = getattr(real, name)
        if not (callable(value) and name.startswith("nvml")) or isinstance(value, type):
            return value

        def old(*args):
            result = value(*args)
            return result.encode() if isinstance(result, str) else result

        return old


def real_nvml_works() -> bool:
    """Does this machine have a working NVIDIA driver (the real binding, no fake)?"""
    try:
        real.nvmlInit()
    except real.NVMLError:
        return False
    real.nvmlShutdown()
    return True


# the real no-driver path can only be exercised on a machine without a driver (CI's)
needs_no_driver = pytest.mark.skipif(
    real_nvml_works(),
    reason="this machine has an NVIDIA driver; the no-driver path needs a machine without",
)
