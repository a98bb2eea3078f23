"""Typical wrong answers to 09's exercise, and what the check must say about each."""

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
            "the label of ants/0.png is 'ants', expected the class index 0 (classes in sorted "
            "order: ['ants', 'bees'])",
        ),
        (
            variant(image="pass"),
            "dataset[0]'s image is of type Image, not a tensor: apply self.transform",
        ),
        (
            variant(label="1 - label"),
            "the label of ants/0.png is 1, expected 0: number the classes in sorted order",
        ),
    ],
}
