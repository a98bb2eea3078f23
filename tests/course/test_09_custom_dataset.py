"""Lesson 09: the custom Dataset reads images and their label files; ConcatDataset; DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.synthetic import HYMENOPTERA_SMALL, install_hymenoptera
from support.tbutil import read_scalars, single_run_dir
from torchvision import transforms

from lab.data.labels import generate_labels

lesson = definitions("09")
N_ANTS, N_BEES = HYMENOPTERA_SMALL[("train", "ants")], HYMENOPTERA_SMALL[("train", "bees")]

MUTATIONS = [
    ('image = image.convert("RGB")', 'image = image.convert("L")'),
    ("if is_image(p))", "if is_image(p))[1:]"),
    ("shuffle=True,", "shuffle=True, drop_last=True,"),
    # the label taken from the folder's name: every real label file agrees with it
    (
        'label = (self.label_dir / f"{path.stem}.txt").read_text(encoding="utf-8").strip()',
        'label = self.label_dir.name.removesuffix("_label")',
    ),
    # every image paired with the first image's label file
    ('/ f"{path.stem}.txt")', '/ f"{self.images[0].stem}.txt")'),
    ("shuffle=True,", "shuffle=False,"),  # the class counts still match
    ("generator=torch.Generator().manual_seed(seed),", "generator=torch.Generator(),"),
    ("generator=torch.Generator().manual_seed(seed),", "generator=None,"),
]
MUTATION_IDS = [
    "grayscale",
    "lost-image",
    "drop-last",
    "label-from-folder",
    "first-label-file",
    "no-shuffle",
    "seed-ignored",
    "global-rng",
]


@pytest.fixture
def labeled(data_dir):
    install_hymenoptera(data_dir)
    generate_labels(data_dir)
    return data_dir / "hymenoptera_labeled" / "train"


def source_pixels(data_dir, cls, index):
    path = sorted((data_dir / "hymenoptera_data" / "train" / cls).iterdir())[index]
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_dataset_returns_each_image_with_its_label(data_dir, labeled):
    ants = lesson.ImageLabelFolder(labeled, "ants")
    assert len(ants) == N_ANTS
    for index in range(N_ANTS):
        image, label = ants[index]
        assert label == "ants"
        assert np.array_equal(np.asarray(image), source_pixels(data_dir, "ants", index))


def test_label_comes_from_the_label_file_not_the_folder(labeled):
    (labeled / "ants_label" / "ants_002.txt").write_text("bees\n", encoding="utf-8")
    ants = lesson.ImageLabelFolder(labeled, "ants")
    assert [label for _, label in ants] == ["ants", "ants", "bees", "ants", "ants", "ants"]


def test_any_image_extension_is_paired_by_stem_and_other_files_are_skipped(labeled):
    Image.new("RGB", (8, 6), (1, 2, 3)).save(labeled / "bees_image" / "zz_extra.PNG")
    (labeled / "bees_label" / "zz_extra.txt").write_text("bees", encoding="utf-8")
    (labeled / "bees_image" / "notes.txt").write_text("not an image", encoding="utf-8")
    (labeled / "bees_image" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    bees = lesson.ImageLabelFolder(labeled, "bees")
    assert len(bees) == N_BEES + 1
    image, label = bees[-1]
    assert (image.size, label) == ((8, 6), "bees")


def test_transforms_are_applied(labeled):
    dataset = lesson.ImageLabelFolder(labeled, "bees", transforms.ToTensor(), lesson.CLASSES.index)
    image, label = dataset[0]
    assert image.shape == (3, 32, 40) and image.dtype == torch.float32
    assert label == 1


def test_concat_crosses_the_boundary(data_dir, labeled):
    ants, bees = lesson.ants_and_bees(labeled)
    both = ants + bees
    assert len(both) == N_ANTS + N_BEES
    expected = [("ants", i) for i in range(N_ANTS)] + [("bees", i) for i in range(N_BEES)]
    for index, (cls, source_index) in enumerate(expected):
        image, label = both[index]
        assert label == cls
        assert np.array_equal(np.asarray(image), source_pixels(data_dir, cls, source_index))
    assert lesson.same_sample(both[N_ANTS], bees[0])
    assert not lesson.same_sample(both[N_ANTS - 1], bees[0])


def test_loader_is_seeded_and_covers_an_epoch(labeled):
    dataset = lesson.tensor_dataset(labeled, 16)
    first = [labels for _, labels in lesson.make_loader(dataset, 3, seed=5)]
    again = [labels for _, labels in lesson.make_loader(dataset, 3, seed=5)]
    assert [len(labels) for labels in first] == [3, 3, 3, 2]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert sorted(torch.cat(first).tolist()) == [0] * N_ANTS + [1] * N_BEES
    # the index loader draws the data loader's order: its labels are the stored ones there
    order = lesson.epoch_order(len(dataset), 3, seed=5)
    assert sorted(order) == list(range(N_ANTS + N_BEES))
    assert torch.cat(first).tolist() == [int(index >= N_ANTS) for index in order]


def test_cells_make_missing_labels_and_log_an_epoch(data_dir, runs_dir):
    install_hymenoptera(data_dir)  # no label folders yet: the lesson makes them
    ns = run_lesson("09", "--side", "16", "--batch-size", "5")
    assert len(ns.lesson.checks) == 9 and ns.lesson.figures == ["samples", "first_batch"]
    assert ns.shapes == [(5, 3, 16, 16), (5, 3, 16, 16), (1, 3, 16, 16)]  # settings took effect
    assert (data_dir / "hymenoptera_labeled" / "val" / "bees_label").is_dir()
    scalars = read_scalars(single_run_dir(runs_dir, "09_custom_dataset"))
    assert scalars["epoch_label_count/ants"] == [(0, float(N_ANTS))]
    assert scalars["epoch_label_count/bees"] == [(0, float(N_BEES))]


@pytest.mark.parametrize(("old", "new"), MUTATIONS, ids=MUTATION_IDS)
def test_a_broken_lesson_fails_its_own_checks(data_dir, runs_dir, old, new):
    install_hymenoptera(data_dir)
    assert_mutation_caught("09", old, new)


# Typical wrong answers to 09's exercises, and what the check must say about each.
_BASE = """
from pathlib import Path
from PIL import Image
from torch.utils.data import Dataset

class FolderDataset(Dataset):
    def __init__(self, root, transform=None):
        root = Path(root)
        self.classes = sorted(p.name for p in root.iterdir())
        self.samples = [(path, i) for i, c in enumerate(self.classes)
                        for path in sorted((root / c).iterdir())]
        self.transform = transform

    def __len__(self):
        return LEN

    def __getitem__(self, index):
        path, label = self.samples[index]
        image = Image.open(path).convert("RGB")
        IMAGE
        return image, LABEL
"""


def variant(length="len(self.samples)", image="image = self.transform(image)", label="label"):
    return _BASE.replace("LEN", length).replace("IMAGE", image).replace("LABEL", label)


WRONG = {
    "09.1": [
        (
            variant(length="len(self.classes)"),
            "len(dataset) = 2, expected 5 (one item per image file, not per class folder)",
        ),
        (
            variant(label="self.classes[label]"),
            "the label of ants/0.png is 'ants', expected the class index 0, an int (classes in "
            "sorted order: ['ants', 'bees'])",
        ),
        (
            variant(image="pass"),
            "dataset[0]'s image is of type Image, not a tensor: apply self.transform",
        ),
        (
            variant(label="1 - label"),
            "the label of ants/0.png is 1, expected 0: number the classes in sorted order",
        ),
        (
            variant().replace("return image, label", "return label, image"),
            "dataset[0] is (label, image): return (image, label), the image first",
        ),
        (
            variant().replace('.convert("RGB")', ""),
            "the image of dataset[0] has shape (1, 4, 4), expected (3, 4, 4) (ants/0.png is "
            'greyscale on disk): 09.1 asks for RGB, Image.open(path).convert("RGB")',
        ),
        (
            variant().replace('.convert("RGB")', '.convert("L")'),
            "the image of dataset[0] has shape (1, 4, 4), expected (3, 4, 4)",
        ),
        (
            variant().replace("def __getitem__", "def __get_item__"),
            "dataset[0]: PyTorch's own `__getitem__` ran and raised NotImplementedError("
            '"Subclasses of Dataset should implement __getitem__."), so your class '
            "FolderDataset does not define `__getitem__` itself: is it spelt exactly "
            "`__getitem__`?",
        ),
        (
            variant(image="image = transforms.ToTensor()(image)"),
            "the image of dataset[0] is scaled to [0, 1], as ToTensor does: apply "
            "self.transform, the transform given, not one of your own",
        ),
        (
            variant(
                image="image = self.transform(image) if self.transform else "
                "transforms.ToTensor()(image)"
            ),
            "with no transform, dataset[0]'s image is a Tensor, expected the PIL image itself",
        ),
        (
            variant().replace(
                "return len(self.samples)",
                "raise NotImplementedError('09.1: the number of images')",
            ),
            'len(dataset) still raises NotImplementedError("09.1: the number of images"): that '
            "part of 09.1 is not written yet",
        ),
    ],
}
WRONG["09.1"][8:10] = [
    ("from torchvision import transforms\n" + source, expected)
    for source, expected in WRONG["09.1"][8:10]
]

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "09.1": [
        # the case: NumPy integer labels, which a DataLoader batches like ints
        """
import numpy as np

class FolderDataset(Dataset):
    def __init__(self, root, transform=None):
        self.transform = transform
        self.items = []
        for label, folder in enumerate(sorted(p for p in Path(root).iterdir() if p.is_dir())):
            self.items += [(path, np.int64(label)) for path in sorted(folder.glob("*.png"))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, label = self.items[index]
        with Image.open(path) as image:
            image = image.convert("RGB")
        return (self.transform(image) if self.transform else image), label
""",
        """
import os

import torch

class FolderDataset(Dataset):
    def __init__(self, root, transform=None):
        self.root, self.transform = str(root), transform
        self.classes = sorted(os.listdir(self.root))
        self.files = [
            (os.path.join(self.root, c, f), self.classes.index(c))
            for c in self.classes
            for f in sorted(os.listdir(os.path.join(self.root, c)))
        ]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path, label = self.files[index]
        image = Image.open(path).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.tensor(label)
""",
    ],
}
