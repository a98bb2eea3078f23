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
# and returns `(image, label)`, where the label is read from the label file.
#
# - `ants + bees` (a `ConcatDataset`) chains datasets: its length is the sum, index
#   `len(ants)` is the first bee.
# - A `DataLoader` draws samples and stacks them into batches. Stacking needs equal shapes, and
#   photos come in all sizes, so a transform resizes each image and makes it a tensor; a
#   `target_transform` turns the label text into a class index.

# %%
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision import transforms

from lab.data import require_dataset
from lab.data.labels import LABELED_DIR, generate_labels, is_image
from lab.lessons.harness import LessonRun, lesson_parser, run_main
from lab.paths import data_dir as default_data_dir

CLASSES = ("ants", "bees")

# %% [markdown]
# ## The Dataset
#
# It lists the images once; each `__getitem__` opens one image and its label file.


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


# %% [markdown]
# ## Where the labeled layout lives
#
# Made on first use if missing, by the same code as `invoke generate-labels`.


# %%
def labeled_root(data_dir: Path | None = None, split: str = "train") -> Path:
    root = (Path(data_dir) if data_dir is not None else default_data_dir()) / LABELED_DIR
    if not (root / split).is_dir():
        require_dataset("hymenoptera", data_dir)  # missing: one line naming the fetch command
        print(f"{root} is missing: making it as `invoke generate-labels` does")
        generate_labels(data_dir)
    return root / split


def ants_and_bees(root: Path, transform=None, target_transform=None) -> list[ImageLabelFolder]:
    return [ImageLabelFolder(root, cls, transform, target_transform) for cls in CLASSES]


# %% [markdown]
# ## The whole lesson


# %%
def same_sample(a, b) -> bool:
    """Two (PIL image, label) samples hold the same pixels and label."""
    return a[1] == b[1] and a[0].size == b[0].size and a[0].tobytes() == b[0].tobytes()


def check_concat(run: LessonRun, ants: ImageLabelFolder, bees: ImageLabelFolder):
    both = ants + bees  # Dataset.__add__ makes a ConcatDataset
    print(f"ants {len(ants)} + bees {len(bees)} = {len(both)} samples")
    run.check(
        isinstance(both, ConcatDataset) and len(both) == len(ants) + len(bees),
        "ants + bees is a ConcatDataset whose length is the sum",
    )
    run.check(
        same_sample(both[len(ants) - 1], ants[len(ants) - 1])
        and same_sample(both[len(ants)], bees[0])
        and same_sample(both[-1], bees[-1]),
        "index len(ants) - 1 is the last ant, len(ants) the first bee, -1 the last bee",
    )
    labels_ok = all(
        label == cls
        for dataset, cls in zip((ants, bees), CLASSES, strict=True)
        for _, label in dataset
    )
    run.check(labels_ok, "every sample's label (read from its label file) is its class name")
    return both


def check_loader(run: LessonRun, root: Path, sizes: tuple[int, int], batch_size: int) -> None:
    side = 32 if run.args.dry_run else 64
    resize = transforms.Compose([transforms.Resize((side, side)), transforms.ToTensor()])
    dataset = ConcatDataset(ants_and_bees(root, resize, CLASSES.index))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=run.args.workers,
        generator=torch.Generator().manual_seed(0),
    )
    shapes, labels = [], []
    for step, (images, batch_labels) in enumerate(loader):
        shapes.append(tuple(images.shape))
        labels.append(batch_labels)
        if step == 0:
            run.writer.add_images("custom_dataset/first_batch", images, 0)
    full, last = divmod(len(dataset), batch_size)
    expected = [(batch_size, 3, side, side)] * full + ([(last, 3, side, side)] if last else [])
    print(f"{len(shapes)} batches: {shapes[0]} ... {shapes[-1]}")
    run.check(
        shapes == expected, f"batches are B×3×{side}×{side}, the last one holding the remainder"
    )
    counts = torch.bincount(torch.cat(labels), minlength=len(CLASSES))
    run.check(
        counts.tolist() == list(sizes),
        "one shuffled epoch yields every ant and every bee exactly once (by label count)",
    )
    for cls, count in zip(CLASSES, counts.tolist(), strict=True):
        run.writer.add_scalar(f"epoch_label_count/{cls}", count, 0)


def run_lesson(run: LessonRun) -> None:
    root = labeled_root(run.args.data_dir)
    ants, bees = ants_and_bees(root)
    image, label = ants[0]
    print(f"ants[0] = ({type(image).__name__} {image.size}, {label!r})")
    run.writer.add_image(f"custom_dataset/{label}_0", transforms.ToTensor()(image), 0)
    check_concat(run, ants, bees)
    check_loader(run, root, (len(ants), len(bees)), batch_size=4)


def build_parser():
    parser = lesson_parser("A custom Dataset over image and label folders", data=True)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="DataLoader worker processes (default: 0 = load in this process)",
    )
    return parser


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("09_custom_dataset", run_lesson, argv, build_parser())


# %%
if __name__ == "__main__":
    main()
