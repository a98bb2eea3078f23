"""Lesson 13: Normalize per channel, Resize's shorter-side rule, Compose, seeded RandomCrop."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.synthetic import install_hymenoptera
from support.tbutil import read_scalars, single_run_dir
from torchvision import transforms

lesson = definitions("13")
lesson11 = definitions("11")  # its event-file image reader

SEEDED = "        torch.manual_seed(seed)\n        return transforms.RandomCrop(size)(image)"
MUTATIONS = [
    ("return (x.double() - mean) / std", "return (x.double() - mean) * std"),
    ("if width <= height:", "if width >= height:"),
    ("images.double().transpose(0, 1).reshape(", "images.double().reshape("),
    ("torch.manual_seed(seed)\n        return", "torch.manual_seed(seed + 1)\n        return"),
    # the portrait branch: a landscape photo never reaches it
    ("return size, int(size * height / width)", "return size, int(size * width / height)"),
    # seeding the global RNG for good: the crops still come out right
    ("    with torch.random.fork_rng():\n" + SEEDED, SEEDED.replace("        ", "    ")),
    (SEEDED, "        return transforms.RandomCrop(size)(image)"),  # not seeded at all
    ("return transforms.RandomCrop(size)(image)", "return transforms.CenterCrop(size)(image)"),
]
MUTATION_IDS = [
    "times-std",
    "longer-side",
    "stats-mixed",
    "other-seed",
    "portrait",
    "no-fork-rng",
    "unseeded",
    "center-crop",
]


def test_normalize_by_hand_is_per_channel():
    x = torch.stack([torch.full((2, 2), v) for v in (0.2, 0.5, 1.0)])
    out = lesson.normalize_by_hand(x, [0.1, 0.5, 0.0], [0.5, 0.25, 2.0])
    assert out[:, 0, 0].tolist() == pytest.approx([0.2, 0.0, 0.5])
    assert torch.allclose(transforms.Normalize([0.1, 0.5, 0.0], [0.5, 0.25, 2.0])(x).double(), out)


def test_channel_stats_are_per_channel():
    batch = torch.zeros(2, 3, 1, 2)
    batch[:, 1] = 1.0
    batch[0, 2], batch[1, 2] = torch.tensor([0.0, 2.0]), torch.tensor([0.0, 2.0])
    mean, std = lesson.channel_stats(batch)
    assert mean == pytest.approx([0.0, 1.0, 1.0])
    assert std == pytest.approx([0.0, 0.0, (4 / 3) ** 0.5])  # unbiased: sum sq dev 4 over 3


@pytest.mark.parametrize(
    ("size", "resize", "expected"),
    [
        ((40, 32), 24, (30, 24)),
        ((32, 40), 24, (24, 30)),
        ((500, 375), 24, (32, 24)),
        ((375, 500), 64, (64, 85)),
        ((33, 33), 10, (10, 10)),
    ],
)
def test_resize_int_sets_the_shorter_side(size, resize, expected):
    assert lesson.resized_size_by_hand(*size, resize) == expected
    assert transforms.Resize(resize)(Image.new("RGB", size)).size == expected


def test_seeded_crop_is_the_hand_drawn_window_and_leaves_the_global_rng_alone():
    image = torch.arange(3 * 20 * 30, dtype=torch.float32).reshape(3, 20, 30)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    positions = set()
    for seed in range(10):
        crop = lesson.seeded_crop(image, (8, 12), seed)
        top, left = lesson.drawn_window(20, 30, (8, 12), seed)
        assert crop.shape == (3, 8, 12)
        assert 0 <= top <= 12 and 0 <= left <= 18
        assert torch.equal(crop, image[:, top : top + 8, left : left + 12])
        # what RandomCrop itself says it drew, under the same seed
        torch.manual_seed(seed)
        assert transforms.RandomCrop.get_params(image, (8, 12))[:2] == (top, left)
        positions.add((top, left))
    assert len(positions) > 1, "different seeds move the window"
    torch.manual_seed(123)
    for seed in range(3):
        lesson.seeded_crop(image, (8, 12), seed)
    assert torch.equal(torch.rand(1), expected_next)


def test_cells_check_their_claims_and_log_the_images(data_dir, runs_dir):
    install_hymenoptera(data_dir)
    ns = run_lesson("13", "--batch", "4", "--crops", "2", "--crop", "12")
    assert len(ns.lesson.checks) == 9
    assert ns.lesson.figures == ["batch", "resize", "crops"]
    assert ns.batch.shape == (4, 3, 64, 64)
    run_dir = single_run_dir(runs_dir, "13_transforms")
    images = lesson11.logged_images(run_dir)
    shapes = {
        tag: [image.shape for _, image in logged]
        for tag, logged in images.items()
        if tag.startswith("transforms/")
    }
    assert shapes == {  # the synthetic photo is 40×32 (W×H); Resize(24) makes it 30×24
        "transforms/original": [(32, 40, 3)],
        "transforms/resize": [(24, 30, 3)],
        "transforms/compose_denormalized": [(24, 30, 3)],
        "transforms/random_crop": [(12, 12, 3)] * 2,
    }
    scalars = read_scalars(run_dir)
    assert all(0 <= top <= 24 - 12 for _, top in scalars["random_crop/top"])
    assert all(0 <= left <= 30 - 12 for _, left in scalars["random_crop/left"])


def test_a_stray_non_image_file_is_skipped(data_dir, runs_dir):
    source = install_hymenoptera(data_dir)
    for cls in ("ants", "bees"):
        (source / "train" / cls / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0")
    ns = run_lesson("13", "--crops", "1")
    assert ns.batch.shape[0] == 11 and len(ns.lesson.checks) == 9  # 6 ants + 5 bees, no stray


@pytest.mark.parametrize(("old", "new"), MUTATIONS, ids=MUTATION_IDS)
def test_a_broken_lesson_fails_its_own_checks(data_dir, runs_dir, old, new):
    install_hymenoptera(data_dir)
    assert_mutation_caught("13", old, new, "--crops", "3")


# Typical wrong answers to 13's exercises, and what the check must say about each.
WRONG = {
    "13.1": [
        (
            """
from torchvision import transforms

def normalize_from_data(images):
    return transforms.Normalize(images.mean().item(), images.std().item())
""",
            "one mean for all channels: Normalize needs one per channel (3)",
        ),
        (
            """
from torchvision import transforms

def normalize_from_data(images):
    return transforms.Normalize(images.mean(dim=0), images.std(dim=0))
""",
            "Normalize's mean has shape (3, 4, 4), expected (3,): reduce over every axis but the "
            "channel one, dim=(0, 2, 3)",
        ),
        (
            """
from torchvision import transforms

def normalize_from_data(images):
    return transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
""",
            "those are ImageNet's statistics: measure these images' own",
        ),
        (
            """
def normalize_from_data(images):
    return images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3))
""",
            "normalize_from_data should return a transforms.Normalize, got tuple",
        ),
    ],
}
WRONG["13.1"] += [
    (
        """
from torchvision import transforms

def normalize_from_data(images):
    return transforms.Normalize(images.mean(dim=(0, 2, 3)), images.var(dim=(0, 2, 3)))
""",
        "that is the variance: Normalize takes the standard deviation",
    ),
    (
        """
from torchvision import transforms

def normalize_from_data(images):
    return transforms.Normalize(images.mean(dim=(2, 3)), images.std(dim=(2, 3)))
""",
        "Normalize's mean has shape (6, 3), expected (3,)",
    ),
]

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "13.1": [
        # the case: statistics in float32, as images usually are
        """
def normalize_from_data(images):
    images = images.float()
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3))
    return transforms.Normalize(mean.tolist(), std.tolist())
""",
        """
def normalize_from_data(images):
    per_channel = images.transpose(0, 1).reshape(images.shape[1], -1)
    std, mean = torch.std_mean(per_channel, dim=1, correction=0)
    return transforms.Normalize(mean, std)
""",
    ],
}
