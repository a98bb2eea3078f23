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
# `torchvision.utils.make_grid` tiles a batch into one image.

# %% tags=["parameters"]
BATCH_SIZE = 64  # images per batch
EPOCHS = 2  # passes over the test split in the loader demo
WORKERS = 0  # DataLoader worker processes (0 = load in this process)
DRY_RUN = False  # only the first 32 images, batches of at most 8

# %%
import pickle
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from lab.lessons.harness import LabUsageError, check, open_lesson, show
from lab.lessons.imaging import image_grid

lesson = open_lesson(datasets=("cifar10",))
device = lesson.device

# %% [markdown]
# ## Loading the dataset from `data/`
#
# `download=False`: the lab fetches datasets once, with `invoke download-data`. A damaged
# copy fails torchvision's md5 check and stops here with one line saying what to do.
#
# To check a sample we read the batch file ourselves: a pickled dict whose `data` holds one
# row of 3072 bytes per image — the 1024 red values (32 rows of 32), then green, then blue.
# That is CHW already: `row.reshape(3, 32, 32)`. (Reshaping it to 32×32×3, HWC, is the
# classic mistake: a scrambled picture.)


# %%
def load_cifar10(data_dir: Path, train: bool = False, transform=None) -> datasets.CIFAR10:
    try:
        return datasets.CIFAR10(
            root=str(data_dir), train=train, transform=transform, download=False
        )
    except RuntimeError:  # torchvision's md5 check failed
        raise LabUsageError(
            f"dataset 'cifar10' in {Path(data_dir) / 'cifar-10-batches-py'} failed "
            "torchvision's md5 check (a partial or damaged copy); fetch it again with "
            "`invoke download-data --dataset cifar10`"
        ) from None


dataset = load_cifar10(lesson.data_dir, train=False, transform=transforms.ToTensor())
print(f"CIFAR-10 test split: {len(dataset)} images, classes {dataset.classes}")
image, label = dataset[0]
print(f"dataset[0]: image {tuple(image.shape)} {image.dtype}, label {label}")
print(f"class {label} is {dataset.classes[label]!r}")
print(f"stored as dataset.data[0]: {dataset.data[0].shape} {dataset.data[0].dtype}")
with open(Path(lesson.data_dir) / "cifar-10-batches-py" / "test_batch", "rb") as batch_file:
    published = pickle.load(batch_file, encoding="latin1")  # noqa: S301 - torchvision's own file
print(f"test_batch: data {published['data'].shape} {published['data'].dtype}")
check(
    len(dataset.classes) == 10 and set(dataset.targets) <= set(range(10)),
    "CIFAR-10 has 10 classes and every label is an index 0–9",
)
check(
    all(
        torch.equal(dataset[k][0], torch.from_numpy(published["data"][k].reshape(3, 32, 32)) / 255)
        and dataset[k][1] == published["labels"][k]
        for k in (0, len(dataset) - 1)
    ),
    "a sample is its row of the batch file (red, green, blue planes), / 255, with its label",
)

# %%
first = [dataset[i] for i in range(min(16, len(dataset)))]
show(image_grid([x for x, _ in first], [dataset.classes[y] for _, y in first]), "samples")

# %% [markdown]
# ## A DataLoader, shuffled, for two epochs
#
# Its shuffling is reproducible: it gets its own seeded `torch.Generator` (checked below).
# With `drop_last=True` there are `len(dataset) // batch_size` batches. A progress bar
# (`tqdm.auto`: a widget in Jupyter, text in a terminal) follows each epoch.


# %%
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
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
    )


def targets_of(dataset) -> torch.Tensor:
    """The labels a dataset holds, read from its storage rather than through a loader."""
    if isinstance(dataset, Subset):
        return targets_of(dataset.dataset)[list(dataset.indices)]
    return torch.tensor(dataset.targets)


data = Subset(dataset, range(min(32, len(dataset)))) if DRY_RUN else dataset
# a batch size that leaves a remainder on small data, so drop_last has something to drop
batch_size = max(1, min(8 if DRY_RUN else BATCH_SIZE, len(data) // 3))
loader = make_loader(
    data,
    batch_size,
    shuffle=True,
    drop_last=True,
    workers=WORKERS,
    pin_memory=device.type == "cuda",
)
print(f"{len(data)} images, batch_size {batch_size}: {len(loader)} batches per epoch")
first_batches, bad_batches, batches_drawn = [], 0, []
for epoch in range(EPOCHS):
    batches_drawn.append(0)
    for step, (images, labels) in enumerate(tqdm(loader, desc=f"epoch {epoch}")):
        batches_drawn[-1] += 1
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
            lesson.writer.add_images(f"cifar10/epoch_{epoch}", images, step)
        lesson.writer.add_scalar(
            "batch/mean_pixel", images.mean().item(), epoch * len(loader) + step
        )
print(f"batches drawn per epoch: {batches_drawn}")
check(
    len(loader) == len(data) // batch_size and batches_drawn == [len(data) // batch_size] * EPOCHS,
    "with drop_last=True each epoch draws len(dataset) // batch_size batches",
)
check(bad_batches == 0, f"every batch is {batch_size}×3×32×32 in [0, 1] with int64 labels in 0–9")
if EPOCHS > 1:
    check(
        not torch.equal(first_batches[0], first_batches[1]),
        "shuffle=True gives each epoch a new order",
    )

# %% [markdown]
# ## Every sample exactly once, in the seed's order
#
# Which sample came when? The order is drawn by the loader's generator alone, so a loader
# over the indices `range(len(data))` with the same seed draws the same order. With
# `drop_last=False` those indices must be every index exactly once, and the labels the data
# loader yields must be the stored labels at those indices.


# %%
def epoch_order(n: int, batch_size: int, seed: int = 0) -> list[int]:
    """The indices, in order, that one shuffled epoch of `make_loader(…, seed=seed)` visits."""
    loader = make_loader(range(n), batch_size, shuffle=True, drop_last=False, seed=seed)
    return torch.cat(list(loader)).tolist()


whole = make_loader(data, batch_size, shuffle=True, drop_last=False, workers=WORKERS)
seen = torch.cat([labels for _, labels in whole])
order = epoch_order(len(data), batch_size)
print("labels per class in one epoch:", torch.bincount(seen, minlength=10).tolist())
print(f"indices drawn: {order[:10]} …")
check(
    sorted(order) == list(range(len(data))) and torch.equal(seen, targets_of(data)[order]),
    "with drop_last=False one epoch visits every sample exactly once, with its own label",
)
check(
    epoch_order(len(data), batch_size, seed=0) == order
    and epoch_order(len(data), batch_size, seed=1) != order,
    "the seed decides the order: the same seed gives it again, another seed another",
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


images, _ = next(iter(make_loader(data, 16, shuffle=False, drop_last=False)))
nrow, padding = 8, 2
grid = make_grid(images, nrow=nrow, padding=padding)
rows, cols = -(-len(images) // nrow), min(nrow, len(images))
print(f"make_grid of {len(images)} images, nrow={nrow}: {tuple(grid.shape)}")
check(
    tuple(grid.shape) == (3, rows * (32 + padding) + padding, cols * (32 + padding) + padding),
    f"make_grid of {len(images)} images, nrow={nrow}: a {rows}×{cols} mosaic",
)
check(
    all(torch.equal(grid_tile(grid, k, nrow, padding), images[k]) for k in range(len(images))),
    "image k sits at row k // nrow, column k % nrow of the grid",
)
lesson.writer.add_image("cifar10/make_grid", grid, 0)
fig, ax = plt.subplots(figsize=(cols * 0.6 + 0.5, rows * 0.6 + 0.5))
ax.imshow(grid.permute(1, 2, 0).numpy())  # CHW → HWC for matplotlib
ax.set_title(f"make_grid(nrow={nrow}, padding={padding})")
ax.axis("off")
show(fig, "make_grid")

# %%
lesson.done()
