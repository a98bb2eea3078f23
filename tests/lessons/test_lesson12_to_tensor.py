"""Lesson 12: ToTensor permutes HWC → CHW and divides uint8 by 255, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from support.synthetic import install_hymenoptera
from support.tbutil import single_run_dir

from lab.data import DatasetMissing
from lab.lessons import lesson11_tensorboard_basics as lesson11
from lab.lessons import lesson12_to_tensor as lesson


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


def test_grayscale_gains_a_channel_axis(pixels):
    gray = Image.fromarray(pixels[:, :, 0])  # 2-D uint8: mode "L"
    assert lesson.convert(gray).shape == (1, 5, 7)
    assert torch.equal(lesson.convert(gray), lesson.to_tensor_by_hand(pixels[:, :, 0]))


def test_float_arrays_are_not_scaled(pixels):
    floats = pixels.astype(np.float64)
    converted = lesson.convert(floats)
    assert converted.dtype == torch.float64 and converted.max().item() == pixels.max()


def test_main_checks_its_claims_and_logs_the_same_pixels(data_dir, runs_dir):
    install_hymenoptera(data_dir)
    run = lesson.main(["--device", "cpu", "--dry-run"])
    assert len(run.checks) == 6
    with Image.open(data_dir / "hymenoptera_data/train/ants/ants_000.jpg") as image:
        expected = np.asarray(image.convert("RGB"))
    images = lesson11.logged_images(single_run_dir(runs_dir, "12_to_tensor"))
    # the float CHW tensor comes back from TensorBoard as the original 0-255 pixels
    assert np.array_equal(images["to_tensor/chw_float"][0][1], expected)
    assert np.array_equal(images["to_tensor/hwc_uint8"][0][1], expected)


def test_missing_dataset_names_the_fetch_command(data_dir, runs_dir):
    with pytest.raises(DatasetMissing) as info:
        lesson.main(["--device", "cpu"])
    assert "invoke download-data --dataset hymenoptera" in info.value.message
