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
# scaled. We check each rule against a hand-written permute-and-divide, exactly.

# %% tags=["parameters"]
SPLIT = "train"  # which split the photo comes from
CLASS = "ants"  # which class folder (ants or bees)

# %%
import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from lab.lessons.harness import check, open_lesson, show
from lab.lessons.imaging import first_image, load_rgb

lesson = open_lesson(datasets=("hymenoptera",))
device = lesson.device

# %% [markdown]
# ## The photo, two ways
#
# Mind the two conventions: `PIL.Image.size` is `(width, height)`, while
# `np.asarray(image).shape` is `(height, width, 3)`.

# %%
path = first_image(lesson.data_dir, SPLIT, CLASS)
image = load_rgb(path)
array = np.array(image)  # a writable copy (np.asarray gives a read-only view)
print(f"{path.name}: PIL size (W, H) = {image.size}, NumPy shape (H, W, C) = {array.shape}")
print(f"top-left pixel (R, G, B) = {array[0, 0].tolist()}, dtype {array.dtype}")

# %% [markdown]
# ## What ToTensor does, written by hand
#
# Permute the axes, then divide by 255 — in that order, in the default float dtype.


# %%
def to_tensor_by_hand(array: np.ndarray) -> torch.Tensor:
    """HWC (or HW) uint8 → CHW float in [0, 1], the same arithmetic ToTensor uses."""
    if array.ndim == 2:
        array = array[:, :, None]
    chw = torch.from_numpy(np.array(array)).permute(2, 0, 1)  # a writable copy
    return chw.to(torch.get_default_dtype()).div(255)


def convert(image: Image.Image | np.ndarray) -> torch.Tensor:
    return transforms.ToTensor()(image)


width, height = image.size
tensor = convert(image)
print(
    f"ToTensor: {tuple(tensor.shape)} {tensor.dtype}, min {tensor.min():.3f} max {tensor.max():.3f}"
)
print(f"tensor[:, 0, 0] = {tensor[:, 0, 0].tolist()}  (= {array[0, 0].tolist()} / 255)")
check(
    tuple(tensor.shape) == (3, height, width),
    "ToTensor turns a PIL image of size (W, H) into a 3×H×W tensor",
)
check(
    tensor.dtype == torch.float32 and tensor.min() >= 0 and tensor.max() <= 1,
    "its values are float32 in [0, 1]",
)
check(
    torch.equal(tensor, to_tensor_by_hand(array)),
    "ToTensor(PIL) equals permute(2, 0, 1) then / 255, exactly",
)

# %% [markdown]
# A photo can be flat, and a flat photo looks the same flipped or with its axes mixed up.
# This 8×32 picture cannot: in each channel every value 0–255 occurs once, shifted from
# channel to channel. Element `[c, r, w]` of the tensor must be pixel `(r, w)`'s channel `c`
# divided by 255 — checked element by element, no permute involved.

# %%
probe = np.stack(
    [(np.arange(256).reshape(8, 32) + 85 * c) % 256 for c in range(3)], axis=-1
).astype(np.uint8)
by_index = torch.tensor(
    [
        [[np.float32(probe[r, w, c]) / np.float32(255) for w in range(32)] for r in range(8)]
        for c in range(3)
    ]
)
print(
    f"probe {probe.shape}: pixel (0, 1) = {probe[0, 1].tolist()}, (1, 0) = {probe[1, 0].tolist()}"
)
check(
    torch.equal(convert(probe), by_index) and torch.equal(to_tensor_by_hand(probe), by_index),
    "ToTensor and the by-hand version put pixel (r, w)'s channel c / 255 at [c, r, w]",
)

# %% [markdown]
# ## One picture per channel
#
# After the permute, `tensor[c]` is a whole H×W picture: the red, green and blue planes.

# %%
fig, axes = plt.subplots(1, 4, figsize=(10, 2.4))
axes[0].imshow(array)
axes[0].set_title(f"HWC {array.shape}")
for c, (ax, name) in enumerate(zip(axes[1:], ("R", "G", "B"), strict=True)):
    ax.imshow(tensor[c].numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"tensor[{c}] ({name}) {tuple(tensor[c].shape)}")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
show(fig, "channels")

# %% [markdown]
# ## NumPy arrays: uint8, grayscale, and the float trap

# %%
gray = array[:, :, 0]
floats = array.astype(np.float64)
not_scaled = convert(floats)
print(f"uint8 {array.shape} -> {tuple(convert(array).shape)}")
print(f"gray  {gray.shape} -> {tuple(convert(gray).shape)}")
print(f"float64 {floats.shape} -> {not_scaled.dtype}, max {not_scaled.max().item()} (not / 255!)")
check(
    torch.equal(convert(array), to_tensor_by_hand(array)),
    "a uint8 HWC ndarray converts exactly like the PIL image",
)
check(
    tuple(convert(gray).shape) == (1, *gray.shape)
    and torch.equal(convert(gray), to_tensor_by_hand(gray)),
    "a 2-D (grayscale) array gains a channel axis: H×W → 1×H×W",
)
check(
    not_scaled.dtype == torch.float64
    and torch.equal(not_scaled, torch.from_numpy(floats).permute(2, 0, 1)),
    "a float64 ndarray is permuted but NOT divided by 255 (only uint8 is scaled)",
)

# %% [markdown]
# ## Into TensorBoard
#
# `add_image` expects CHW by default and multiplies float images by 255 before saving a PNG,
# so the tensor shows the original pixels again. `add_image` writes what
# `torch.utils.tensorboard.summary.image` makes: we decode its PNG and compare, on the photo
# and on the probe, which holds every value 0–255 (any rounding slip would show).


# %%
def stored_by_add_image(chw: torch.Tensor) -> np.ndarray:
    """The pixels `add_image(tag, chw)` puts in the event file: its PNG, decoded (HWC)."""
    from torch.utils.tensorboard.summary import image as image_summary

    png = image_summary("to_tensor", chw, dataformats="CHW").value[0].image.encoded_image_string
    return np.asarray(Image.open(io.BytesIO(png)))


check(
    np.array_equal(stored_by_add_image(tensor), array)
    and np.array_equal(stored_by_add_image(convert(probe)), probe),
    "add_image turns the float CHW tensor back into exactly the original pixels",
)
lesson.writer.add_image("to_tensor/chw_float", tensor, 0)  # default dataformats="CHW"
lesson.writer.add_image("to_tensor/hwc_uint8", array, 0, dataformats="HWC")
lesson.writer.add_scalar("to_tensor/max", tensor.max().item(), 0)
lesson.writer.add_scalar("to_tensor/min", tensor.min().item(), 0)
print("logged to_tensor/chw_float (CHW float) and to_tensor/hwc_uint8 (HWC uint8)")

# %%
lesson.done()
