"""The GPU sampler: real TensorBoard event files, read back; NVML faked at lab.gpu.nvml."""

from __future__ import annotations

import argparse
import threading
import time

import pytest
from support.fake_pynvml import NOT_SUPPORTED, FakeGpu, FakePynvml, needs_no_driver
from support.tbutil import read_scalars, single_run_dir
from torch.utils.tensorboard import SummaryWriter

from lab.gpu import sampler as sampler_module
from lab.gpu.nvml import open_nvml
from lab.gpu.sampler import GpuSampler
from lab.lessons.harness import lesson_run


def wait_until(condition, what: str, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def two_gpus() -> FakePynvml:
    return FakePynvml(
        [
            FakeGpu(),
            FakeGpu(
                utilization=(10, 4),
                memory_used=2048 * 1024 * 1024,
                errors={"nvmlDeviceGetPowerUsage": NOT_SUPPORTED},
            ),
        ]
    )


@pytest.fixture
def writer(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "run"))
    yield writer
    writer.close()


def test_samples_land_in_the_run_as_readable_scalars(writer, tmp_path):
    fake = two_gpus()
    with open_nvml(fake) as nvml, GpuSampler(writer, interval_ms=5, nvml=nvml) as sampler:
        assert sampler.active
        wait_until(lambda: sampler.samples >= 2, "two samples")
        fake.gpus[0].utilization = (33, 9)  # what the sampler reads next must show up
        taken = sampler.samples
        wait_until(lambda: sampler.samples >= taken + 2, "two more samples")
    writer.flush()
    scalars = read_scalars(tmp_path / "run")
    assert set(scalars) == {
        "gpu/0/utilization",
        "gpu/0/memory_used_mib",
        "gpu/0/power_w",
        "gpu/1/utilization",
        "gpu/1/memory_used_mib",
    }  # no power on GPU 1
    n = sampler.samples
    for tag, points in scalars.items():
        assert [step for step, _ in points] == list(range(n)), tag
    utilization = [value for _, value in scalars["gpu/0/utilization"]]
    assert utilization[0] == 87 and utilization[-1] == 33
    assert {value for _, value in scalars["gpu/0/memory_used_mib"]} == {12_345}
    assert [value for _, value in scalars["gpu/0/power_w"]] == [pytest.approx(312.4)] * n
    assert {value for _, value in scalars["gpu/1/utilization"]} == {10}
    assert {value for _, value in scalars["gpu/1/memory_used_mib"]} == {2048}
    assert not sampler.active and sampler.error is None


def test_a_gpu_lost_mid_run_is_dropped_and_the_others_go_on(writer, tmp_path, capsys):
    fake = two_gpus()
    with open_nvml(fake) as nvml, GpuSampler(writer, interval_ms=5, nvml=nvml) as sampler:
        wait_until(lambda: sampler.samples >= 1, "a sample")
        fake.gpus[1].lost = True
        taken = sampler.samples
        wait_until(lambda: sampler.samples >= taken + 3, "samples after the loss")
    writer.flush()
    scalars = read_scalars(tmp_path / "run")
    assert len(scalars["gpu/0/utilization"]) == sampler.samples
    assert len(scalars["gpu/1/utilization"]) <= sampler.samples - 2
    assert "GPU 1 stopped answering (GPU is lost)" in capsys.readouterr().err
    assert sampler.error is None


def test_stops_at_once_even_with_a_long_interval(writer):
    fake = FakePynvml([FakeGpu()])
    nvml = open_nvml(fake)
    sampler = GpuSampler(writer, interval_ms=600_000, nvml=nvml).__enter__()
    wait_until(lambda: sampler.samples == 1, "the first sample, taken at once")
    closer = threading.Thread(target=sampler.__exit__, args=(None, None, None))
    closer.start()
    closer.join(timeout=10)  # a sampler that slept out its interval would still be running
    assert not closer.is_alive() and not sampler.active and sampler.samples == 1


def test_disabled_sampler_never_touches_nvml(writer):
    fake = FakePynvml([FakeGpu()])
    with open_nvml(fake) as nvml, GpuSampler(writer, nvml=nvml, enabled=False) as sampler:
        assert not sampler.active
    assert fake.calls == ["nvmlDeviceGetCount"]  # only open_nvml's own check


def test_no_gpu_means_no_op_and_the_failed_open_is_remembered(writer, monkeypatch):
    opened = []

    def open_no_gpu():
        opened.append(1)
        return open_nvml(FakePynvml([]))

    monkeypatch.setattr(sampler_module, "_shared", None)
    monkeypatch.setattr(sampler_module, "open_nvml", open_no_gpu)
    for _ in range(3):  # `lab lesson all`: one sampler per lesson
        with GpuSampler(writer) as sampler:
            assert not sampler.active
    assert opened == [1]


@needs_no_driver
def test_real_machine_without_driver_is_a_no_op(writer, monkeypatch):
    monkeypatch.setattr(sampler_module, "_shared", None)
    with GpuSampler(writer) as sampler:
        assert not sampler.active
    assert sampler.samples == 0


def test_a_failing_writer_stops_sampling_without_breaking_the_work(capsys):
    class BrokenWriter:
        def add_scalar(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with open_nvml(FakePynvml([FakeGpu()])) as nvml:
        with GpuSampler(BrokenWriter(), interval_ms=5, nvml=nvml) as sampler:
            wait_until(lambda: sampler.error is not None, "the writer's error")
    assert sampler.error == "RuntimeError: disk full"
    assert "[gpu-sampler] stopped: RuntimeError: disk full" in capsys.readouterr().err


def test_interval_must_be_positive(writer):
    with pytest.raises(ValueError, match="interval_ms must be > 0"):
        GpuSampler(writer, interval_ms=0)


def lesson_args(runs_dir, no_gpu_metrics: bool) -> argparse.Namespace:
    return argparse.Namespace(device="cpu", runs_dir=runs_dir, no_gpu_metrics=no_gpu_metrics)


@pytest.mark.parametrize("no_gpu_metrics", [False, True])
def test_lessons_sample_the_gpu_into_their_run_unless_told_not_to(
    runs_dir, monkeypatch, no_gpu_metrics
):
    fake = FakePynvml([FakeGpu()])
    nvml = open_nvml(fake)
    monkeypatch.setattr(sampler_module, "shared_nvml", lambda: nvml)
    with lesson_run("99_gpu_probe", lesson_args(runs_dir, no_gpu_metrics)) as run:
        run.writer.add_scalar("loss", 1.5, 0)  # the lesson's own curve, alongside
    scalars = read_scalars(single_run_dir(runs_dir, "99_gpu_probe"))
    assert scalars["loss"] == [(0, 1.5)]
    if no_gpu_metrics:
        assert set(scalars) == {"loss"} and fake.calls == ["nvmlDeviceGetCount"]
    else:
        # the first sample is taken as the lesson starts, so even a short lesson has one
        assert scalars["gpu/0/utilization"][0] == (0, 87)
        assert scalars["gpu/0/memory_used_mib"][0] == (0, 12_345)
