"""Lesson 11: add_image with HWC data and scalars whose tag names the function, read back."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support.synthetic import install_hymenoptera
from support.tbutil import read_scalars, single_run_dir

from lab.data import DatasetMissing
from lab.lessons import lesson11_tensorboard_basics as lesson


def decoded_images(run_dir):
    """Images in the event file, decoded here without the lesson's helper."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return {
        tag: [
            np.asarray(Image.open(io.BytesIO(e.encoded_image_string))) for e in events.Images(tag)
        ]
        for tag in events.Tags()["images"]
    }


@pytest.mark.parametrize(("argv", "points"), [(["--dry-run"], 10), ([], 100)])
def test_each_tag_holds_the_function_it_names(data_dir, runs_dir, argv, points):
    install_hymenoptera(data_dir)
    run = lesson.main(["--device", "cpu", *argv])
    assert len(run.checks) == 5
    scalars = read_scalars(single_run_dir(runs_dir, "11_tensorboard_basics"))
    assert set(scalars) == {"y=2x", "y=x^2"}
    assert scalars["y=2x"] == [(x, 2.0 * x) for x in range(points)]
    assert scalars["y=x^2"] == [(x, float(x * x)) for x in range(points)]


def test_the_logged_image_is_the_dataset_image_in_hwc(data_dir, runs_dir):
    install_hymenoptera(data_dir)
    lesson.main(["--device", "cpu", "--dry-run"])
    run_dir = single_run_dir(runs_dir, "11_tensorboard_basics")
    with Image.open(data_dir / "hymenoptera_data/train/ants/ants_000.jpg") as image:
        expected = np.asarray(image.convert("RGB"))
    images = decoded_images(run_dir)
    assert list(images) == ["hymenoptera/ants"], "the misread CHW attempt is not logged"
    assert images["hymenoptera/ants"][0].shape == (32, 40, 3)
    assert np.array_equal(images["hymenoptera/ants"][0], expected)
    # the lesson's own reader agrees with this independent one
    ours = lesson.logged_images(run_dir)
    assert np.array_equal(ours["hymenoptera/ants"][0][1], expected)
    assert lesson.logged_scalars(run_dir) == read_scalars(run_dir)


def test_reader_sees_a_lying_tag(runs_dir):
    """The read-back the lesson relies on would catch the original notes' mistake."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = runs_dir / "lie"
    with SummaryWriter(str(log_dir)) as writer:
        for x in range(5):
            writer.add_scalar("y=2x", x, x)  # logs y = x under a tag that says 2x
    points = lesson.logged_scalars(log_dir)["y=2x"]
    assert not all(value == lesson.CURVES["y=2x"](step) for step, value in points)


def test_first_image_is_the_first_by_name(data_dir):
    install_hymenoptera(data_dir)
    assert lesson.first_image(data_dir, "val", "bees").name == "bees_000.jpg"
    assert lesson.load_rgb(lesson.first_image(data_dir)).mode == "RGB"


def test_missing_dataset_names_the_fetch_command(data_dir, runs_dir):
    with pytest.raises(DatasetMissing) as info:
        lesson.main(["--device", "cpu"])
    assert "invoke download-data --dataset hymenoptera" in info.value.message
