"""Lesson 14: torchvision's CIFAR10 reads data/cifar-10-batches-py; loader, make_grid, TB."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from support.synthetic import CIFAR_CLASSES, cifar_members, install_cifar, trust_synthetic_cifar
from support.tbutil import read_scalars, single_run_dir
from torchvision import transforms

from lab.data import DatasetMissing
from lab.lessons import lesson11_tensorboard_basics as lesson11
from lab.lessons import lesson14_cifar10_dataloader as lesson
from lab.lessons.harness import LabUsageError

PER_BATCH = 20  # install_cifar's default: 5 × 20 training images, 20 test images


@pytest.fixture
def cifar(data_dir, monkeypatch):
    """Synthetic CIFAR-10 on disk, and torchvision told the md5s of its batches."""
    install_cifar(data_dir, PER_BATCH)
    trust_synthetic_cifar(monkeypatch, PER_BATCH)
    return data_dir


def test_torchvision_reads_the_downloaded_layout(cifar):
    test = lesson.load_cifar10(cifar, train=False)
    train = lesson.load_cifar10(cifar, train=True)
    assert (len(train), len(test)) == (5 * PER_BATCH, PER_BATCH)
    assert test.classes == CIFAR_CLASSES
    published = pickle.loads(cifar_members(PER_BATCH)["test_batch"])
    for index in (0, PER_BATCH - 1):
        image, label = test[index]
        hwc = published["data"][index].reshape(3, 32, 32).transpose(1, 2, 0)
        assert np.array_equal(np.asarray(image), hwc)  # rows of 1024 R, then G, then B
        assert label == published["labels"][index]


def test_grid_tile_follows_make_grid_geometry():
    from torchvision.utils import make_grid

    images = torch.rand(10, 3, 32, 32)
    grid = make_grid(images, nrow=4, padding=3)
    assert grid.shape == (3, 3 * 35 + 3, 4 * 35 + 3)
    assert torch.equal(lesson.grid_tile(grid, 6, nrow=4, padding=3), images[6])
    assert torch.equal(grid[:, 3 + 35 : 3 + 35 + 32, 3 + 2 * 35 : 3 + 2 * 35 + 32], images[6])


def test_seeded_loader_is_reproducible_and_covers_an_epoch(cifar):
    dataset = lesson.load_cifar10(cifar, transform=transforms.ToTensor())
    first = [
        labels
        for _, labels in lesson.make_loader(dataset, 6, shuffle=True, drop_last=False, seed=3)
    ]
    again = [
        labels
        for _, labels in lesson.make_loader(dataset, 6, shuffle=True, drop_last=False, seed=3)
    ]
    assert [len(labels) for labels in first] == [6, 6, 6, 2]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert sorted(torch.cat(first).tolist()) == sorted(i % 10 for i in range(PER_BATCH))
    assert torch.equal(
        lesson.targets_of(torch.utils.data.Subset(dataset, [3, 0])), torch.tensor([3, 0])
    )


def test_main_checks_its_claims_and_logs_batches_and_grid(cifar, runs_dir):
    run = lesson.main(["--device", "cpu", "--dry-run"])
    assert len(run.checks) == 8
    run_dir = single_run_dir(runs_dir, "14_cifar10_dataloader")
    images = lesson11.logged_images(run_dir)
    # dry run: 20 test images, batches of 8, drop_last → 2 batches per epoch, 2 epochs
    assert [step for step, _ in images["cifar10/epoch_0"]] == [0, 1]
    assert [step for step, _ in images["cifar10/epoch_1"]] == [0, 1]
    ((_, grid),) = images["cifar10/make_grid"]
    assert grid.shape == (34 + 2, 8 * 34 + 2, 3)  # one row of 8 images, padding 2
    published = pickle.loads(cifar_members(PER_BATCH)["test_batch"])
    first = published["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(grid[2:34, 2:34], first)  # unshuffled: image 0 top left
    assert [step for step, _ in read_scalars(run_dir)["batch/mean_pixel"]] == [0, 1, 2, 3]


def test_a_damaged_copy_is_one_line_saying_fetch_again(cifar, runs_dir):
    batch = cifar / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(LabUsageError) as info:
        lesson.main(["--device", "cpu", "--dry-run"])
    assert "\n" not in info.value.message
    assert "invoke download-data --dataset cifar10" in info.value.message


def test_missing_dataset_is_one_line_on_stderr_exit_2(tmp_path):
    """`python -m lab lesson 14` in a real process with no data: one line, status 2."""
    env = {
        **os.environ,
        "LAB_DATA_DIR": str(tmp_path / "data"),
        "LAB_RUNS_DIR": str(tmp_path / "runs"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "lab", "lesson", "14", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "'cifar10' is missing" in result.stderr
    assert "invoke download-data --dataset cifar10" in result.stderr


def test_missing_dataset_raises_dataset_missing(data_dir):
    with pytest.raises(DatasetMissing):
        lesson.load_cifar10(data_dir)
