"""09 · a Dataset over class folders: checked on tiny images whose content and class are known,
in the modes real folders hold (RGB, greyscale, palette, RGBA), with and without a transform."""

from __future__ import annotations

import numbers
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import PILToTensor

from lab.exercises.feedback import Problem, call, unseen_pick

FILES = {"ants": 3, "bees": 2}  # class -> images; sorted classes: ants = 0, bees = 1
# not every file is RGB on disk: only convert("RGB") gives each the same three channels
MODES = {("ants", 0): "L", ("ants", 2): "RGBA", ("bees", 1): "P"}
MODE_NAMES = {"L": "greyscale", "RGBA": "RGB with an alpha channel", "P": "a palette image"}


def _rgb(value: int, mode: str) -> tuple[int, int, int]:
    """The RGB a file filled with ``value`` has once converted: its red tells which file."""
    return (value, value, value) if mode == "L" else (value, 200 - value, 100 + value)


def _make_folders(root: Path) -> dict[int, tuple[str, int, str]]:
    """Each image is filled with its own colour, so an item tells which file it came from."""
    made = {}
    shift = unseen_pick(0, range(1, 91))  # other colours: values up to 155, so 100 + value ≤ 255
    for class_index, (name, count) in enumerate(sorted(FILES.items(), reverse=True)):
        (root / name).mkdir()
        for n in range(count):
            value = 40 * (1 - class_index) + 10 * n + 5 + shift
            mode = MODES.get((name, n), "RGB")
            r, g, b = _rgb(value, mode)
            if mode == "L":
                image = Image.new("L", (4, 4), value)
            elif mode == "P":
                image = Image.new("P", (4, 4), 0)
                image.putpalette([r, g, b] + [0, 0, 0] * 255)
            elif mode == "RGBA":
                image = Image.new("RGBA", (4, 4), (r, g, b, 128))
            else:
                image = Image.new("RGB", (4, 4), (r, g, b))
            image.save(root / name / f"{n}.png")
            made[value] = (name, n, mode)
    return made


def _integer(label) -> int | None:
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = label.item()
    if isinstance(label, numbers.Integral) and not isinstance(label, bool):
        return int(label)  # an int, a NumPy integer: a DataLoader batches either
    return None


def _check_item(item, index: int, made: dict, classes: list[str], seen: dict) -> None:
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise Problem(f"dataset[{index}] should be (image, label), got {item!r:.60}")
    image, label = item
    if not isinstance(image, torch.Tensor) and isinstance(label, torch.Tensor | Image.Image):
        raise Problem(f"dataset[{index}] is (label, image): return (image, label), the image first")
    if not isinstance(image, torch.Tensor):
        raise Problem(
            f"dataset[{index}]'s image is of type {type(image).__name__}, not a tensor: "
            "apply self.transform to the image before returning it"
        )
    if image.is_floating_point() and image.numel() and float(image.max()) <= 1.0:
        raise Problem(
            f"the image of dataset[{index}] is scaled to [0, 1], as ToTensor does: apply "
            "self.transform, the transform given, not one of your own"
        )
    value = int(image.flatten()[0]) if image.numel() else -1
    name, n, mode = made.get(value, ("?", -1, "RGB"))
    where = f"{name}/{n}.png" if n >= 0 else f"dataset[{index}]"
    if tuple(image.shape) != (3, 4, 4):
        kind = f" ({name}/{n}.png is {MODE_NAMES[mode]} on disk)" if mode in MODE_NAMES else ""
        raise Problem(
            f"the image of dataset[{index}] has shape {tuple(image.shape)}, expected (3, 4, 4)"
            f'{kind}: 09.1 asks for RGB, Image.open(path).convert("RGB")'
        )
    if not torch.equal(image[:, 0, 0].to(torch.int64), torch.tensor(_rgb(value, mode))):
        raise Problem(
            f"the image of dataset[{index}] has the colour {image[:, 0, 0].tolist()}, which is "
            f"no file's RGB{f' ({where} is {_rgb(value, mode)})' if n >= 0 else ''}: open the "
            'file with Image.open(path).convert("RGB") and change nothing else'
        )
    if value in seen:
        raise Problem(
            f"dataset[{seen[value]}] and dataset[{index}] are the same image: each index must "
            "give a different file"
        )
    seen[value] = index
    number = _integer(label)
    if number is None:
        raise Problem(
            f"the label of {where} is {label!r:.40}, expected the class index "
            f"{classes.index(name)}, an int (classes in sorted order: {classes})"
        )
    if number != classes.index(name):
        raise Problem(
            f"the label of {where} is {number}, expected {classes.index(name)}: number the "
            f"classes in sorted order ({classes})"
        )


def check_folder_dataset(FolderDataset) -> str:
    classes = sorted(FILES)
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        made = _make_folders(root)
        dataset = call(FolderDataset, root, transform=PILToTensor(), who="FolderDataset")
        size = call(len, dataset, who="len(dataset)")
        if size != len(made):
            per = " (one item per image file, not per class folder)" if size == len(FILES) else ""
            raise Problem(f"len(dataset) = {size}, expected {len(made)}{per} for {FILES}")
        seen: dict[int, int] = {}
        for index in range(size):
            item = call(dataset.__getitem__, index, who=f"dataset[{index}]")
            _check_item(item, index, made, classes, seen)
        plain = call(FolderDataset, root, who="FolderDataset")  # no transform given
        image = call(plain.__getitem__, 0, who="dataset[0]")[0]
        if not isinstance(image, Image.Image):
            raise Problem(
                f"with no transform, dataset[0]'s image is a {type(image).__name__}, expected "
                "the PIL image itself: apply self.transform only when one is given"
            )
        if image.mode != "RGB":
            raise Problem(
                f"with no transform, dataset[0]'s image has mode {image.mode!r}, expected "
                "'RGB': Image.open(path).convert(\"RGB\")"
            )
    return (
        f"{len(made)} images in RGB (greyscale, palette and RGBA files too), each once, with "
        f"class indices in sorted order {classes}"
    )


CHECKS = {"FolderDataset": check_folder_dataset}
