"""The whole download path against a real local HTTP server: layout, manifest, idempotent rerun."""

from __future__ import annotations

import gzip
import json

from support import synthetic
from support.dl_support import SYNTHETIC, lab_data, md5

from lab.data.download import Run
from lab.data.progress import Quiet
from lab.data.registry import load
from lab.data.store import MANIFEST_NAME


def download(registry_path, data_dir, names=("mnist", "cifar10", "hymenoptera"), jobs=4):
    return Run(load(registry_path), data_dir, jobs, Quiet()).run(list(names))


def test_everything_lands_in_torchvisions_layout(server, registry, data_dir):
    summary = download(registry, data_dir)

    assert summary["ok"], summary["errors"]
    raw = data_dir / "MNIST" / "raw"
    for name in synthetic.MNIST_FILES:  # the .gz and the decompressed copy torchvision reads
        assert (raw / name).read_bytes() == SYNTHETIC[name]
        assert (raw / name.removesuffix(".gz")).read_bytes() == gzip.decompress(SYNTHETIC[name])
    for name, data in synthetic.cifar_members().items():
        assert (data_dir / "cifar-10-batches-py" / name).read_bytes() == data
    for name, data in synthetic.hymenoptera_members().items():
        assert (data_dir / name).read_bytes() == data
    # the archives are kept where torchvision's own download would look for them
    assert md5((data_dir / "cifar-10-python.tar.gz").read_bytes()) == md5(
        SYNTHETIC["cifar-10-python.tar.gz"]
    )
    # nothing half-made is left behind
    leftovers = [
        p.name
        for p in data_dir.rglob("*")
        if ".part" in p.name or ".tmp" in p.name or p.name.startswith(".extract-")
    ]
    assert leftovers == []
    assert {d["status"] for d in summary["datasets"].values()} == {"downloaded"}
    assert summary["bytes_downloaded"] == sum(len(v) for v in SYNTHETIC.values())


def test_rerun_makes_no_request_and_says_so(server, registry, data_dir):
    download(registry, data_dir)
    server.reset_stats()

    result = lab_data("download", "--registry", str(registry), "--data-dir", str(data_dir))

    assert result.returncode == 0, result.stderr
    assert server.stats.requests == 0
    assert "nothing downloaded (0 requests)" in result.stdout


def test_no_checksum_archive_gets_its_sha256_pinned(server, registry, data_dir):
    download(registry, data_dir, ["hymenoptera"])

    manifest = json.loads((data_dir / MANIFEST_NAME).read_text())
    import hashlib

    pinned = manifest["pins"]["hymenoptera/hymenoptera_data.zip"]["sha256"]
    assert pinned == hashlib.sha256(SYNTHETIC["hymenoptera_data.zip"]).hexdigest()


def test_deleted_extraction_is_restored_from_the_kept_archive(server, registry, data_dir):
    import shutil

    download(registry, data_dir, ["cifar10"])
    shutil.rmtree(data_dir / "cifar-10-batches-py")
    server.reset_stats()

    summary = download(registry, data_dir, ["cifar10"])

    assert server.stats.requests == 0
    assert summary["datasets"]["cifar10"]["status"] == "restored"
    assert (data_dir / "cifar-10-batches-py" / "data_batch_1").is_file()


def test_a_file_changed_on_disk_is_rehashed_and_fetched_again(server, registry, data_dir):
    download(registry, data_dir, ["mnist"])
    victim = data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(b"garbage")  # new size and mtime: the manifest no longer vouches for it
    server.reset_stats()

    summary = download(registry, data_dir, ["mnist"])

    assert summary["ok"]
    assert victim.read_bytes() == SYNTHETIC[victim.name]
    assert server.served(victim.name) == len(SYNTHETIC[victim.name])
    assert server.stats.requests == 1  # only the changed file


def test_cli_json_summary(server, registry, data_dir):
    result = lab_data(
        "download",
        "--dataset",
        "mnist",
        "--registry",
        str(registry),
        "--data-dir",
        str(data_dir),
        "--json",
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["datasets"]["mnist"]["status"] == "downloaded"
    assert {f["name"] for f in summary["datasets"]["mnist"]["files"]} == set(synthetic.MNIST_FILES)
    assert summary["requests"] == server.stats.requests == 4
    assert list(summary["datasets"]) == ["mnist"]


def test_data_dir_comes_from_the_environment(server, registry, data_dir):
    # data_dir fixture sets LAB_DATA_DIR; no --data-dir given
    result = lab_data("download", "--dataset", "cifar10", "--registry", str(registry), "--quiet")

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert (data_dir / "cifar-10-batches-py" / "test_batch").is_file()
