"""Small synthetic datasets in the real on-disk formats (no network, no torch needed).

- MNIST: gzip'd IDX files, named and laid out as torchvision's ``MNIST`` reads them.
- CIFAR-10: pickled batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``) in
  ``cifar-10-batches-py/`` inside a ``.tar.gz``.
- hymenoptera: JPEGs in ``hymenoptera_data/{train,val}/{ants,bees}/`` inside a ``.zip``.

Each ``*_files`` function returns ``{file name: bytes}`` as a server would publish them;
``install_*`` lays the same data out extracted under a data dir, as a download would.
"""

from __future__ import annotations

import gzip
import io
import pickle
import random
import struct
import tarfile
import zipfile
from pathlib import Path

MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("images", 60),
    "train-labels-idx1-ubyte.gz": ("labels", 60),
    "t10k-images-idx3-ubyte.gz": ("images", 20),
    "t10k-labels-idx1-ubyte.gz": ("labels", 20),
}
CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
# The real counts are 124/121/70/83; tests that check the layout use these small ones
# through a registry that declares them.
HYMENOPTERA_SMALL = {
    ("train", "ants"): 6,
    ("train", "bees"): 5,
    ("val", "ants"): 3,
    ("val", "bees"): 4,
}


def _idx(kind: str, count: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if kind == "images":
        header = struct.pack(">IIII", 0x00000803, count, 28, 28)
        body = bytes(rng.randrange(256) for _ in range(count * 28 * 28))
    else:
        header = struct.pack(">II", 0x00000801, count)
        body = bytes(i % 10 for i in range(count))  # every class present
    return header + body


def mnist_files(seed: int = 0) -> dict[str, bytes]:
    return {
        name: gzip.compress(_idx(kind, count, seed + i), mtime=0)
        for i, (name, (kind, count)) in enumerate(MNIST_FILES.items())
    }


def _cifar_batch(count: int, seed: int, label: str) -> bytes:
    import numpy as np  # numpy arrays in the pickle, like the real batches

    rng = np.random.default_rng(seed)
    batch = {
        "batch_label": label,
        "labels": [i % 10 for i in range(count)],
        "data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(count)],
    }
    return pickle.dumps(batch, protocol=2)


def cifar_members(per_batch: int = 20) -> dict[str, bytes]:
    members = {
        f"data_batch_{i}": _cifar_batch(per_batch, i, f"training batch {i} of 5")
        for i in range(1, 6)
    }
    members["test_batch"] = _cifar_batch(per_batch, 99, "testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps(
        {"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072},
        protocol=2,
    )
    return members


def cifar_archive(per_batch: int = 20) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in cifar_members(per_batch).items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _jpeg(seed: int, size: tuple[int, int] = (40, 32)) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


def hymenoptera_members(counts: dict | None = None) -> dict[str, bytes]:
    members = {}
    seed = 0
    for (split, cls), count in (counts or HYMENOPTERA_SMALL).items():
        for i in range(count):
            seed += 1
            members[f"hymenoptera_data/{split}/{cls}/{cls}_{i:03d}.jpg"] = _jpeg(seed)
    return members


def hymenoptera_zip(counts: dict | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in hymenoptera_members(counts).items():
            archive.writestr(name, data)
    return out.getvalue()


def install_mnist(data_dir: Path) -> Path:
    raw = Path(data_dir) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, data in mnist_files().items():
        (raw / name).write_bytes(data)
        # torchvision's MNIST(download=False) reads the decompressed files
        (raw / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
    return raw


def install_cifar(data_dir: Path, per_batch: int = 20) -> Path:
    root = Path(data_dir) / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    for name, data in cifar_members(per_batch).items():
        (root / name).write_bytes(data)
    return root


def install_hymenoptera(data_dir: Path, counts: dict | None = None) -> Path:
    for name, data in hymenoptera_members(counts).items():
        path = Path(data_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return Path(data_dir) / "hymenoptera_data"


def trust_synthetic_cifar(monkeypatch, per_batch: int = 20) -> None:
    """Tell torchvision's CIFAR10 the md5s of the synthetic batches.

    torchvision checks every batch file against the real CIFAR-10 md5s; the synthetic
    batches differ in content only, so they get their own md5s and every other check stays.
    """
    import hashlib

    from torchvision import datasets

    digest = {
        name: hashlib.md5(data).hexdigest() for name, data in cifar_members(per_batch).items()
    }
    cls = datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[name, digest[name]] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, digest[name]] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": digest["batches.meta"]})
