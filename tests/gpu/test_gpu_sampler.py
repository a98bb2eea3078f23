"""The GPU sampler: real TensorBoard event files, read back; the real binding over a fake
NVML library."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pynvml
import pytest
import torch
from support.fake_pynvml import MIB, NOT_SUPPORTED, FakeGpu, FakeMig, needs_no_driver
from support.tbutil import read_scalars, single_run_dir
from torch.utils.tensorboard import SummaryWriter

from lab.gpu import sampler as sampler_module
from lab.gpu.sampler import GpuSampler
from lab.lessons import harness

CUDA0 = SimpleNamespace(type="cuda", index=0)  # anything with .type/.index will do


def wait_until(condition, what: str, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def eight_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid=f"GPU-{i}{i}{i}{i}-0000", utilization=(10 + i, i), memory_used=i * 1024 * MIB)
        for i in range(8)
    ]


SAMPLED = {"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetPowerUsage"}


def sampled_uuids(fake) -> set:
    """The devices the sampler read metrics from (finding the device reads a few names)."""
    return {uuid for symbol, uuid in fake.calls if symbol in SAMPLED}


@pytest.fixture
def writer(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "run"))
    yield writer
    writer.close()


def sample(writer, tmp_path, rounds: int = 2, **kwargs) -> tuple[GpuSampler, dict]:
    with GpuSampler(writer, interval_ms=5, environ=kwargs.pop("environ", {}), **kwargs) as s:
        assert s.active
        wait_until(lambda: s.samples >= rounds, f"{rounds} samples")
    writer.flush()
    return s, read_scalars(tmp_path / "run")


def test_samples_only_the_lessons_device_as_readable_scalars(fake_nvml, writer, tmp_path):
    fake = fake_nvml([FakeGpu(), FakeGpu(uuid="GPU-1", errors={})])
    with GpuSampler(writer, device=CUDA0, interval_ms=5, environ={}) as sampler:
        wait_until(lambda: sampler.samples >= 2, "two samples")
        fake.gpus[0].utilization = (33, 9)  # what the sampler reads next must show up
        taken = sampler.samples
        wait_until(lambda: sampler.samples >= taken + 2, "two more samples")
    writer.flush()
    scalars = read_scalars(tmp_path / "run")
    assert set(scalars) == {"gpu/0/utilization", "gpu/0/memory_used_mib", "gpu/0/power_w"}
    n = sampler.samples
    for tag, points in scalars.items():
        assert [step for step, _ in points] == list(range(n)), tag
    utilization = [value for _, value in scalars["gpu/0/utilization"]]
    assert utilization[0] == 87 and utilization[-1] == 33
    assert {value for _, value in scalars["gpu/0/memory_used_mib"]} == {12_345}
    assert [value for _, value in scalars["gpu/0/power_w"]] == [pytest.approx(312.4)] * n
    assert sampled_uuids(fake) == {FakeGpu().uuid}
    assert not sampler.active and sampler.error is None


def test_on_an_8_gpu_box_it_samples_the_cuda_device_tagged_by_its_cuda_index(
    fake_nvml, writer, tmp_path
):
    fake = fake_nvml(eight_gpus())
    cuda1 = SimpleNamespace(type="cuda", index=1)
    sampler, scalars = sample(
        writer, tmp_path, device=cuda1, environ={"CUDA_VISIBLE_DEVICES": "5,2"}
    )
    assert set(scalars) == {"gpu/1/utilization", "gpu/1/memory_used_mib", "gpu/1/power_w"}
    assert {value for _, value in scalars["gpu/1/utilization"]} == {12}  # NVML GPU 2
    assert sampled_uuids(fake) == {"GPU-2222-0000"}  # not all eight
    assert sampler.target.nvml_index == 2


def test_a_gpu_uuid_prefix_in_cuda_visible_devices_names_the_gpu(fake_nvml, writer, tmp_path):
    fake_nvml(eight_gpus())
    _, scalars = sample(writer, tmp_path, device=CUDA0, environ={"CUDA_VISIBLE_DEVICES": "GPU-66"})
    assert {value for _, value in scalars["gpu/0/utilization"]} == {16}


def test_the_uuid_cuda_reports_wins_over_reconstructing_its_order(fake_nvml, writer, tmp_path):
    fake_nvml(eight_gpus())  # e.g. mixed GPUs under CUDA_DEVICE_ORDER=FASTEST_FIRST
    _, scalars = sample(writer, tmp_path, device=CUDA0, uuid_of=lambda index: "3333-0000")
    assert {value for _, value in scalars["gpu/0/utilization"]} == {13}


def test_on_a_mig_slice_it_samples_the_mig_device_memory_and_the_gpus_power(
    fake_nvml, writer, tmp_path
):
    fake_nvml(
        [
            FakeGpu(
                uuid="GPU-a100",
                mig=[FakeMig(0, "MIG-aaaa", memory_used=100 * MIB), FakeMig(2, "MIG-bbbb")],
            )
        ]
    )
    environ = {"CUDA_VISIBLE_DEVICES": "MIG-bbbb"}
    sampler, scalars = sample(writer, tmp_path, device=CUDA0, environ=environ)
    # NVML refuses utilization for MIG devices: no curve rather than zeros
    assert set(scalars) == {"gpu/0/memory_used_mib", "gpu/0/power_w"}
    assert {value for _, value in scalars["gpu/0/memory_used_mib"]} == {100}
    assert sampler.target.mig_slot == 2
    sampler, _ = sample(writer, tmp_path, device=CUDA0)  # no variable: the first MIG device
    assert sampler.target.mig_slot == 0
    # CUDA reporting the slice's GPU, or the slice itself, still samples the slice
    for uuid in ("a100", "bbbb"):
        sampler, _ = sample(
            writer, tmp_path, device=CUDA0, environ=environ, uuid_of=lambda i, u=uuid: u
        )
        assert sampler.target.mig_slot == 2


@pytest.mark.parametrize("device", [None, torch.device("cpu"), SimpleNamespace(type="cpu")])
def test_a_cpu_lesson_never_touches_nvml(fake_nvml, writer, device):
    fake = fake_nvml([FakeGpu()])
    with GpuSampler(writer, device=device) as sampler:
        assert not sampler.active
    assert fake.calls == [] and fake.initialised == 0


def test_a_field_failing_once_is_a_gap_and_sampling_goes_on(fake_nvml, writer, tmp_path):
    fake = fake_nvml([FakeGpu()])
    gpu = fake.gpus[0]
    with GpuSampler(writer, device=CUDA0, interval_ms=5, environ={}) as sampler:
        wait_until(lambda: sampler.samples >= 1, "a sample")
        for code in (pynvml.NVML_ERROR_TIMEOUT, pynvml.NVML_ERROR_UNKNOWN):
            gpu.errors["nvmlDeviceGetUtilizationRates"] = code
            wait_until(
                lambda taken=sampler.samples: sampler.samples >= taken + 2,
                "samples during the error",
            )
        del gpu.errors["nvmlDeviceGetUtilizationRates"]
        taken = sampler.samples
        wait_until(lambda: sampler.samples >= taken + 2, "samples after it")
    writer.flush()
    scalars = read_scalars(tmp_path / "run")
    assert len(scalars["gpu/0/memory_used_mib"]) == sampler.samples  # never dropped
    steps = [step for step, _ in scalars["gpu/0/utilization"]]
    assert 0 < len(steps) < sampler.samples and steps[-1] == sampler.samples - 1
    assert sampler.target is not None and sampler.error is None


def test_a_gpu_lost_mid_run_ends_sampling_with_a_message(fake_nvml, writer, tmp_path, capsys):
    fake = fake_nvml([FakeGpu()])
    with GpuSampler(writer, device=CUDA0, interval_ms=5, environ={}) as sampler:
        wait_until(lambda: sampler.samples >= 1, "a sample")
        fake.gpus[0].lost = True
        wait_until(lambda: sampler.target is None, "the loss to be noticed")
    assert "GPU cuda:0 stopped answering (GPU is lost)" in capsys.readouterr().err
    assert sampler.error is None


def test_stops_at_once_even_with_a_long_interval(fake_nvml, writer):
    fake_nvml([FakeGpu()])
    sampler = GpuSampler(writer, device=CUDA0, interval_ms=600_000, environ={}).__enter__()
    wait_until(lambda: sampler.samples == 1, "the first sample, taken at once")
    closer = threading.Thread(target=sampler.__exit__, args=(None, None, None))
    closer.start()
    closer.join(timeout=10)  # a sampler that slept out its interval would still be running
    assert not closer.is_alive() and not sampler.active and sampler.samples == 1


def test_disabled_sampler_never_touches_nvml(fake_nvml, writer):
    fake = fake_nvml([FakeGpu()])
    with GpuSampler(writer, device=CUDA0, enabled=False) as sampler:
        assert not sampler.active
    assert fake.calls == [] and fake.initialised == 0


def test_no_gpu_means_no_op_and_the_failed_open_is_remembered(fake_nvml, writer, monkeypatch):
    fake_nvml([])
    opened = []
    real_open = sampler_module.open_nvml
    monkeypatch.setattr(sampler_module, "open_nvml", lambda: opened.append(1) or real_open())
    for _ in range(3):  # `lab lesson all`: one sampler per lesson
        with GpuSampler(writer, device=CUDA0) as sampler:
            assert not sampler.active
    assert opened == [1]


@needs_no_driver
def test_real_machine_without_driver_is_a_no_op(writer, monkeypatch):
    monkeypatch.setattr(sampler_module, "_shared", None)
    with GpuSampler(writer, device=CUDA0) as sampler:
        assert not sampler.active
    assert sampler.samples == 0


def test_a_failing_writer_stops_sampling_without_breaking_the_work(fake_nvml, capsys):
    class BrokenWriter:
        def add_scalar(self, *args, **kwargs):
            raise RuntimeError("disk full")

    fake_nvml([FakeGpu()])
    with GpuSampler(BrokenWriter(), device=CUDA0, interval_ms=5, environ={}) as sampler:
        wait_until(lambda: sampler.error is not None, "the writer's error")
    assert sampler.error == "RuntimeError: disk full"
    assert "[gpu-sampler] stopped: RuntimeError: disk full" in capsys.readouterr().err


def test_interval_must_be_positive(writer):
    with pytest.raises(ValueError, match="interval_ms must be > 0"):
        GpuSampler(writer, interval_ms=0)


def test_the_sampler_module_does_not_need_torch():
    assert "torch" not in sampler_module.__dict__


def open_probe(run_name: str, runs_dir, device: str, no_gpu_metrics: bool) -> harness.LessonRun:
    """A lesson opened the way `lab lesson` opens one (its command-line options in force)."""
    options = harness.Options(device=device, runs_dir=runs_dir, gpu_metrics=not no_gpu_metrics)
    with harness.cli_options(options):
        return harness.open_lesson(run_name)


@pytest.mark.parametrize("no_gpu_metrics", [False, True])
def test_a_cuda_lesson_samples_its_gpu_into_its_run_unless_told_not_to(
    fake_nvml, runs_dir, monkeypatch, no_gpu_metrics
):
    fake = fake_nvml([FakeGpu(), FakeGpu(uuid="GPU-1")])
    # torch here has no CUDA: the lesson's device object is all the sampler looks at
    monkeypatch.setattr(harness, "pick_device", lambda choice: torch.device("cuda", 0))
    run = open_probe("99_gpu_probe", runs_dir, "cuda", no_gpu_metrics)
    run.writer.add_scalar("loss", 1.5, 0)  # the lesson's own curve, alongside
    run.done()
    scalars = read_scalars(single_run_dir(runs_dir, "99_gpu_probe"))
    assert scalars["loss"] == [(0, 1.5)]
    if no_gpu_metrics:
        assert set(scalars) == {"loss"} and fake.calls == []
    else:
        # the first sample is taken as the lesson starts, so even a short lesson has one
        assert set(scalars) == {
            "loss",
            *(f"gpu/0/{n}" for n in ("utilization", "memory_used_mib", "power_w")),
        }
        assert scalars["gpu/0/utilization"][0] == (0, 87)
        assert scalars["gpu/0/memory_used_mib"][0] == (0, 12_345)


def test_a_cpu_lesson_on_a_gpu_machine_logs_only_its_own_curves(fake_nvml, runs_dir):
    fake = fake_nvml([FakeGpu(errors={"nvmlDeviceGetPowerUsage": NOT_SUPPORTED})])
    run = open_probe("98_cpu_probe", runs_dir, "cpu", False)
    run.writer.add_scalar("loss", 1.0, 0)
    run.done()
    assert set(read_scalars(single_run_dir(runs_dir, "98_cpu_probe"))) == {"loss"}
    assert fake.initialised == 0
