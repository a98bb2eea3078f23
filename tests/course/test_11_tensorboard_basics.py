"""Lesson 11: add_image with HWC data (and PIL's TypeError without it), scalars whose tag
names the function, read back and compared with what the tag says."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.synthetic import install_hymenoptera
from support.tbutil import read_image_sizes, read_scalars, single_run_dir

lesson = definitions("11")

MUTATIONS = [
    ('"y=2x": lambda x: 2 * x', '"y=2x": lambda x: 3 * x'),  # the original notes' lie
    ('"y=x^2": lambda x: x**2', '"y=x^2": lambda x: x * 2'),
    ("hwc = np.asarray(load_rgb(path))", 'hwc = np.asarray(load_rgb(path).convert("L"))'),
    ("add_scalar(tag, function(x), x)", "add_scalar(tag, function(x), x + 1)"),  # steps from 1
    # a third curve nobody checks, lying under its tag
    ('"y=x^2": lambda x: x**2,', '"y=x^2": lambda x: x**2,\n    "y=x^3": lambda x: x**2,'),
    # upside down: invisible on a flat photo, not on the probe
    ("writer.add_image(tag, picture, 1,", "writer.add_image(tag, picture[::-1], 1,"),
    ("writer.add_image(tag, picture, 1,", "writer.add_image(tag, picture[:, :, ::-1], 1,"),  # BGR
]
MUTATION_IDS = [
    "3x-as-2x",
    "2x-as-x^2",
    "grayscale",
    "steps-from-1",
    "unchecked-tag",
    "upside-down",
    "bgr",
]


@pytest.mark.parametrize("steps", [10, 100])
def test_each_tag_holds_the_function_it_names(data_dir, runs_dir, steps):
    install_hymenoptera(data_dir)
    ns = run_lesson("11", "--steps", str(steps))
    assert len(ns.lesson.checks) == 7
    assert ns.lesson.figures == ["ants", "curves_read_back"]
    scalars = read_scalars(single_run_dir(runs_dir, "11_tensorboard_basics") / "curves")
    assert set(scalars) == {"y=2x", "y=x^2"}
    assert scalars["y=2x"] == [(x, 2.0 * x) for x in range(steps)]
    assert scalars["y=x^2"] == [(x, float(x * x)) for x in range(steps)]


def test_the_logged_image_is_the_dataset_image_in_hwc(data_dir, runs_dir):
    install_hymenoptera(data_dir)
    run_lesson("11", "--steps", "5")
    run_dir = single_run_dir(runs_dir, "11_tensorboard_basics")
    with Image.open(data_dir / "hymenoptera_data/train/ants/ants_000.jpg") as image:
        expected = np.asarray(image.convert("RGB"))
    sizes = read_image_sizes(run_dir)
    assert sizes["hymenoptera/ants"] == [(1, 40, 32)]
    assert "hymenoptera/wrong_layout" not in sizes, "the refused CHW attempt logged nothing"
    ((step, decoded),) = lesson.logged_images(run_dir)["hymenoptera/ants"]
    assert step == 1 and np.array_equal(decoded, expected)
    assert lesson.logged_scalars(run_dir / "curves") == read_scalars(run_dir / "curves")


def test_hwc_as_chw_is_a_type_error_from_pil(runs_dir):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(runs_dir / "mixup")) as writer, pytest.raises(TypeError):
        writer.add_image("x", np.zeros((32, 40, 3), dtype=np.uint8), 0)


def test_the_read_back_sees_a_lying_tag(runs_dir):
    """The original notes' mistake, 3x under "y=2x", read back: not what the tag says."""
    log_dir = runs_dir / "lie"
    lesson.CURVES["y=2x"] = lambda x: 3 * x  # definitions() is a fresh module per test file
    try:
        lesson.log_curves(log_dir, 5)
    finally:
        lesson.CURVES["y=2x"] = lambda x: 2 * x
    points = lesson.logged_scalars(log_dir)["y=2x"]
    assert [value for _, value in points] == [0.0, 3.0, 6.0, 9.0, 12.0]


def test_log_curves_starts_its_folder_afresh(runs_dir):
    log_dir = runs_dir / "curves"
    lesson.log_curves(log_dir, 8)
    lesson.log_curves(log_dir, 3)  # a learner re-running the cell with a smaller STEPS
    assert [step for step, _ in read_scalars(log_dir)["y=2x"]] == [0, 1, 2]


def test_a_stray_non_image_file_is_skipped(data_dir, runs_dir):
    source = install_hymenoptera(data_dir)
    (source / "train" / "ants" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1\0")
    (source / "train" / "ants" / "README").write_text("notes", encoding="utf-8")
    ns = run_lesson("11", "--steps", "3")
    assert ns.path.name == "ants_000.jpg" and len(ns.lesson.checks) == 7


@pytest.mark.parametrize(("old", "new"), MUTATIONS, ids=MUTATION_IDS)
def test_a_broken_lesson_fails_its_own_checks(data_dir, runs_dir, old, new):
    install_hymenoptera(data_dir)
    assert_mutation_caught("11", old, new, "--steps", "10")
