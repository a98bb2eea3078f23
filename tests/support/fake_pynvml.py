"""A fake ``pynvml`` module for tests: GPUs described as data, answering like the real binding.

It raises the real binding's own exception classes (``pynvml.NVMLError(code)`` builds the
``NVMLError_GpuIsLost``/``NVMLError_NotSupported``... subclass) and serves its constants, so
lab.gpu.nvml cannot tell it from NVML except by the answers. Handles are the FakeGpu/FakeMig
objects themselves. ``test_fake_matches_the_real_binding`` keeps names and arities honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml as real
import pytest

MIB = 1024 * 1024
NOT_SUPPORTED = real.NVML_ERROR_NOT_SUPPORTED


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
    errors: dict = field(default_factory=dict)


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    utilization: tuple[int, int] = (87, 45)
    memory_used: int = 12_345 * MIB
    memory_total: int = 81_559 * MIB
    temperature: int = 54
    power_mw: int = 312_400
    power_limit_mw: int = 700_000
    compute: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    mig: list[FakeMig] | None = None  # None: the GPU has no MIG (Not Supported)
    mig_slots: int = 7
    lost: bool = False  # every call on it answers GPU is lost
    errors: dict = field(default_factory=dict)  # function name -> NVML error code


class FakePynvml:
    """``FakePynvml([FakeGpu(), ...])``; ``init_error`` makes nvmlInit fail with that code."""

    NVMLError = real.NVMLError

    def __init__(
        self,
        gpus: list[FakeGpu],
        driver: str = "580.65.06",
        cuda: int = 13000,
        init_error: int | None = None,
    ) -> None:
        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        self.init_error = init_error
        self.initialised = 0  # nvmlInit calls minus nvmlShutdown calls
        self.calls: list[str] = []

    def __getattr__(self, name: str):  # NVML_* constants and NVMLError_* classes
        if name.startswith("NVML"):
            return getattr(real, name)
        raise AttributeError(name)

    def _answer(self, function: str, handle, value):
        self.calls.append(function)
        if handle is not None and handle.lost:
            raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
        code = (handle.errors if handle is not None else {}).get(function)
        if code is not None:
            raise real.NVMLError(code)
        return value() if callable(value) else value

    # -- library & system -----------------------------------------------------------------
    def nvmlInit(self):
        if self.init_error is not None:
            raise real.NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self):
        return self._answer("nvmlSystemGetDriverVersion", None, self.driver)

    def nvmlSystemGetCudaDriverVersion(self):
        return self._answer("nvmlSystemGetCudaDriverVersion", None, self.cuda)

    def nvmlDeviceGetCount(self):
        return self._answer("nvmlDeviceGetCount", None, len(self.gpus))

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.gpus):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        return self._answer("nvmlDeviceGetHandleByIndex", gpu, gpu)

    # -- per device -----------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle):
        return self._answer("nvmlDeviceGetName", handle, handle.name)

    def nvmlDeviceGetUUID(self, handle):
        return self._answer("nvmlDeviceGetUUID", handle, handle.uuid)

    def nvmlDeviceGetUtilizationRates(self, handle):
        if isinstance(handle, FakeMig):  # NVML gives no utilization for MIG devices
            raise real.NVMLError(NOT_SUPPORTED)
        gpu, memory = handle.utilization
        return self._answer(
            "nvmlDeviceGetUtilizationRates", handle, SimpleNamespace(gpu=gpu, memory=memory)
        )

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        return self._answer(
            "nvmlDeviceGetMemoryInfo",
            handle,
            SimpleNamespace(
                used=handle.memory_used,
                total=handle.memory_total,
                free=handle.memory_total - handle.memory_used,
            ),
        )

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == real.NVML_TEMPERATURE_GPU
        return self._answer("nvmlDeviceGetTemperature", handle, handle.temperature)

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._answer("nvmlDeviceGetPowerUsage", handle, handle.power_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._answer("nvmlDeviceGetEnforcedPowerLimit", handle, handle.power_limit_mw)

    def _processes(self, function, handle, listed):
        return self._answer(
            function,
            handle,
            [
                SimpleNamespace(
                    pid=pid,
                    usedGpuMemory=used,
                    gpuInstanceId=0xFFFFFFFF,
                    computeInstanceId=0xFFFFFFFF,
                )
                for pid, used in listed
            ],
        )

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return self._processes("nvmlDeviceGetComputeRunningProcesses", handle, handle.compute)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses", handle, handle.graphics)

    # -- MIG ------------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle):
        if handle.mig is None:
            raise real.NVMLError(NOT_SUPPORTED)
        mode = real.NVML_DEVICE_MIG_ENABLE if handle.mig else real.NVML_DEVICE_MIG_DISABLE
        return self._answer("nvmlDeviceGetMigMode", handle, [mode, mode])

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        return self._answer(
            "nvmlDeviceGetMaxMigDeviceCount",
            handle,
            handle.mig_slots if handle.mig is not None else 0,
        )

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index):
        by_slot = {mig.slot: mig for mig in handle.mig or []}
        if index not in by_slot:
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)
        return self._answer("nvmlDeviceGetMigDeviceHandleByIndex", handle, by_slot[index])

    def nvmlDeviceGetGpuInstanceId(self, handle):
        return self._answer("nvmlDeviceGetGpuInstanceId", handle, handle.gpu_instance_id)

    def nvmlDeviceGetComputeInstanceId(self, handle):
        return self._answer("nvmlDeviceGetComputeInstanceId", handle, handle.compute_instance_id)


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
