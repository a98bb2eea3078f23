"""Small image helpers the data lessons (09–15) share: pick a photo, open it, draw a grid.

Not a lesson (the registry only lists ``lessonNN_*.py``). Pictures go through
``harness.show`` in the lessons, so they appear under the cell and in the run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from lab.data import require_dataset
from lab.data.labels import is_image


def image_files(folder: Path) -> list[Path]:
    """The images in ``folder`` by name; anything else (a stray ``.DS_Store``, notes) is
    skipped rather than handed to PIL."""
    return sorted(path for path in Path(folder).iterdir() if is_image(path))


def first_image(data_dir: Path | None = None, split: str = "train", cls: str = "ants") -> Path:
    """The first image (by name) of ``hymenoptera_data/<split>/<cls>``."""
    folder = require_dataset("hymenoptera", data_dir) / split / cls
    images = image_files(folder)
    if not images:
        raise FileNotFoundError(f"no images in {folder}")
    return images[0]


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _as_hwc(image) -> np.ndarray:
    """PIL image, HWC array, or CHW / HW tensor → an array imshow draws."""
    if isinstance(image, Image.Image):
        return np.asarray(image)
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
        array = array.transpose(1, 2, 0)  # CHW tensor → HWC
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return array


def image_grid(images, titles=None, ncols: int = 8, size: float = 1.5, gray: bool = False):
    """A matplotlib figure with the images in rows of ``ncols``, each with its title."""
    import matplotlib.pyplot as plt

    images = list(images)
    ncols = max(1, min(ncols, len(images)))
    nrows = max(1, math.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    for k, image in enumerate(images):
        array = _as_hwc(image)
        if array.dtype.kind == "f":
            array = array.clip(0, 1) if array.ndim == 3 else array  # imshow wants floats in [0, 1]
        axes[k].imshow(array, cmap="gray" if gray or array.ndim == 2 else None)
        if titles is not None:
            axes[k].set_title(str(titles[k]), fontsize=8)
    fig.tight_layout()
    return fig
