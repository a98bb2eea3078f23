# %% [markdown]
# # 11 · TensorBoard basics: add_image (HWC) and add_scalar with honest tags
#
# `torch.utils.tensorboard.SummaryWriter` writes event files under a run folder; the
# TensorBoard service (http://localhost:6006) draws whatever is there. This lesson's writer is
# `lesson.writer`, logging to `<runs>/<this lesson>/<timestamp>`.
#
# - `add_image(tag, img, step)` expects **CHW** by default. An image read with PIL / NumPy is
#   **HWC**, so say so: `dataformats="HWC"`.
# - `add_scalar(tag, value, step)` draws one curve per tag. The tag is the only label the
#   chart gets, so it must name what is logged: a curve tagged `y=2x` must hold `2x`. (The
#   original notes logged `y = 3x` under the tag `y=2x` — the chart lied.)
#
# Rather than trusting the writer, we read the event file back with TensorBoard's own reader
# and check every point and every pixel against what we meant to log.

# %% tags=["parameters"]
STEPS = 100  # points logged per curve

# %%
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from lab.lessons.harness import check, open_lesson, show
from lab.lessons.imaging import first_image, image_files, image_grid, load_rgb

lesson = open_lesson(datasets=("hymenoptera",))
device = lesson.device
writer = lesson.writer

# %% [markdown]
# ## An image from the dataset, as a NumPy array
#
# `np.asarray(pil_image)` is `(height, width, 3)` `uint8`: channels last (HWC). Only files
# that are images are considered: a stray `.DS_Store` in the folder is skipped.

# %%
path = first_image(lesson.data_dir, "train", "ants")
hwc = np.asarray(load_rgb(path))
print(f"image {path.name}: type {type(hwc).__name__}, shape {hwc.shape} (H, W, C), {hwc.dtype}")
check(
    hwc.ndim == 3 and hwc.shape[2] == 3 and hwc.dtype == np.uint8,
    "a PIL image as NumPy is HWC uint8",
)

# A photo can be flat (a sky, a wall), and a flipped flat photo looks the same. This picture's
# pixels say where they are (red grows down the rows, green along the columns), so a flip or
# a transpose would show.
rows, cols = np.mgrid[0:24, 0:40]
probe = np.stack([rows * 10, cols * 6, np.full_like(rows, 128)], axis=-1).astype(np.uint8)
pictures = {"hymenoptera/ants": hwc, "probe/row_col": probe}
for tag, picture in pictures.items():
    writer.add_image(tag, picture, 1, dataformats="HWC")
print("logged", {tag: picture.shape for tag, picture in pictures.items()})

# %%
folder = path.parent
grid = [load_rgb(p) for p in image_files(folder)[:8]]
show(image_grid(grid, [p.name[:12] for p in image_files(folder)[:8]], ncols=4), "ants")

# %% [markdown]
# ## The HWC/CHW mix-up, for real
#
# Without `dataformats="HWC"` the writer takes our `(H, W, 3)` array as `(C, H, W)` and
# moves the "channels" last again: `(W, 3, H)`. PIL, which encodes the PNG, has no mode for
# an image with H channels and refuses it with a `TypeError` — nothing is logged.

# %%
try:
    writer.add_image("hymenoptera/wrong_layout", hwc, 1)  # dataformats defaults to "CHW"
    refused = None
except Exception as exc:  # noqa: BLE001 - we show whatever it is, then check its type
    refused = exc
    print(f"HWC passed as CHW: {type(exc).__name__}: {exc}")
check(isinstance(refused, TypeError), "without dataformats='HWC', PIL rejects it: TypeError")

# %% [markdown]
# ## Scalars whose tag is the function
#
# Each curve is declared once, as `tag -> function`. They go to their own run folder,
# `<this run>/curves` (TensorBoard lists it as a run of its own), started afresh whenever the
# cell runs — so you can change `STEPS` or a function and re-run it.

# %%
CURVES: dict[str, Callable[[int], float]] = {
    "y=2x": lambda x: 2 * x,
    "y=x^2": lambda x: x**2,
}


def log_curves(log_dir: Path, steps: int = 100) -> Path:
    """Every curve's first ``steps`` points, in a fresh run folder ``log_dir``."""
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(log_dir, ignore_errors=True)
    with SummaryWriter(str(log_dir)) as curves_writer:
        for tag, function in CURVES.items():
            for x in range(steps):
                curves_writer.add_scalar(tag, function(x), x)
    return log_dir


curves_dir = log_curves(lesson.log_dir / "curves", STEPS)
print(f"logged to {curves_dir}")
print("x     " + "".join(f"{x:>6}" for x in range(5)))
for tag, function in CURVES.items():
    print(f"{tag:<6}" + "".join(f"{function(x):>6}" for x in range(5)))

# %% [markdown]
# ## Reading the run back, as TensorBoard does
#
# `EventAccumulator` is what the TensorBoard service uses to read event files. The check
# compares what it reads with what each tag *says*, computed independently with NumPy — not
# with the functions that produced the values (that would pass whatever they logged).


# %%
def logged_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


scalars = logged_scalars(curves_dir)
x = np.arange(STEPS)
what_the_tag_says = {"y=2x": 2 * x, "y=x^2": x**2}
print("tags in the run:", sorted(scalars))
check(
    sorted(scalars) == sorted(what_the_tag_says),
    "the run holds exactly the curves whose tags we can check",
)
fig, ax = plt.subplots(figsize=(5, 3))
for tag, expected in what_the_tag_says.items():
    points = scalars.get(tag, [])
    steps = [step for step, _ in points]
    values = np.array([value for _, value in points])
    ax.plot(steps, values, label=f"read back: {tag}")
    check(
        steps == list(range(STEPS)) and np.array_equal(values, expected),
        f"every point under tag {tag!r} is {tag[2:]} at its step, as read back",
    )
ax.set(xlabel="step", ylabel="value", yscale="symlog", title="scalars read from the event file")
ax.legend()
show(fig, "curves_read_back")

# %% [markdown]
# ## And the image, pixel for pixel
#
# Images are stored as PNGs inside the event file; decoding them gives back HWC arrays.


# %%
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


writer.flush()
images = logged_images(lesson.log_dir)
print("image tags in the run:", sorted(images))
check("hymenoptera/wrong_layout" not in images, "the refused image left nothing in the run")
check(
    all(np.array_equal(images[tag][-1][1], picture) for tag, picture in pictures.items()),
    "the images TensorBoard stores are the ones we logged, pixel for pixel",
)

# %%
lesson.done()
