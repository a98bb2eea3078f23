# %% [markdown]
# # 14 · CIFAR-10 with torchvision: Dataset, transforms, DataLoader, make_grid
#
# `torchvision.datasets.CIFAR10(root, train, transform, download=False)` reads the pickled
# batches in `<data>/cifar-10-batches-py/` (fetched by `invoke download-data --dataset
# cifar10`) after checking each file's md5. A sample is `(PIL image 32×32, class index)`;
# `transform=ToTensor()` makes the image a 3×32×32 float tensor.
#
# A `DataLoader` stacks samples into batches: images `B×3×32×32`, labels `B` (int64).
# `shuffle=True` draws a new order every epoch; `drop_last=True` drops the final short batch.
# `torchvision.utils.make_grid` tiles a batch into one image for TensorBoard.

# %%
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms
from torchvision.utils import make_grid

from lab.data import require_dataset
from lab.lessons.harness import LabUsageError, LessonRun, lesson_parser, run_main

# %% [markdown]
# ## Loading the dataset from `data/`
#
# `download=False`: the lab fetches datasets once, with `invoke download-data`. A missing
# dataset stops here with one line saying how to fetch it.


# %%
def load_cifar10(
    data_dir: Path | None = None, train: bool = False, transform=None
) -> datasets.CIFAR10:
    folder = require_dataset("cifar10", data_dir)
    try:
        return datasets.CIFAR10(
            root=str(folder.parent), train=train, transform=transform, download=False
        )
    except RuntimeError:  # torchvision's md5 check failed
        raise LabUsageError(
            f"dataset 'cifar10' in {folder} failed torchvision's md5 check (a partial or "
            "damaged copy); fetch it again with `invoke download-data --dataset cifar10`"
        ) from None


def make_loader(
    dataset,
    batch_size: int,
    *,
    shuffle: bool,
    drop_last: bool,
    seed: int = 0,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader whose shuffling is reproducible (its own seeded generator)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=workers,
        generator=generator,
        pin_memory=pin_memory,
    )


# %% [markdown]
# ## make_grid, by its geometry
#
# With `nrow` images per row and `padding` pixels between them, image `k` sits at row
# `k // nrow`, column `k % nrow`, its top-left corner at `padding + (32 + padding) * (row, col)`.


# %%
def grid_tile(grid: torch.Tensor, k: int, nrow: int, padding: int, side: int = 32):
    row, col = divmod(k, nrow)
    top, left = padding + (side + padding) * row, padding + (side + padding) * col
    return grid[:, top : top + side, left : left + side]


# %% [markdown]
# ## The whole lesson


# %%
def check_dataset(run: LessonRun, dataset: datasets.CIFAR10) -> None:
    print(f"CIFAR-10 test split: {len(dataset)} images, classes {dataset.classes}")
    run.check(
        len(dataset.classes) == 10 and set(dataset.targets) <= set(range(10)),
        "CIFAR-10 has 10 classes and every label is an index 0–9",
    )
    image, label = dataset[0]
    stored = torch.from_numpy(dataset.data[0]).permute(2, 0, 1).float() / 255
    run.check(
        tuple(image.shape) == (3, 32, 32) and torch.equal(image, stored),
        "a sample is the stored 32×32×3 uint8 image, made CHW float in [0, 1] by ToTensor",
    )


def targets_of(dataset) -> torch.Tensor:
    """The labels a dataset holds, read from its storage rather than through a loader."""
    if isinstance(dataset, Subset):
        return targets_of(dataset.dataset)[list(dataset.indices)]
    return torch.tensor(dataset.targets)


def check_loader(run: LessonRun, dataset, batch_size: int) -> None:
    workers, device = run.args.workers, run.device
    loader = make_loader(
        dataset,
        batch_size,
        shuffle=True,
        drop_last=True,
        workers=workers,
        pin_memory=device.type == "cuda",
    )
    run.check(
        len(loader) == len(dataset) // batch_size,
        "with drop_last=True there are len(dataset) // batch_size batches",
    )
    first_batches, bad_batches = [], 0
    for epoch in range(2):
        for step, (images, labels) in enumerate(loader):
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            if step == 0:
                first_batches.append(images.cpu())
            bad_batches += not (
                images.shape == (batch_size, 3, 32, 32)
                and labels.dtype == torch.int64
                and 0 <= images.min()
                and images.max() <= 1
                and 0 <= labels.min()
                and labels.max() < 10
            )
            if step < 3:  # a few batches per epoch are plenty to look at
                run.writer.add_images(f"cifar10/epoch_{epoch}", images, step)
            run.writer.add_scalar(
                "batch/mean_pixel", images.mean().item(), epoch * len(loader) + step
            )
    run.check(
        bad_batches == 0, f"every batch is {batch_size}×3×32×32 in [0, 1] with int64 labels in 0–9"
    )
    run.check(
        not torch.equal(first_batches[0], first_batches[1]),
        "shuffle=True gives each epoch a new order",
    )

    whole = make_loader(dataset, batch_size, shuffle=True, drop_last=False, workers=workers)
    seen = torch.cat([labels for _, labels in whole])
    run.check(
        torch.equal(
            torch.bincount(seen, minlength=10), torch.bincount(targets_of(dataset), minlength=10)
        ),
        "with drop_last=False one epoch visits every sample exactly once",
    )


def check_grid(run: LessonRun, images: torch.Tensor, nrow: int = 8, padding: int = 2) -> None:
    grid = make_grid(images, nrow=nrow, padding=padding)
    rows = -(-len(images) // nrow)
    cols = min(nrow, len(images))
    run.check(
        tuple(grid.shape) == (3, rows * (32 + padding) + padding, cols * (32 + padding) + padding),
        f"make_grid of {len(images)} images, nrow={nrow}: a {rows}×{cols} mosaic",
    )
    run.check(
        all(torch.equal(grid_tile(grid, k, nrow, padding), images[k]) for k in range(len(images))),
        "image k sits at row k // nrow, column k % nrow of the grid",
    )
    run.writer.add_image("cifar10/make_grid", grid, 0)


def run_lesson(run: LessonRun) -> None:
    dataset = load_cifar10(run.args.data_dir, train=False, transform=transforms.ToTensor())
    check_dataset(run, dataset)
    if run.args.dry_run:  # tiny mode: the first 32 images are enough to see every rule
        dataset = Subset(dataset, range(min(32, len(dataset))))
    batch_size = min(8 if run.args.dry_run else run.args.batch_size, len(dataset) // 2)
    check_loader(run, dataset, batch_size)
    images, _ = next(iter(make_loader(dataset, batch_size, shuffle=False, drop_last=False)))
    check_grid(run, images)


def build_parser():
    parser = lesson_parser(
        "CIFAR-10 with torchvision: Dataset, transforms, DataLoader, make_grid", data=True
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="images per batch (default: %(default)s; 8 with --dry-run)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="DataLoader worker processes (default: 0 = load in this process)",
    )
    return parser


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("14_cifar10_dataloader", run_lesson, argv, build_parser())


# %%
if __name__ == "__main__":
    main()
