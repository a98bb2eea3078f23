"""GPU metrics in a TensorBoard run: a background thread samples NVML every N ms.

Wrap any work with it; it writes ``gpu/<index>/utilization`` (%),
``gpu/<index>/memory_used_mib`` and ``gpu/<index>/power_w`` into the SummaryWriter it is
given (step = sample number; each point carries its wall time)::

    with GpuSampler(writer, interval_ms=500):
        train()

Without NVML or a GPU it does nothing, so lessons wrap their work unconditionally. Its cost
on the wrapped work stays far under 1 %: three cheap NVML reads per GPU per interval on a
daemon thread (ctypes releases the GIL during each call), and it stops at once via an Event.
This module imports neither torch nor tensorboard: the writer comes from the caller.
"""

from __future__ import annotations

import sys
import threading
import time

from lab.gpu.nvml import DeviceError, Nvml, NvmlUnavailable, open_nvml

DEFAULT_INTERVAL_MS = 500

# One NVML session per process, opened on first use: nvmlInit can take ~1 s on a GPU box
# without persistence mode, and `lab lesson all` opens a run per lesson. A failure is
# remembered too, so a machine without a GPU pays for the attempt once.
_shared: Nvml | NvmlUnavailable | None = None
_shared_lock = threading.Lock()


def shared_nvml() -> Nvml | None:
    """The process's NVML session, or None when this machine has no usable GPU."""
    global _shared
    with _shared_lock:
        if _shared is None:
            try:
                _shared = open_nvml()
            except NvmlUnavailable as exc:
                _shared = exc
        return _shared if isinstance(_shared, Nvml) else None


class GpuSampler:
    """Context manager sampling every GPU into ``writer`` while its block runs."""

    def __init__(
        self,
        writer,
        interval_ms: float = DEFAULT_INTERVAL_MS,
        nvml: Nvml | None = None,
        enabled: bool = True,
    ) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
        self.writer = writer
        self.interval_s = interval_ms / 1000
        self.enabled = enabled
        self.samples = 0  # completed sampling rounds
        self.error: str | None = None  # why sampling stopped early, if it did
        self._nvml = nvml
        self._devices: list[tuple[int, object]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> GpuSampler:
        if not self.enabled:
            return self
        nvml = self._nvml or shared_nvml()
        if nvml is None:
            return self
        self._nvml = nvml
        try:
            count = nvml.device_count()
        except DeviceError:
            return self
        for index in range(count):
            try:
                self._devices.append((index, nvml.device(index)))
            except DeviceError:
                continue  # a lost GPU has nothing to sample
        if self._devices:
            self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        try:
            while self._devices:
                self.sample_once(self.samples)
                self.samples += 1
                if self._stop.wait(self.interval_s):
                    break
        except Exception as exc:  # never let metrics break the work they watch
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"[gpu-sampler] stopped: {self.error}", file=sys.stderr)

    def sample_once(self, step: int) -> None:
        """Read every device once and write what it answered; a GPU that is lost is dropped."""
        walltime = time.time()
        for index, handle in list(self._devices):
            try:
                utilization = self._nvml.utilization(handle)
                memory = self._nvml.memory(handle)
                power = self._nvml.power_w(handle)
            except DeviceError as exc:
                self._devices.remove((index, handle))
                print(
                    f"[gpu-sampler] GPU {index} stopped answering ({exc.reason}); "
                    "no more samples from it",
                    file=sys.stderr,
                )
                continue
            values = {
                "utilization": None if utilization is None else utilization[0],
                "memory_used_mib": None if memory is None else memory[0] / (1024 * 1024),
                "power_w": power,
            }
            for name, value in values.items():
                if value is not None:  # unsupported on this GPU: no curve rather than zeros
                    self.writer.add_scalar(
                        f"gpu/{index}/{name}", value, global_step=step, walltime=walltime
                    )
