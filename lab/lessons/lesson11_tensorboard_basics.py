# %% [markdown]
# # 11 · TensorBoard basics: add_image (HWC) and add_scalar with honest tags
#
# `torch.utils.tensorboard.SummaryWriter` writes event files under a run folder; the
# TensorBoard service (http://localhost:6006) draws whatever is there.
#
# - `add_image(tag, img, step)` expects **CHW** by default. An image read with PIL / NumPy is
#   **HWC**, so say so: `dataformats="HWC"`.
# - `add_scalar(tag, value, step)` draws one curve per tag. The tag is the only label the
#   chart gets, so it must name what is logged: a curve tagged `y=2x` must hold `2x`. (The
#   original notes logged `y = x` under the tag `y=2x` — the chart lied.)
#
# Rather than trusting the writer, we read the event file back with TensorBoard's own reader
# and check that every point and every pixel is what we meant to log.

# %%
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lab.data import require_dataset
from lab.lessons.harness import LessonRun, lesson_parser, run_main

# %% [markdown]
# ## An image from the dataset, as a NumPy array
#
# `np.asarray(pil_image)` is `(height, width, 3)` `uint8`: channels last (HWC).


# %%
def first_image(data_dir: Path | None = None, split: str = "train", cls: str = "ants") -> Path:
    """The first image (by name) of hymenoptera_data/<split>/<cls>."""
    folder = require_dataset("hymenoptera", data_dir) / split / cls
    images = sorted(path for path in folder.iterdir() if path.is_file())
    if not images:
        raise FileNotFoundError(f"no images in {folder}")
    return images[0]


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


# %% [markdown]
# ## Scalars whose tag is the function
#
# Each curve is declared once, as `tag -> function`, so the tag and the logged values cannot
# drift apart.

# %%
CURVES: dict[str, Callable[[int], float]] = {
    "y=2x": lambda x: 2 * x,
    "y=x^2": lambda x: x**2,
}


def log_curves(writer, steps: int = 100) -> None:
    for tag, function in CURVES.items():
        for x in range(steps):
            writer.add_scalar(tag, function(x), x)


# %% [markdown]
# ## Reading a run back, as TensorBoard does


# %%
def logged_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def logged_images(log_dir: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """``{tag: [(step, HWC uint8 array), ...]}`` decoded from the PNGs in the event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    return {
        tag: [
            (e.step, np.asarray(Image.open(io.BytesIO(e.encoded_image_string))))
            for e in events.Images(tag)
        ]
        for tag in events.Tags()["images"]
    }


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    path = first_image(run.args.data_dir)
    hwc = np.asarray(load_rgb(path))
    print(f"image {path.name}: type {type(hwc).__name__}, shape {hwc.shape} (H, W, C)")
    run.check(
        hwc.ndim == 3 and hwc.shape[2] == 3 and hwc.dtype == np.uint8,
        "a PIL image as NumPy is HWC uint8",
    )
    run.writer.add_image("hymenoptera/ants", hwc, 1, dataformats="HWC")
    try:
        run.writer.add_image("hymenoptera/wrong_layout", hwc, 1)  # read as CHW: C = H
        rejected = False
    except (TypeError, ValueError, AssertionError) as exc:
        print(f"HWC passed as CHW fails: {type(exc).__name__}: {exc}")
        rejected = True
    run.check(rejected, "without dataformats='HWC' the same array is misread (C = height)")

    steps = 10 if run.args.dry_run else 100
    log_curves(run.writer, steps)
    run.writer.flush()

    scalars = logged_scalars(run.log_dir)
    for tag, function in CURVES.items():
        points = scalars.get(tag, [])
        run.check(
            len(points) == steps and all(value == function(step) for step, value in points),
            f"every point under tag {tag!r} is {tag[2:]} at its step, as read back",
        )
    images = logged_images(run.log_dir)
    run.check(
        list(images) == ["hymenoptera/ants"]
        and np.array_equal(images["hymenoptera/ants"][0][1], hwc),
        "the image TensorBoard stores is the dataset image, pixel for pixel",
    )


def build_parser():
    return lesson_parser(
        "TensorBoard basics: add_image (HWC) and add_scalar with honest tags", data=True
    )


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("11_tensorboard_basics", run_lesson, argv, build_parser())


# %%
if __name__ == "__main__":
    main()
