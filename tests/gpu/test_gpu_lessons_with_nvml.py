"""Lessons 10 and 11 assert their exact TensorBoard tag sets; on a machine with an NVIDIA
driver the sampler used to add gpu/* tags to a CPU run and break them. With a GPU present
(the fake NVML library), a CPU lesson's run holds only the lesson's own tags."""

from __future__ import annotations

from support.fake_pynvml import FakeGpu
from support.synthetic import HYMENOPTERA_SMALL, install_hymenoptera
from support.tbutil import read_scalars, single_run_dir

from lab.lessons import lesson10_generate_labels, lesson11_tensorboard_basics


def test_lesson_11_tags_with_a_gpu_present(fake_nvml, data_dir, runs_dir):
    fake = fake_nvml([FakeGpu(), FakeGpu(uuid="GPU-1")])
    install_hymenoptera(data_dir)
    lesson11_tensorboard_basics.main(["--device", "cpu", "--dry-run"])
    scalars = read_scalars(single_run_dir(runs_dir, "11_tensorboard_basics"))
    assert set(scalars) == {"y=2x", "y=x^2"}
    assert fake.calls == []


def test_lesson_10_tags_with_a_gpu_present(fake_nvml, data_dir, runs_dir):
    fake_nvml([FakeGpu()])
    install_hymenoptera(data_dir)
    lesson10_generate_labels.main(["--device", "cpu"])
    scalars = read_scalars(single_run_dir(runs_dir, "10_generate_labels"))
    assert set(scalars) == {f"label_files/{split}/{cls}" for split, cls in HYMENOPTERA_SMALL}
