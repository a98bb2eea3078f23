"""The NVML verdicts of the hosts issue (#20), through the real nvidia-ml-py binding over the
fake NVML library: a MIG-enabled GPU without MIG devices is no CUDA device; per-process SM %
is the newest sample since the last query (0 where NVML sampled nothing); the ~20 ms PCIe
throughput read does not block every --watch frame; macOS says so in one line. (NVML init
failures that make doctor fail: tests/host/test_doctor.py.)"""

from __future__ import annotations

import io

import pynvml
import pytest
from support.fake_pynvml import FakeGpu, FakeMig

from lab.cli import build_parser
from lab.gpu import cli as gpu_cli
from lab.gpu import nvml as nvml_module
from lab.gpu import report
from lab.gpu.nvml import NvmlUnavailable, open_nvml
from lab.gpu.visible import cuda_devices

NOW_US = 1_800_000_000 * 1_000_000  # NVML timestamps: microseconds since the epoch
S = 1_000_000


def three_gpus_the_middle_one_mig_without_devices() -> list[FakeGpu]:
    return [
        FakeGpu(uuid="GPU-aaaa"),
        FakeGpu(uuid="GPU-bbbb", mig=[], mig_enabled=True),  # MIG on, no instance made yet
        FakeGpu(uuid="GPU-cccc"),
    ]


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        (None, [0, 2]),  # CUDA enumerates GPU 0 and GPU 2, as cuda:0 and cuda:1
        ("1,2", [2]),  # named, it is skipped; the next entry still counts
        ("GPU-bbbb,GPU-aaaa", [0]),
    ],
)
def test_a_mig_gpu_without_mig_devices_is_no_cuda_device(fake_nvml, listed, expected):
    fake_nvml(three_gpus_the_middle_one_mig_without_devices())
    environ = {} if listed is None else {"CUDA_VISIBLE_DEVICES": listed}
    with open_nvml() as nvml:
        devices = cuda_devices(nvml, environ)
        document = report.collect(nvml, environ=environ)
    assert [device.nvml_index for device in devices] == expected
    assert [device.cuda_index for device in devices] == list(range(len(expected)))
    shown = {gpu["index"]: gpu["cuda_index"] for gpu in document["gpus"]}
    assert shown[1] is None  # the report says CUDA cannot use it
    assert document["gpus"][1]["mig"] == {"enabled": True, "pending": None, "devices": []}


def test_the_sampler_of_cuda_1_watches_the_gpu_cuda_calls_1(fake_nvml):
    """What the shifted index did: the lesson on cuda:1 had GPU 1's (idle) numbers logged."""
    from lab.gpu.visible import device_for

    fake_nvml(three_gpus_the_middle_one_mig_without_devices())
    with open_nvml() as nvml:
        assert device_for(nvml, 1, environ={}).nvml_index == 2


def test_a_mig_gpu_with_devices_still_shows_as_its_first(fake_nvml):
    mig = FakeMig(2, "MIG-x", gpu_instance_id=5)
    fake_nvml([FakeGpu(uuid="GPU-a", mig=[mig]), FakeGpu(uuid="GPU-b")])
    with open_nvml() as nvml:
        assert [(d.nvml_index, d.mig_slot) for d in cuda_devices(nvml, {})] == [(0, 2)]


# -- per-process SM % -------------------------------------------------------------------------
def sm_gpu() -> FakeGpu:
    return FakeGpu(
        compute=[(10, 100 << 20), (11, 100 << 20), (12, 100 << 20)],
        # NVML's ring buffer, not in time order: pid 10's newest sample is not its last
        sm_samples=[
            (10, 30, NOW_US - 60 * S),  # a minute old: not this query's business
            (10, 80, NOW_US - S // 2),
            (11, 50, NOW_US - S // 5),
            (10, 60, NOW_US - S),
        ],
    )


@pytest.fixture
def clock(monkeypatch):
    now = {"us": NOW_US}
    monkeypatch.setattr(nvml_module, "_now_us", lambda: now["us"])
    return now


def sm_of(document) -> dict[int, int | None]:
    return {p["pid"]: p["sm_percent"] for p in document["gpus"][0]["processes"]}


def test_sm_percent_is_the_newest_sample_since_the_last_query(fake_nvml, clock):
    fake = fake_nvml([sm_gpu()])
    with open_nvml() as nvml:
        first = report.collect(nvml, environ={})
        clock["us"] += 2 * S
        second = report.collect(nvml, environ={})  # nothing sampled since: everyone idle
    # the newest sample per pid within the window; 12 ran nothing NVML sampled: 0, not n/a
    assert sm_of(first) == {10: 80, 11: 50, 12: 0}
    assert sm_of(second) == {10: 0, 11: 0, 12: 0}
    window = int(nvml_module.SM_WINDOW_S * S)
    # NVML was asked for samples after a timestamp, never for its whole buffer (0)
    assert fake.sm_since == [NOW_US - window, NOW_US - S // 5]


def test_sm_percent_is_na_where_the_gpu_gives_no_per_process_samples(fake_nvml, clock):
    gpu = sm_gpu()
    gpu.errors["nvmlDeviceGetProcessUtilization"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    fake_nvml([gpu])
    with open_nvml() as nvml:
        assert sm_of(report.collect(nvml, environ={})) == {10: None, 11: None, 12: None}


# -- PCIe throughput: ~20 ms per read -----------------------------------------------------------
class Frames:
    """--watch's sleep: the clock moves on by the interval; Ctrl-C after ``count`` frames."""

    def __init__(self, monkeypatch, count: int) -> None:
        self.now, self.count, self.frames = 1000.0, count, 0
        monkeypatch.setattr(nvml_module, "_monotonic", lambda: self.now)

    def __call__(self, seconds: float) -> None:
        self.frames += 1
        if self.frames == self.count:
            raise KeyboardInterrupt
        self.now += seconds


def test_pcie_throughput_is_not_read_on_every_watch_frame(fake_nvml, monkeypatch):
    fake = fake_nvml([FakeGpu(uuid="GPU-0"), FakeGpu(uuid="GPU-1")])
    frames = Frames(monkeypatch, count=15)  # 15 frames, 2 s apart: 28 s
    out = io.StringIO()
    args = build_parser().parse_args(["gpu", "--watch", "2", "--json"])
    assert gpu_cli.run(args, out=out, err=io.StringIO(), sleep=frames) == 0
    reads = [symbol for symbol, _ in fake.calls if symbol == "nvmlDeviceGetPcieThroughput"]
    every = nvml_module.PCIE_THROUGHPUT_EVERY_S
    # tx and rx, per GPU, once per PCIE_THROUGHPUT_EVERY_S (at 0, 10 and 20 s), not per frame
    assert len(reads) == 2 * 2 * 3 and every == 10.0
    assert all('"tx_kib_s": 1200' in line for line in out.getvalue().splitlines())


# -- macOS --------------------------------------------------------------------------------------
def test_on_macos_lab_gpu_says_there_is_no_nvidia_gpu_in_one_line(monkeypatch):
    monkeypatch.setattr(nvml_module.sys, "platform", "darwin")
    with pytest.raises(NvmlUnavailable) as raised:
        open_nvml()
    out, err = io.StringIO(), io.StringIO()
    code = gpu_cli.run(build_parser().parse_args(["gpu"]), out=out, err=err)
    assert code == gpu_cli.EXIT_NO_GPU and out.getvalue() == ""
    assert err.getvalue() == f"lab gpu: {raised.value}\n"
    assert "no NVIDIA GPU on macOS" in err.getvalue() and "driver" not in err.getvalue()
