"""The shipped registry, registry validation, the data dir lock, and the no-torch host rule."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from support.dl_support import ROOT

from lab.data import DATASET_DIRS
from lab.data.lock import DataDirLock
from lab.data.registry import RegistryError, load

PUBLISHED_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
}


def test_shipped_registry_holds_the_published_facts():
    registry = load()

    files = {f.name: f for ds in registry.datasets.values() for f in ds.files}
    assert {name: files[name].md5 for name in PUBLISHED_MD5} == PUBLISHED_MD5
    mnist = files["train-images-idx3-ubyte.gz"]
    assert mnist.urls == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz",
    )
    assert files["hymenoptera_data.zip"].md5 is files["hymenoptera_data.zip"].sha256 is None
    assert registry.datasets["hymenoptera"].layout == {
        "hymenoptera_data/train/ants": 124,
        "hymenoptera_data/train/bees": 121,
        "hymenoptera_data/val/ants": 70,
        "hymenoptera_data/val/bees": 83,
    }
    assert DATASET_DIRS == {
        "mnist": "MNIST/raw",
        "cifar10": "cifar-10-batches-py",
        "hymenoptera": "hymenoptera_data",
    }


@pytest.mark.parametrize(
    "file_entry, complaint",
    [
        ('name = "x.gz"\nto = "../outside"', "must stay inside the data dir"),
        ('name = "x.gz"\nmd5 = "not-a-digest"', "is not a hex digest"),
        ('name = "x.gz"\nunpack = "magic"', "unpack must be one of"),
        ('name = "x.gz"\nsize = -3', "whole number of bytes"),
        ('to = "x"', "every file needs a name"),
    ],
)
def test_malformed_registry_entries_are_named(tmp_path, file_entry, complaint):
    path = tmp_path / "reg.toml"
    path.write_text(
        f'[datasets.x]\ndir = "x"\nmirrors = ["http://h/"]\n\n[[datasets.x.files]]\n{file_entry}\n'
    )

    with pytest.raises(RegistryError) as caught:
        load(path)

    message = str(caught.value)
    assert complaint in message and "datasets.x.files[0]" in message and "\n" not in message


def test_second_holder_of_the_lock_waits_for_the_first(data_dir):
    events = []

    def second() -> None:
        with DataDirLock(data_dir, on_wait=lambda msg: events.append(("waiting", msg))):
            events.append(("second has it", None))

    with DataDirLock(data_dir):
        thread = threading.Thread(target=second)
        thread.start()
        while not events:  # the second run reports that it waits...
            time.sleep(0.01)
        assert events[0][0] == "waiting" and str(data_dir) in events[0][1]
        assert f"another download (pid {os.getpid()}) is using" in events[0][1]
        events.append(("first releases", None))
    thread.join(5)
    # ...and gets the lock only after the first let go
    assert [kind for kind, _ in events] == ["waiting", "first releases", "second has it"]


def test_host_side_data_modules_never_import_torch():
    code = (
        "import sys; import lab.data, lab.data.cli, lab.data.download, lab.data.labels, "
        "lab.data.fetch, lab.data.extract; "
        "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
