# %% [markdown]
# # 13 · Transforms: Normalize, Resize, Compose, RandomCrop
#
# `torchvision.transforms` are callables that take an image and return a new one; they are
# what a Dataset applies to each sample.
#
# - `Normalize(mean, std)` works **per channel**: `out[c] = (x[c] - mean[c]) / std[c]`.
# - `Resize(int)` scales the **shorter** side to that size and keeps the aspect ratio
#   (the longer side becomes `int(size * long / short)`); `Resize((h, w))` forces both.
# - `Compose([...])` chains transforms left to right.
# - `RandomCrop(size)` cuts a window at a random position drawn from torch's RNG: seed it and
#   the crop is reproducible — the seed alone decides where it cuts.
#
# Each rule is checked against arithmetic written by hand.

# %% tags=["parameters"]
BATCH = 16  # training images used for the per-channel statistics
SHORT_SIDE = 24  # Resize(SHORT_SIDE): the shorter side after resizing
CROP = 16  # RandomCrop((CROP, CROP))
CROPS = 8  # crops drawn, one per seed

# %%
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from lab.lessons.harness import check, open_lesson, show
from lab.lessons.imaging import first_image, image_files, image_grid, load_rgb

lesson = open_lesson(datasets=("hymenoptera",))
device = lesson.device
writer = lesson.writer
to_tensor = transforms.ToTensor()

# %% [markdown]
# ## A batch of photos, and their per-channel statistics
#
# `Normalize` needs a mean and a std per channel. We measure them on a batch of training
# images (each `Resize((64, 64))` + `ToTensor`, so they stack).


# %%
def dataset_batch(data_dir: Path, count: int, side: int = 64) -> torch.Tensor:
    """The first `count` training images of both classes, each Resize((side, side)) + ToTensor."""
    root = Path(data_dir) / "hymenoptera_data" / "train"
    paths = sorted(p for cls in ("ants", "bees") for p in image_files(root / cls))
    resize = transforms.Compose([transforms.Resize((side, side)), to_tensor])
    return torch.stack([resize(load_rgb(path)) for path in paths[:count]])


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over a batch N×C×H×W (what you would pass to Normalize)."""
    flat = images.double().transpose(0, 1).reshape(images.shape[1], -1)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).tolist()


batch = dataset_batch(lesson.data_dir, BATCH)
mean, std = channel_stats(batch)
print(f"batch {tuple(batch.shape)}")
print(f"per-channel mean {[round(m, 3) for m in mean]}  std {[round(s, 3) for s in std]}")
show(image_grid(batch, ncols=8, size=1.1), "batch")

# %% [markdown]
# ## Normalize, by hand
#
# The oracle is computed in float64; Normalize runs in the images' float32. Normalized with
# the data's own statistics, every channel ends up with mean 0 and std 1 — measured here one
# channel at a time, not with `channel_stats` (a slip there would otherwise confirm itself).


# %%
def normalize_by_hand(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean, dtype=torch.float64).view(-1, 1, 1)
    std = torch.tensor(std, dtype=torch.float64).view(-1, 1, 1)
    return (x.double() - mean) / std


normalized = transforms.Normalize(mean, std)(batch)
channels = [normalized[:, c].double() for c in range(normalized.shape[1])]
new_mean, new_std = [x.mean().item() for x in channels], [x.std().item() for x in channels]
print(
    f"after Normalize: mean {[round(m, 6) for m in new_mean]}  std {[round(s, 6) for s in new_std]}"
)
check(
    torch.allclose(normalized.double(), normalize_by_hand(batch, mean, std), atol=1e-5),
    "Normalize computes (x - mean[c]) / std[c] for each channel c",
)
check(
    all(abs(m) < 1e-4 for m in new_mean) and all(abs(s - 1) < 1e-4 for s in new_std),
    "normalized with the data's own statistics, each channel has mean 0 and std 1",
)

# %% [markdown]
# ## Resize: which side gets the number?
#
# PIL sizes are `(W, H)`; a tensor is `C×H×W`. A landscape photo only tries one branch of the
# rule, so the same photo turned a quarter (portrait) is resized too.


# %%
def resized_size_by_hand(width: int, height: int, size: int) -> tuple[int, int]:
    """PIL-style (width, height) after Resize(size): the shorter side becomes `size`."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


image = load_rgb(first_image(lesson.data_dir, "train", "bees"))
turned = image.transpose(Image.Transpose.ROTATE_90)  # W and H swap places
resized = transforms.Resize(SHORT_SIDE)(image)
forced = transforms.Resize((20, 30))(to_tensor(image))
for photo in (image, turned):
    print(
        f"Resize({SHORT_SIDE}): {photo.size} -> {transforms.Resize(SHORT_SIDE)(photo).size}  (W, H)"
    )
print(f"Resize((20, 30)) of a tensor {tuple(to_tensor(image).shape)} -> {tuple(forced.shape)}")
check(
    all(
        transforms.Resize(SHORT_SIDE)(photo).size == resized_size_by_hand(*photo.size, SHORT_SIDE)
        for photo in (image, turned)
    ),
    f"Resize({SHORT_SIDE}) sets the shorter side to {SHORT_SIDE} and keeps the aspect ratio, "
    "landscape or portrait",
)
check(tuple(forced.shape) == (3, 20, 30), "Resize((h, w)) gives exactly h × w")
show(
    image_grid(
        [image, resized, forced], [f"original {image.size}", f"Resize({SHORT_SIDE})", "(20, 30)"]
    ),
    "resize",
)

# %% [markdown]
# ## Compose, and undoing Normalize to look at the result
#
# `x * std + mean` undoes Normalize — that is how a normalized image is shown.

# %%
imagenet_mean, imagenet_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # the usual ones
pipeline = transforms.Compose(
    [
        transforms.Resize(SHORT_SIDE),
        transforms.ToTensor(),
        transforms.Normalize(imagenet_mean, imagenet_std),
    ]
)
composed = pipeline(image)
shown = composed * torch.tensor(imagenet_std).view(3, 1, 1) + torch.tensor(imagenet_mean).view(
    3, 1, 1
)
print(pipeline)
print(f"composed: {tuple(composed.shape)}, range [{composed.min():.2f}, {composed.max():.2f}]")
check(
    torch.equal(composed, transforms.Normalize(imagenet_mean, imagenet_std)(to_tensor(resized))),
    "Compose applies its transforms left to right, like calling them in turn",
)
check(
    torch.allclose(shown, to_tensor(resized), atol=1e-6),
    "x * std + mean undoes Normalize",
)
writer.add_image("transforms/original", to_tensor(image), 0)
writer.add_image("transforms/resize", to_tensor(resized), 0)
writer.add_image("transforms/compose_denormalized", shown, 0)

# %% [markdown]
# ## RandomCrop, reproducibly
#
# Where does a seeded RandomCrop cut? It draws the window's top row, then its left column,
# each uniformly from the positions where the window fits, with torch's RNG. We draw the same
# two numbers by hand from a generator seeded alike: that is the window the crop must be.
# `fork_rng` keeps our seeding from changing the RNG of whatever runs next.


# %%
def seeded_crop(image: torch.Tensor, size: tuple[int, int], seed: int) -> torch.Tensor:
    """The crop RandomCrop makes with torch's RNG seeded with `seed` (then put back)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return transforms.RandomCrop(size)(image)


def drawn_window(height: int, width: int, size: tuple[int, int], seed: int) -> tuple[int, int]:
    """(top, left) by hand: top, then left, a randint each from a generator seeded `seed`."""
    generator = torch.Generator().manual_seed(seed)
    top = int(torch.randint(0, height - size[0] + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size[1] + 1, (1,), generator=generator))
    return top, left


tensor = to_tensor(resized)
size = (CROP, CROP)
_, height, width = tensor.shape
crops, windows = [], []
for seed in range(CROPS):  # one crop per seed, logged at step=seed
    crops.append(seeded_crop(tensor, size, seed))
    windows.append(drawn_window(height, width, size, seed))
    writer.add_image("transforms/random_crop", crops[-1], seed)
    writer.add_scalar("random_crop/top", windows[-1][0], seed)
    writer.add_scalar("random_crop/left", windows[-1][1], seed)
print("windows (top, left) per seed, drawn by hand:", windows)
check(
    all(
        tuple(c.shape) == (3, *size) and torch.equal(c, tensor[:, t : t + size[0], x : x + size[1]])
        for c, (t, x) in zip(crops, windows, strict=True)
    ),
    f"RandomCrop({size}) returns the {size[0]}×{size[1]} window of the photo drawn by hand",
)
show(image_grid(crops, [f"seed {s}: {w}" for s, w in enumerate(windows)], ncols=8), "crops")

# %% [markdown]
# A photo can have flat regions where two windows look alike (a flat photo: all of them). On
# an image whose every pixel holds its own index (`row * width + col`) no two windows are
# alike: the crop under seed `s` must be exactly the window drawn by hand for `s`.

# %%
positions = torch.arange(height * width, dtype=torch.float64).view(1, height, width)
matches = [
    torch.equal(seeded_crop(positions, size, seed), positions[:, t : t + size[0], x : x + size[1]])
    for seed, (t, x) in enumerate(windows)
]
print("seed by seed, the crop is the window drawn by hand:", matches)
check(
    all(matches),
    "under seed s RandomCrop cuts exactly the window drawn by hand from seed s, pixel for pixel",
)
state = torch.get_rng_state()
seeded_crop(positions, size, 0)
check(
    torch.equal(torch.get_rng_state(), state),
    "seeding inside fork_rng leaves torch's global RNG as it was",
)

# %%
lesson.done()
