"""Lesson 14: torchvision's CIFAR10 reads data/cifar-10-batches-py; loader, make_grid, TB."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.synthetic import CIFAR_CLASSES, cifar_members, install_cifar, trust_synthetic_cifar
from support.tbutil import read_scalars, single_run_dir
from torchvision import transforms
from torchvision.utils import make_grid

from lab.lessons.harness import LabUsageError

lesson = definitions("14")
lesson11 = definitions("11")  # its event-file image reader
ROOT = Path(__file__).resolve().parents[2]
PER_BATCH = 20  # install_cifar's default: 5 × 20 training images, 20 test images

MUTATIONS = [
    ("row, col = divmod(k, nrow)", "col, row = divmod(k, nrow)"),
    ("top, left = padding + (side + padding) * row,", "top, left = (side + padding) * row,"),
    ("drop_last=True,\n    workers=WORKERS,", "drop_last=False,\n    workers=WORKERS,"),
    # the classic CIFAR slip: the row read as HWC
    (
        'published["data"][k].reshape(3, 32, 32)',
        'published["data"][k].reshape(32, 32, 3).transpose(2, 0, 1)',
    ),
    ("transform=transforms.ToTensor())", "transform=transforms.PILToTensor())"),  # not / 255
    ("shuffle=shuffle,", "shuffle=False,"),
    ("generator=torch.Generator().manual_seed(seed),", "generator=None,"),
    # "shuffling" by drawing with replacement: as many labels, not every sample once
    (
        "shuffle=shuffle,",
        "sampler=torch.utils.data.RandomSampler(dataset, replacement=True, "
        "generator=torch.Generator().manual_seed(seed)) if shuffle else None,",
    ),
]
MUTATION_IDS = [
    "row-col",
    "no-padding",
    "keep-last",
    "hwc-row",
    "no-scaling",
    "no-shuffle",
    "global-rng",
    "replacement",
]


@pytest.fixture
def cifar(data_dir, monkeypatch):
    """Synthetic CIFAR-10 on disk, and torchvision told the md5s of its batches."""
    install_cifar(data_dir, PER_BATCH)
    trust_synthetic_cifar(monkeypatch, PER_BATCH)
    return data_dir


def published_hwc(index):
    published = pickle.loads(cifar_members(PER_BATCH)["test_batch"])
    return published["data"][index].reshape(3, 32, 32).transpose(1, 2, 0), published


def test_torchvision_reads_the_downloaded_layout(cifar):
    test = lesson.load_cifar10(cifar, train=False)
    train = lesson.load_cifar10(cifar, train=True)
    assert (len(train), len(test)) == (5 * PER_BATCH, PER_BATCH)
    assert test.classes == CIFAR_CLASSES
    for index in (0, PER_BATCH - 1):
        image, label = test[index]
        hwc, published = published_hwc(index)
        assert np.array_equal(np.asarray(image), hwc)  # rows of 1024 R, then G, then B
        assert label == published["labels"][index]


def test_grid_tile_follows_make_grid_geometry():
    images = torch.rand(10, 3, 32, 32)
    grid = make_grid(images, nrow=4, padding=3)
    assert grid.shape == (3, 3 * 35 + 3, 4 * 35 + 3)
    assert torch.equal(lesson.grid_tile(grid, 6, nrow=4, padding=3), images[6])
    assert torch.equal(grid[:, 3 + 35 : 3 + 35 + 32, 3 + 2 * 35 : 3 + 2 * 35 + 32], images[6])


def test_seeded_loader_is_reproducible_and_covers_an_epoch(cifar):
    dataset = lesson.load_cifar10(cifar, transform=transforms.ToTensor())

    def epoch():
        loader = lesson.make_loader(dataset, 6, shuffle=True, drop_last=False, seed=3)
        return [labels for _, labels in loader]

    first, again = epoch(), epoch()
    assert [len(labels) for labels in first] == [6, 6, 6, 2]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert sorted(torch.cat(first).tolist()) == sorted(i % 10 for i in range(PER_BATCH))
    assert torch.equal(
        lesson.targets_of(torch.utils.data.Subset(dataset, [3, 0])), torch.tensor([3, 0])
    )


def test_cells_check_their_claims_and_log_batches_and_grid(cifar, runs_dir):
    ns = run_lesson("14", "--dry-run", "--epochs", "3")
    assert len(ns.lesson.checks) == 9
    assert ns.lesson.figures == ["samples", "make_grid"]
    run_dir = single_run_dir(runs_dir, "14_cifar10_dataloader")
    images = lesson11.logged_images(run_dir)
    # 20 test images, batches of 20 // 3 = 6, drop_last → 3 batches per epoch, 3 epochs
    for epoch in range(3):
        assert [step for step, _ in images[f"cifar10/epoch_{epoch}"]] == [0, 1, 2]
    ((_, grid),) = images["cifar10/make_grid"]
    assert grid.shape == (2 * 34 + 2, 8 * 34 + 2, 3)  # 16 images, nrow 8, padding 2
    assert np.array_equal(grid[2:34, 2:34], published_hwc(0)[0])  # unshuffled: image 0
    assert np.array_equal(grid[36:68, 2:34], published_hwc(8)[0])  # image 8 starts row 2
    assert [step for step, _ in read_scalars(run_dir)["batch/mean_pixel"]] == list(range(9))


def test_a_damaged_copy_is_one_line_saying_fetch_again(cifar, runs_dir):
    batch = cifar / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(LabUsageError) as info:
        run_lesson("14", "--dry-run")
    assert "\n" not in info.value.message
    assert "invoke download-data --dataset cifar10" in info.value.message


def test_missing_dataset_is_one_line_on_stderr_exit_2_and_no_run(tmp_path):
    """`python -m lab lesson 14` in a real process with no data: one line, status 2."""
    env = {
        **os.environ,
        "LAB_DATA_DIR": str(tmp_path / "data"),
        "LAB_RUNS_DIR": str(tmp_path / "runs"),
        # this checkout's `lab`, whichever one is pip-installed
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
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
    assert not (tmp_path / "runs" / "14_cifar10_dataloader").exists()


@pytest.mark.parametrize(("old", "new"), MUTATIONS, ids=MUTATION_IDS)
def test_a_broken_lesson_fails_its_own_checks(cifar, runs_dir, old, new):
    assert_mutation_caught("14", old, new, "--dry-run")
