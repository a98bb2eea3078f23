"""Lessons 10 and 11 assert their exact TensorBoard tag sets; on a machine with an NVIDIA
driver the sampler used to add gpu/* tags to a CPU run and break them. With a GPU present
(the fake NVML library) and GPU metrics left on, a CPU lesson's run holds only the lesson's
own tags, and NVML is not even asked."""

from __future__ import annotations

from support.fake_pynvml import FakeGpu
from support.synthetic import HYMENOPTERA_SMALL, install_hymenoptera
from support.tbutil import read_scalars, single_run_dir

from lab.course import find
from lab.lessons import runner


def run_on_cpu_with_gpu_metrics(number: str, *argv: str):
    return runner.run(find(number), ["--device", "cpu", *argv])  # no --no-gpu-metrics


def test_lesson_11_tags_with_a_gpu_present(fake_nvml, data_dir, runs_dir):
    fake = fake_nvml([FakeGpu(), FakeGpu(uuid="GPU-1")])
    install_hymenoptera(data_dir)
    run_on_cpu_with_gpu_metrics("11", "--steps", "5")
    run_dir = single_run_dir(runs_dir, "11_tensorboard_basics")
    assert not [tag for tag in read_scalars(run_dir) if tag.startswith("gpu/")]
    assert set(read_scalars(run_dir / "curves")) == {"y=2x", "y=x^2"}
    assert fake.calls == []


def test_lesson_10_tags_with_a_gpu_present(fake_nvml, data_dir, runs_dir):
    fake = fake_nvml([FakeGpu()])
    install_hymenoptera(data_dir)
    run_on_cpu_with_gpu_metrics("10")
    scalars = read_scalars(single_run_dir(runs_dir, "10_generate_labels"))
    assert set(scalars) == {f"label_files/{split}/{cls}" for split, cls in HYMENOPTERA_SMALL}
    assert fake.calls == []
