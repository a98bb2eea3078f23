# %% [markdown]
# # 12 · ToTensor: from PIL / NumPy images to CHW float tensors
#
# Images arrive as PIL images or NumPy arrays laid out **HWC** (height, width, channels) with
# `uint8` values 0–255. PyTorch's convolutions want **CHW** floats. `transforms.ToTensor()`
# does both steps at once:
#
# - it permutes HWC → CHW (a 2-D grayscale array gains a channel axis: H×W → 1×H×W);
# - it scales `uint8` by exactly `1/255`, so values land in `[0, 1]`.
#
# One trap: a NumPy array that is **not** `uint8` (say float64) is permuted but **not**
# scaled. We check each rule against a hand-written permute-and-divide, exactly, and log the
# tensor to TensorBoard, which turns `[0, 1]` floats back into the same 0–255 pixels.

# %%
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from lab.lessons.harness import LessonRun, lesson_parser, run_main
from lab.lessons.lesson11_tensorboard_basics import first_image, load_rgb

# %% [markdown]
# ## What ToTensor does, written by hand
#
# Permute the axes, then divide by 255 — in that order, in the default float dtype.
# (The image comes from lesson 11's `first_image` / `load_rgb`. Mind the two conventions:
# `PIL.Image.size` is `(width, height)`, `np.asarray(image).shape` is `(height, width, 3)`.)


# %%
def to_tensor_by_hand(array: np.ndarray) -> torch.Tensor:
    """HWC (or HW) uint8 → CHW float in [0, 1], the same arithmetic ToTensor uses."""
    if array.ndim == 2:
        array = array[:, :, None]
    chw = torch.from_numpy(np.array(array)).permute(2, 0, 1)  # a writable copy
    return chw.to(torch.get_default_dtype()).div(255)


def convert(image: Image.Image | np.ndarray) -> torch.Tensor:
    return transforms.ToTensor()(image)


# %% [markdown]
# ## Checking each rule


# %%
def check_pil(run: LessonRun, image: Image.Image) -> torch.Tensor:
    width, height = image.size
    tensor = convert(image)
    print(f"PIL size (W, H) = {image.size} -> tensor {tuple(tensor.shape)} {tensor.dtype}")
    run.check(
        tuple(tensor.shape) == (3, height, width),
        "ToTensor turns a PIL image of size (W, H) into a 3×H×W tensor",
    )
    run.check(
        tensor.dtype == torch.float32 and tensor.min() >= 0 and tensor.max() <= 1,
        "its values are float32 in [0, 1]",
    )
    run.check(
        torch.equal(tensor, to_tensor_by_hand(np.asarray(image))),
        "ToTensor(PIL) equals permute(2, 0, 1) then / 255, exactly",
    )
    return tensor


def check_ndarray(run: LessonRun, array: np.ndarray) -> None:
    run.check(
        torch.equal(convert(array), to_tensor_by_hand(array)),
        "a uint8 HWC ndarray converts exactly like the PIL image",
    )
    gray = array[:, :, 0]
    run.check(
        tuple(convert(gray).shape) == (1, *gray.shape),
        "a 2-D (grayscale) array gains a channel axis: H×W → 1×H×W",
    )
    floats = array.astype(np.float64)
    not_scaled = convert(floats)
    run.check(
        not_scaled.dtype == torch.float64
        and torch.equal(not_scaled, torch.from_numpy(floats).permute(2, 0, 1)),
        "a float64 ndarray is permuted but NOT divided by 255 (only uint8 is scaled)",
    )


# %% [markdown]
# ## Into TensorBoard
#
# `add_image` expects CHW by default and multiplies float images by 255 before saving a PNG,
# so the tensor shows the original pixels again.


# %%
def run_lesson(run: LessonRun) -> None:
    path = first_image(run.args.data_dir)
    image = load_rgb(path)
    print(f"image: {path}")
    tensor = check_pil(run, image)
    check_ndarray(run, np.array(image))
    run.writer.add_image("to_tensor/chw_float", tensor, 0)  # default dataformats="CHW"
    run.writer.add_image("to_tensor/hwc_uint8", np.asarray(image), 0, dataformats="HWC")
    run.writer.add_scalar("to_tensor/max", tensor.max().item(), 0)
    run.writer.add_scalar("to_tensor/min", tensor.min().item(), 0)


def build_parser():
    return lesson_parser("ToTensor: from PIL / NumPy images to CHW float tensors", data=True)


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("12_to_tensor", run_lesson, argv, build_parser())


# %%
if __name__ == "__main__":
    main()
