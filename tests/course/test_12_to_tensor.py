"""Lesson 12: ToTensor permutes HWC → CHW and divides uint8 by 255, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.synthetic import install_hymenoptera
from support.tbutil import read_scalars, single_run_dir

lesson = definitions("12")
lesson11 = definitions("11")  # its event-file image reader

MUTATIONS = [
    ("permute(2, 0, 1)  # a writable copy", "permute(2, 1, 0)  # a writable copy"),
    (".div(255)", ".div(256)"),
    ("array = array[:, :, None]", "array = array[None]"),
    # upside down: a flat photo looks the same, the probe does not
    ("permute(2, 0, 1)  # a writable copy", "permute(2, 0, 1).flip(1)  # a writable copy"),
    # rows and columns read in the wrong order, then put back in shape
    (
        "chw = torch.from_numpy(np.array(array)).permute(2, 0, 1)",
        "chw = torch.from_numpy(np.array(array)).permute(2, 1, 0).reshape(array.shape[2], "
        "*array.shape[:2])",
    ),
    ("floats = array.astype(np.float64)", "floats = array.astype(np.float32)"),
]
MUTATION_IDS = ["transpose", "div-256", "gray-axis", "upside-down", "scrambled", "float32"]


@pytest.fixture
def pixels():
    return np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def test_pixel_rc_channel_c_becomes_element_c_r_col(pixels):
    for converted in (
        lesson.convert(pixels),
        lesson.convert(Image.fromarray(pixels)),
        lesson.to_tensor_by_hand(pixels),
    ):
        assert converted.shape == (3, 5, 7) and converted.dtype == torch.float32
        for c, r, col in [(0, 0, 0), (2, 4, 6), (1, 3, 2)]:
            assert converted[c, r, col].item() == np.float32(pixels[r, col, c]) / np.float32(255)
        assert 0 <= converted.min() and converted.max() <= 1


def test_black_and_white_map_to_0_and_1():
    extremes = np.array([[[0, 255, 0]]], dtype=np.uint8)
    assert lesson.convert(extremes).flatten().tolist() == [0.0, 1.0, 0.0]
    assert lesson.to_tensor_by_hand(extremes).flatten().tolist() == [0.0, 1.0, 0.0]


def test_grayscale_gains_a_channel_axis(pixels):
    gray = Image.fromarray(pixels[:, :, 0])  # 2-D uint8: mode "L"
    assert lesson.convert(gray).shape == (1, 5, 7)
    assert torch.equal(lesson.convert(gray), lesson.to_tensor_by_hand(pixels[:, :, 0]))


def test_float_arrays_are_not_scaled(pixels):
    floats = pixels.astype(np.float64)
    converted = lesson.convert(floats)
    assert converted.dtype == torch.float64 and converted.max().item() == pixels.max()


@pytest.mark.parametrize(("split", "cls"), [("train", "ants"), ("val", "bees")])
def test_cells_check_their_claims_and_log_the_same_pixels(data_dir, runs_dir, split, cls):
    install_hymenoptera(data_dir)
    ns = run_lesson("12", "--split", split, "--class", cls)
    assert len(ns.lesson.checks) == 8 and ns.lesson.figures == ["channels"]
    with Image.open(data_dir / f"hymenoptera_data/{split}/{cls}/{cls}_000.jpg") as image:
        expected = np.asarray(image.convert("RGB"))
    run_dir = single_run_dir(runs_dir, "12_to_tensor")
    images = lesson11.logged_images(run_dir)
    # the float CHW tensor comes back from TensorBoard as the original 0-255 pixels
    assert np.array_equal(images["to_tensor/chw_float"][0][1], expected)
    assert np.array_equal(images["to_tensor/hwc_uint8"][0][1], expected)
    assert read_scalars(run_dir)["to_tensor/max"][0][1] == pytest.approx(expected.max() / 255)


@pytest.mark.parametrize(("old", "new"), MUTATIONS, ids=MUTATION_IDS)
def test_a_broken_lesson_fails_its_own_checks(data_dir, runs_dir, old, new):
    install_hymenoptera(data_dir)
    assert_mutation_caught("12", old, new)
