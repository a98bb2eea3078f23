# %% [markdown]
# # 09 · A custom Dataset over image and label folders, ConcatDataset, DataLoader
#
# A `torch.utils.data.Dataset` is any object with `__len__` and `__getitem__(index)`. Ours
# reads the "image folder + label folder" layout (lesson 10 shows how it is made):
#
# ```
# hymenoptera_labeled/train/ants_image/0013035.jpg
# hymenoptera_labeled/train/ants_label/0013035.txt   ← holds "ants"
# ```
#
# and returns `(image, label)`, where the label is read from the label file. Run the cells one
# at a time (Shift+Enter); each one shows what it did.

# %% tags=["parameters"]
SIDE = 64  # images are resized to SIDE × SIDE so a DataLoader can stack them
BATCH_SIZE = 4  # images per batch
WORKERS = 0  # DataLoader worker processes (0 = load in this process)

# %%
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision import transforms

from lab.data.labels import LABELED_DIR, generate_labels, is_image
from lab.lessons.harness import check, open_lesson, show
from lab.lessons.imaging import image_grid, load_rgb

CLASSES = ("ants", "bees")

lesson = open_lesson(datasets=("hymenoptera",))
device = lesson.device

# %% [markdown]
# ## Where the labeled layout lives
#
# Made on first use if missing, by the same code as `invoke generate-labels` (lesson 10).


# %%
def labeled_root(data_dir: Path, split: str = "train") -> Path:
    root = Path(data_dir) / LABELED_DIR
    if not (root / split).is_dir():
        print(f"{root} is missing: making it as `invoke generate-labels` does")
        generate_labels(data_dir)
    return root / split


root = labeled_root(lesson.data_dir)
for folder in sorted(root.iterdir()):
    print(f"{folder.relative_to(root.parent.parent)}: {len(list(folder.iterdir()))} files")

# %% [markdown]
# ## The Dataset
#
# It lists the images once; each `__getitem__` opens one image and reads its label file.
# The label comes from the file, not from the folder name — that is the point of the layout.


# %%
class ImageLabelFolder(Dataset):
    """Images in ``<root>/<cls>_image/``, labels in ``<root>/<cls>_label/<image stem>.txt``."""

    def __init__(self, root: Path, cls: str, transform=None, target_transform=None) -> None:
        self.image_dir = Path(root) / f"{cls}_image"
        self.label_dir = Path(root) / f"{cls}_label"
        self.images = sorted(p for p in self.image_dir.iterdir() if is_image(p))
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        path = self.images[index]
        with Image.open(path) as image:
            image = image.convert("RGB")
        label = (self.label_dir / f"{path.stem}.txt").read_text(encoding="utf-8").strip()
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label


def ants_and_bees(root: Path, transform=None, target_transform=None) -> list[ImageLabelFolder]:
    return [ImageLabelFolder(root, cls, transform, target_transform) for cls in CLASSES]


ants, bees = ants_and_bees(root)
image, label = ants[0]
print(f"len(ants) = {len(ants)}, len(bees) = {len(bees)}")
print(f"ants[0] = ({type(image).__name__} mode {image.mode} size {image.size}, {label!r})")
labels = {
    cls: [label for _, label in dataset] for cls, dataset in zip(CLASSES, (ants, bees), strict=True)
}
check(
    all(label == cls for cls in CLASSES for label in labels[cls]),
    "every sample's label (read from its label file) is its class name",
)

# %% [markdown]
# ## The label file decides, not the folder
#
# Every label file above says its folder's class, so a Dataset that took the folder name (or
# paired an image with the wrong label file) would pass that check too. A scratch layout tells
# them apart: two ant photos in `ants_image/`, the first one's label file saying "bees" (a
# curator's correction, say). The Dataset must return each photo with its own file's text.

# %%
with tempfile.TemporaryDirectory() as scratch:
    corrected = {"first": "bees", "second": "ants"}  # image stem -> its label file's text
    (Path(scratch) / "ants_image").mkdir()
    (Path(scratch) / "ants_label").mkdir()
    for (stem, text), source in zip(corrected.items(), ants.images, strict=False):
        shutil.copy(source, Path(scratch) / "ants_image" / f"{stem}{source.suffix}")
        (Path(scratch) / "ants_label" / f"{stem}.txt").write_text(text, encoding="utf-8")
    relabeled = list(ImageLabelFolder(Path(scratch), "ants"))
    sources = [np.asarray(load_rgb(path)) for path in ants.images[:2]]
print("in ants_image/, with their label files:", [label for _, label in relabeled])
check(
    [label for _, label in relabeled] == list(corrected.values())
    and all(
        np.array_equal(np.asarray(image), pixels)
        for (image, _), pixels in zip(relabeled, sources, strict=True)
    ),
    "each image comes with the text of its own label file, even where it contradicts the folder",
)

# %%
samples = [ants[i] for i in range(min(4, len(ants)))] + [bees[i] for i in range(min(4, len(bees)))]
show(image_grid([s[0] for s in samples], [s[1] for s in samples], ncols=4), "samples")

# %% [markdown]
# ## ConcatDataset: `ants + bees`
#
# `Dataset.__add__` makes a `ConcatDataset`: its length is the sum, and index `len(ants)` is
# the first bee.


# %%
def same_sample(a, b) -> bool:
    """Two (PIL image, label) samples hold the same pixels and label."""
    return a[1] == b[1] and a[0].size == b[0].size and a[0].tobytes() == b[0].tobytes()


both = ants + bees
print(f"type {type(both).__name__}: ants {len(ants)} + bees {len(bees)} = {len(both)}")
last_ant, first_bee = both[len(ants) - 1], both[len(ants)]
print(f"both[{len(ants) - 1}] -> {last_ant[1]!r}, both[{len(ants)}] -> {first_bee[1]!r}")
check(
    isinstance(both, ConcatDataset) and len(both) == len(ants) + len(bees),
    "ants + bees is a ConcatDataset whose length is the sum",
)
check(
    same_sample(both[len(ants) - 1], ants[len(ants) - 1])
    and same_sample(both[len(ants)], bees[0])
    and same_sample(both[-1], bees[-1]),
    "index len(ants) - 1 is the last ant, len(ants) the first bee, -1 the last bee",
)

# %% [markdown]
# ## A DataLoader: shuffled batches
#
# Stacking needs equal shapes and photos come in all sizes, so a transform resizes each image
# and makes it a tensor; a `target_transform` turns the label text into a class index. The
# last batch holds the remainder. The loader shuffles with its own seeded generator, so the
# order is the seed's, not whatever ran before.


# %%
def tensor_dataset(root: Path, side: int) -> ConcatDataset:
    """Ants then bees, each image resized to side × side and made a tensor, labels 0/1."""
    resize = transforms.Compose([transforms.Resize((side, side)), transforms.ToTensor()])
    return ConcatDataset(ants_and_bees(root, resize, CLASSES.index))


def make_loader(dataset, batch_size: int, workers: int = 0, seed: int = 0) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )


dataset = tensor_dataset(root, SIDE)
loader = make_loader(dataset, BATCH_SIZE, WORKERS)
shapes, seen = [], []
for images, batch_labels in loader:
    shapes.append(tuple(images.shape))
    seen.append(batch_labels)
    if len(shapes) == 1:
        first_batch, first_labels = images, batch_labels
print(f"{len(shapes)} batches: {shapes[0]} … {shapes[-1]}")

total = len(loader.dataset)
full, last = divmod(total, BATCH_SIZE)
expected = [(BATCH_SIZE, 3, SIDE, SIDE)] * full + ([(last, 3, SIDE, SIDE)] if last else [])
check(shapes == expected, f"batches are B×3×{SIDE}×{SIDE}, the last one holding the remainder")

on_disk = [len(list((root / f"{cls}_label").glob("*.txt"))) for cls in CLASSES]
counts = torch.bincount(torch.cat(seen), minlength=len(CLASSES)).tolist()
print(
    f"labels seen in one epoch: {dict(zip(CLASSES, counts, strict=True))}, label files: {on_disk}"
)
check(counts == on_disk, "one shuffled epoch yields as many ants and bees as there are label files")
for cls, count in zip(CLASSES, counts, strict=True):
    lesson.writer.add_scalar(f"epoch_label_count/{cls}", count, 0)

# %% [markdown]
# Which sample came when? A loader over the indices `range(len(dataset))` with the same seed
# draws the same order (the generator alone decides it). So the labels of the epoch above must
# be the stored labels (read sample by sample, no loader) at those indices, and every index
# must come exactly once, not in the dataset's order.


# %%
def epoch_order(n: int, batch_size: int, seed: int = 0) -> list[int]:
    """The indices, in order, that one epoch of `make_loader(…, seed)` visits."""
    return torch.cat(list(make_loader(range(n), batch_size, seed=seed))).tolist()


order = epoch_order(len(dataset), BATCH_SIZE)
stored = torch.tensor(
    [label for part in ants_and_bees(root, None, CLASSES.index) for _, label in part]
)
print(f"first indices drawn: {order[:8]} …")
check(
    sorted(order) == list(range(len(dataset))) and torch.equal(torch.cat(seen), stored[order]),
    "one epoch visits every sample exactly once, each batch with its samples' own labels",
)
check(order != sorted(order), "shuffle=True: the epoch's order is not the dataset's")
check(
    epoch_order(len(dataset), BATCH_SIZE, seed=0) == order
    and epoch_order(len(dataset), BATCH_SIZE, seed=1) != order,
    "the loader's seed decides its order: the same seed again gives it again, another does not",
)

# %%
titles = [CLASSES[int(k)] for k in first_labels]
show(image_grid(first_batch, titles, ncols=BATCH_SIZE), "first_batch")

# %% [markdown]
# ## What to take away
#
# - A Dataset is `__len__` + `__getitem__`; where the label comes from is up to you.
# - `a + b` concatenates datasets; a DataLoader shuffles, transforms and stacks them.

# %%
lesson.done()
