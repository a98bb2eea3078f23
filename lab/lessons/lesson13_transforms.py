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
#   the crop is reproducible.
#
# Each rule is checked against arithmetic written by hand, and the results go to TensorBoard.

# %%
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from lab.data import require_dataset
from lab.lessons.harness import LessonRun, lesson_parser, run_main
from lab.lessons.lesson11_tensorboard_basics import first_image, load_rgb

to_tensor = transforms.ToTensor()

# %% [markdown]
# ## Normalize, by hand
#
# The oracle is computed in float64; Normalize runs in the image's float32.


# %%
def normalize_by_hand(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean, dtype=torch.float64).view(-1, 1, 1)
    std = torch.tensor(std, dtype=torch.float64).view(-1, 1, 1)
    return (x.double() - mean) / std


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over a batch N×C×H×W (what you would pass to Normalize)."""
    flat = images.double().transpose(0, 1).reshape(images.shape[1], -1)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).tolist()


def dataset_batch(data_dir: Path | None, count: int, side: int = 64) -> torch.Tensor:
    """The first `count` training images of both classes, each Resize((side, side)) + ToTensor."""
    root = require_dataset("hymenoptera", data_dir) / "train"
    paths = sorted(p for cls in ("ants", "bees") for p in (root / cls).iterdir() if p.is_file())
    resize = transforms.Compose([transforms.Resize((side, side)), to_tensor])
    return torch.stack([resize(load_rgb(path)) for path in paths[:count]])


# %% [markdown]
# ## Resize: which side gets the number?


# %%
def resized_size_by_hand(width: int, height: int, size: int) -> tuple[int, int]:
    """PIL-style (width, height) after Resize(size): the shorter side becomes `size`."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


# %% [markdown]
# ## RandomCrop, reproducibly
#
# `fork_rng` keeps our seeding from changing the RNG of whatever runs next.


# %%
def seeded_crop(image: torch.Tensor, size: tuple[int, int], seed: int):
    """The crop RandomCrop makes under `seed`, and the window (top, left) it chose."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        crop = transforms.RandomCrop(size)(image)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        top, left, _, _ = transforms.RandomCrop.get_params(image, size)
    return crop, (top, left)


# %% [markdown]
# ## The whole lesson


# %%
def check_normalize(run: LessonRun, batch: torch.Tensor) -> None:
    mean, std = channel_stats(batch)
    print(f"per-channel mean {[round(m, 3) for m in mean]} std {[round(s, 3) for s in std]}")
    normalize = transforms.Normalize(mean, std)
    out = normalize(batch)
    run.check(
        torch.allclose(out.double(), normalize_by_hand(batch, mean, std), atol=1e-5),
        "Normalize computes (x - mean[c]) / std[c] for each channel c",
    )
    new_mean, new_std = channel_stats(out)
    run.check(
        all(abs(m) < 1e-4 for m in new_mean) and all(abs(s - 1) < 1e-4 for s in new_std),
        "normalized with the data's own statistics, each channel has mean 0 and std 1",
    )


def check_resize(run: LessonRun, image: Image.Image) -> Image.Image:
    short = 24
    resized = transforms.Resize(short)(image)
    print(f"Resize({short}): {image.size} -> {resized.size}  (PIL sizes are (W, H))")
    run.check(
        resized.size == resized_size_by_hand(*image.size, short),
        f"Resize({short}) sets the shorter side to {short} and keeps the aspect ratio",
    )
    run.check(
        tuple(transforms.Resize((20, 30))(to_tensor(image)).shape) == (3, 20, 30),
        "Resize((h, w)) gives exactly h × w (a tensor is C×H×W)",
    )
    return resized


def run_lesson(run: LessonRun) -> None:
    data_dir, writer = run.args.data_dir, run.writer
    image = load_rgb(first_image(data_dir, "train", "bees"))
    writer.add_image("transforms/original", to_tensor(image), 0)

    check_normalize(run, dataset_batch(data_dir, count=4 if run.args.dry_run else 16))

    resized = check_resize(run, image)
    writer.add_image("transforms/resize", to_tensor(resized), 0)

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # the usual ImageNet statistics
    pipeline = transforms.Compose(
        [transforms.Resize(24), to_tensor, transforms.Normalize(mean, std)]
    )
    composed = pipeline(image)
    run.check(
        torch.equal(composed, transforms.Normalize(mean, std)(to_tensor(resized))),
        "Compose applies its transforms left to right, like calling them in turn",
    )
    shown = composed * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    run.check(
        torch.allclose(shown, to_tensor(resized), atol=1e-6),
        "x * std + mean undoes Normalize (that is what we show in TensorBoard)",
    )
    writer.add_image("transforms/compose_denormalized", shown, 0)

    tensor = to_tensor(resized)
    size = (16, 16)
    for seed in range(2 if run.args.dry_run else 8):  # one crop per seed, logged at step=seed
        crop, (top, left) = seeded_crop(tensor, size, seed)
        writer.add_image("transforms/random_crop", crop, seed)
        writer.add_scalar("random_crop/top", top, seed)
        writer.add_scalar("random_crop/left", left, seed)
    again, _ = seeded_crop(tensor, size, seed)
    run.check(
        tuple(crop.shape) == (3, *size)
        and torch.equal(crop, tensor[:, top : top + size[0], left : left + size[1]]),
        f"RandomCrop({size}) returns a {size[0]}×{size[1]} window of the input, "
        "at the position it drew",
    )
    run.check(torch.equal(crop, again), "the same seed gives the same crop")


def build_parser():
    return lesson_parser("Transforms: Normalize, Resize, Compose, RandomCrop", data=True)


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("13_transforms", run_lesson, argv, build_parser())


# %%
if __name__ == "__main__":
    main()
