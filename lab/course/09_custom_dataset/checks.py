"""09 · a Dataset over class folders: checked on tiny images whose content and class are known."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import PILToTensor

from lab.exercises.feedback import Problem, call

FILES = {"ants": 3, "bees": 2}  # class -> images; sorted classes: ants = 0, bees = 1


def _make_folders(root: Path) -> dict[int, tuple[str, int]]:
    """Each image is filled with its own value, so an item tells which file it came from."""
    made = {}
    for class_index, (name, count) in enumerate(sorted(FILES.items(), reverse=True)):
        (root / name).mkdir()
        for n in range(count):
            value = 40 * (1 - class_index) + 10 * n + 5
            Image.new("RGB", (4, 4), (value, value, value)).save(root / name / f"{n}.png")
            made[value] = (name, n)
    return made


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
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise Problem(f"dataset[{index}] should be (image, label), got {item!r:.60}")
            image, label = item
            if not isinstance(image, torch.Tensor):
                raise Problem(
                    f"dataset[{index}]'s image is of type {type(image).__name__}, not a tensor: "
                    "apply self.transform to the image before returning it"
                )
            value = int(image.flatten()[0])
            name, n = made.get(value, ("?", -1))
            if value in seen:
                raise Problem(
                    f"dataset[{seen[value]}] and dataset[{index}] are the same image: each index "
                    "must give a different file"
                )
            seen[value] = index
            where = f"{name}/{n}.png"
            if isinstance(label, torch.Tensor) and label.numel() == 1:
                label = label.item()
            if not isinstance(label, int):
                raise Problem(
                    f"the label of {where} is {label!r}, expected the class index "
                    f"{classes.index(name)} (classes in sorted order: {classes})"
                )
            if label != classes.index(name):
                raise Problem(
                    f"the label of {where} is {label}, expected {classes.index(name)}: number "
                    f"the classes in sorted order ({classes})"
                )
    return f"{len(made)} images, each once, with class indices in sorted order {classes}"


CHECKS = {"FolderDataset": check_folder_dataset}
