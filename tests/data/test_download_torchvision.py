"""torchvision's own dataset classes read what the downloader laid out (download=False)."""

from __future__ import annotations

import pytest
import torchvision  # the lab extra installs it: a missing one is a failure, not a skip
from support import synthetic

from lab.data.download import Run
from lab.data.progress import Quiet
from lab.data.registry import load


@pytest.fixture
def downloaded(server, registry, data_dir):
    summary = Run(load(registry), data_dir, 4, Quiet()).run(["mnist", "cifar10", "hymenoptera"])
    assert summary["ok"], summary["errors"]
    return data_dir


def test_mnist_reads_the_download(downloaded):
    train = torchvision.datasets.MNIST(str(downloaded), train=True, download=False)
    test = torchvision.datasets.MNIST(str(downloaded), train=False, download=False)

    assert len(train) == synthetic.MNIST_FILES["train-images-idx3-ubyte.gz"][1]
    assert len(test) == synthetic.MNIST_FILES["t10k-images-idx3-ubyte.gz"][1]
    image, label = train[3]
    assert image.size == (28, 28) and label == 3


def test_cifar10_reads_the_download(downloaded, monkeypatch):
    synthetic.trust_synthetic_cifar(monkeypatch)
    cls = torchvision.datasets.CIFAR10
    train = cls(str(downloaded), train=True, download=False)
    test = cls(str(downloaded), train=False, download=False)

    assert len(train) == 5 * 20 and len(test) == 20
    assert train.classes == synthetic.CIFAR_CLASSES
    image, label = train[7]
    assert image.size == (32, 32) and label == 7


def test_imagefolder_reads_hymenoptera(downloaded):
    for split in ("train", "val"):
        folder = torchvision.datasets.ImageFolder(str(downloaded / "hymenoptera_data" / split))
        assert folder.classes == ["ants", "bees"]
        expected = [synthetic.HYMENOPTERA_SMALL[(split, c)] for c in folder.classes]
        assert [folder.targets.count(i) for i in range(2)] == expected
        image, _ = folder[0]
        assert image.size == (40, 32)
