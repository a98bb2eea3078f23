"""GPU metrics in a TensorBoard run: a background thread samples the lesson's own GPU.

Wrap the work with it, giving the lesson's device; it writes
``gpu/<cuda index>/utilization`` (%), ``gpu/<cuda index>/memory_used_mib`` and
``gpu/<cuda index>/power_w`` into the SummaryWriter it is given (step = sample number; each
point carries its wall time)::

    with GpuSampler(writer, device=torch.device("cuda:0")):
        train()

Only that device is sampled, tagged by the index the lesson uses (``cuda:1`` is
``gpu/1/...`` whatever ``CUDA_VISIBLE_DEVICES`` maps it to); on a MIG slice it samples the
MIG device (memory) and its GPU's power. For a CPU device, ``None``, or a machine without
NVML it does nothing, so lessons wrap their work unconditionally. Its cost stays far under
1 %: three cheap NVML reads per interval on a daemon thread (ctypes releases the GIL during
each call). A field that fails once is skipped for that sample; only a lost GPU ends it.
This module imports neither torch nor tensorboard: the device is anything with ``.type`` and
``.index``, and the writer comes from the caller.
"""

from __future__ import annotations

import sys
import threading
import time

from lab.gpu.nvml import DeviceError, Nvml, NvmlUnavailable, open_nvml
from lab.gpu.visible import CudaDevice, device_for

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


def torch_uuid(cuda_index: int) -> str | None:
    """The UUID CUDA itself gives device ``cuda_index``, when torch is already in use here
    (never imported for this): it settles the order CUDA_DEVICE_ORDER may change."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        uuid = getattr(torch.cuda.get_device_properties(cuda_index), "uuid", None)
    except Exception:  # noqa: BLE001 - any doubt: fall back to CUDA_VISIBLE_DEVICES
        return None
    return None if uuid is None else str(uuid)


def current_cuda_index() -> int:
    """What a plain ``cuda`` device means: torch's current device (0 unless changed)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            return torch.cuda.current_device()
    except Exception:  # noqa: BLE001 - metrics never break the lesson
        pass
    return 0


class GpuSampler:
    """Context manager sampling the lesson's CUDA device into ``writer`` while it runs."""

    def __init__(
        self,
        writer,
        device=None,
        enabled: bool = True,
        interval_ms: float = DEFAULT_INTERVAL_MS,
        nvml: Nvml | None = None,
        environ=None,
        uuid_of=torch_uuid,
    ) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
        self.writer = writer
        self.device = device
        self.interval_s = interval_ms / 1000
        self.enabled = enabled
        self.samples = 0  # completed sampling rounds
        self.error: str | None = None  # why sampling stopped early, if it did
        self.target: CudaDevice | None = None
        self._nvml = nvml
        self._environ = environ
        self._uuid_of = uuid_of
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def _cuda_index(self) -> int | None:
        device = self.device
        if device is None or getattr(device, "type", None) != "cuda":
            return None
        index = getattr(device, "index", None)
        return current_cuda_index() if index is None else index

    def __enter__(self) -> GpuSampler:
        cuda_index = self._cuda_index()
        if not self.enabled or cuda_index is None:
            return self
        nvml = self._nvml or shared_nvml()
        if nvml is None:
            return self
        self._nvml = nvml
        try:
            self.target = device_for(nvml, cuda_index, self._environ, self._uuid_of)
        except DeviceError:
            self.target = None
        if self.target is not None:
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
            while self.target is not None:
                self.sample_once(self.samples)
                self.samples += 1
                if self._stop.wait(self.interval_s):
                    break
        except Exception as exc:  # never let metrics break the work they watch
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"[gpu-sampler] stopped: {self.error}", file=sys.stderr)

    def sample_once(self, step: int) -> None:
        """Read the device once and write what it answered; a lost GPU ends the sampling."""
        target, nvml = self.target, self._nvml
        if target is None:
            return
        walltime = time.time()
        try:
            utilization = nvml.utilization(target.handle)  # a MIG device has none
            memory = nvml.memory(target.handle)
            power = nvml.power_w(target.parent)  # the whole GPU's, also for a MIG slice
        except DeviceError as exc:
            self.target = None
            print(
                f"[gpu-sampler] GPU cuda:{target.cuda_index} stopped answering "
                f"({exc.reason}); no more samples from it",
                file=sys.stderr,
            )
            return
        nvml.field_errors.clear()  # a field that failed once is just missing this time
        values = {
            "utilization": None if utilization is None else utilization[0],
            "memory_used_mib": None if memory is None else memory[0] / (1024 * 1024),
            "power_w": power,
        }
        for name, value in values.items():
            if value is not None:  # unsupported or failed this time: a gap, never a zero
                self.writer.add_scalar(
                    f"gpu/{target.cuda_index}/{name}", value, global_step=step, walltime=walltime
                )
