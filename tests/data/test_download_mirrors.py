"""Bad mirrors: wrong bytes, error statuses, wrong sizes, flaky answers, and the final error."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from support import synthetic
from support.dl_support import FAST_FETCH, SYNTHETIC, lab_data, md5, write_registry

from lab.data import download as download_module
from lab.data import store
from lab.data.download import Run
from lab.data.progress import Quiet
from lab.data.registry import load
from lab.data.store import MANIFEST_NAME, Manifest

CIFAR = "cifar-10-python.tar.gz"


def download(reg, data_dir, names):
    return Run(load(reg), data_dir, 4, Quiet()).run(list(names))


def visible_files(data_dir):
    """What a person (or torchvision) would see: no hidden bookkeeping files."""
    return sorted(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if not any(part.startswith(".") for part in p.relative_to(data_dir).parts)
    )


def test_corrupt_first_mirror_falls_back_to_the_second(server, registry, data_dir):
    server.behave("a", corrupt=True)

    summary = download(registry, data_dir, ["mnist", "cifar10"])

    assert summary["ok"], summary["errors"]
    for name in synthetic.MNIST_FILES:
        assert (data_dir / "MNIST" / "raw" / name).read_bytes() == SYNTHETIC[name]
        [report] = [f for f in summary["datasets"]["mnist"]["files"] if f["name"] == name]
        assert report["url"] == server.url("b") + name
    assert (data_dir / CIFAR).read_bytes() == SYNTHETIC[CIFAR]


def test_missing_and_failing_mirrors_fall_back(server, registry, data_dir):
    server.behave("a", "train-images-idx3-ubyte.gz", status=404)
    server.behave("a", "t10k-images-idx3-ubyte.gz", status=500)  # retried, then given up

    summary = download(registry, data_dir, ["mnist"])

    assert summary["ok"], summary["errors"]
    paths = [path for path, _, _, _ in server.stats.log]
    assert paths.count("/a/train-images-idx3-ubyte.gz") == 1  # a 404 is not retried
    assert paths.count("/a/t10k-images-idx3-ubyte.gz") == 1 + FAST_FETCH["retries"]


def test_a_flaky_mirror_is_retried_not_abandoned(server, registry, data_dir):
    server.behave("a", CIFAR, status=503, status_times=2)

    summary = download(registry, data_dir, ["cifar10"])

    assert summary["ok"], summary["errors"]
    assert summary["datasets"]["cifar10"]["files"][0]["url"] == server.url("a") + CIFAR


def test_wrong_size_mirror_is_skipped(server, tmp_path, data_dir):
    server.files["other.gz"] = SYNTHETIC["t10k-labels-idx1-ubyte.gz"] + b"extra"
    reg = write_registry(
        tmp_path / "r.toml",
        [server.url("a")],
        datasets={
            "tiny": {
                "dir": "tiny",
                "files": [
                    {
                        "name": "x.gz",
                        "to": "tiny",
                        "urls": [
                            server.url("a") + "other.gz",
                            server.url("b") + "t10k-labels-idx1-ubyte.gz",
                        ],
                        "size": len(SYNTHETIC["t10k-labels-idx1-ubyte.gz"]),
                    }
                ],
            }
        },
    )

    summary = download(reg, data_dir, ["tiny"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "tiny" / "x.gz").read_bytes() == SYNTHETIC["t10k-labels-idx1-ubyte.gz"]
    # refused on the size its first answer announced: not retried, nothing kept from it
    assert [p for p, _, _, _ in server.stats.log].count("/a/other.gz") == 1
    assert summary["datasets"]["tiny"]["files"][0]["url"].startswith(server.url("b"))


def test_all_mirrors_bad_gives_one_line_error_and_leaves_nothing(server, registry, data_dir):
    server.behave("a", corrupt=True)
    server.behave("b", status=500)

    result = lab_data(
        "download",
        "--dataset",
        "cifar10",
        "--registry",
        str(registry),
        "--data-dir",
        str(data_dir),
        "--quiet",
    )

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = lines[0]
    assert "cifar10" in line and server.url("b") + CIFAR in line and "HTTP 500" in line
    assert server.url("a") + CIFAR + ": md5 mismatch" in line  # every mirror says why
    assert "--registry" in line  # what to do about it
    assert visible_files(data_dir) == []  # no archive, no half-extracted folder
    assert not list(data_dir.rglob("*.part"))  # the corrupt copy was discarded


def test_unreachable_mirror_names_the_cause(tmp_path, data_dir):
    reg = write_registry(tmp_path / "r.toml", ["http://127.0.0.1:9/nothing/"])

    result = lab_data("download", "--dataset", "mnist", "--registry", str(reg), "--json")

    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["ok"] is False and summary["datasets"]["mnist"]["status"] == "failed"
    assert "cannot connect" in result.stderr and "127.0.0.1:9" in result.stderr
    # one line for the dataset, though all four of its files failed
    assert len(result.stderr.strip().splitlines()) == 1
    assert "and 3 more of its files failed" in result.stderr


def test_changed_copy_of_an_unchecksummed_archive_is_detected(server, registry, data_dir):
    download(registry, data_dir, ["hymenoptera"])
    (data_dir / "hymenoptera_data.zip").unlink()  # force a fresh download...
    (data_dir / "hymenoptera_data" / "val" / "bees" / "bees_000.jpg").unlink()
    # ...of an archive that is valid but not the one verified the first time
    server.files["hymenoptera_data.zip"] = synthetic.hymenoptera_zip(
        {k: v + 1 for k, v in synthetic.HYMENOPTERA_SMALL.items()}
    )

    result = lab_data(
        "download",
        "--dataset",
        "hymenoptera",
        "--registry",
        str(registry),
        "--data-dir",
        str(data_dir),
    )

    assert result.returncode == 1
    assert "differs from the copy verified on" in result.stderr
    assert MANIFEST_NAME in result.stderr


def test_a_corrupt_unchecksummed_archive_is_never_at_its_final_path_nor_on_record(
    server, registry, data_dir, monkeypatch
):
    """hymenoptera publishes no checksum: only a clean unpack vouches for its archive, so the
    corrupt copy from mirror a must never be at the final path or in the manifest."""
    server.behave("a", corrupt=True)
    final = data_dir / "hymenoptera_data.zip"
    good = SYNTHETIC["hymenoptera_data.zip"]
    seen_at_unpack = []  # per unpack: (is it the good copy, is anything at the final path)
    real_extract = download_module.extract

    def watched_extract(archive, *args, **kwargs):
        seen_at_unpack.append((Path(archive).read_bytes() == good, final.exists()))
        return real_extract(archive, *args, **kwargs)

    written = []  # every manifest the run saved, in order
    real_write = store.write_json_atomic

    def watched_write(path, payload):
        if path.name == MANIFEST_NAME:
            written.append(json.loads(json.dumps(payload)))
        return real_write(path, payload)

    monkeypatch.setattr(download_module, "extract", watched_extract)
    monkeypatch.setattr(store, "write_json_atomic", watched_write)

    summary = download(registry, data_dir, ["hymenoptera"])

    assert summary["ok"], summary["errors"]
    assert seen_at_unpack == [(False, False), (True, False)]  # nothing final until it unpacked
    assert final.read_bytes() == good
    good_sums = {"md5": md5(good), "sha256": hashlib.sha256(good).hexdigest()}
    recorded = [
        {k: entry[k] for k in good_sums if k in entry}
        for manifest in written
        for section in ("files", "unpacked", "pins")
        for entry in manifest.get(section, {}).values()
    ]
    assert recorded and all(sums.items() <= good_sums.items() for sums in recorded), recorded


def test_a_broken_local_archive_without_checksum_is_fetched_again(server, registry, data_dir):
    (data_dir / "hymenoptera_data.zip").write_bytes(b"PK\x03\x04 not really a zip")

    summary = download(registry, data_dir, ["hymenoptera"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "hymenoptera_data.zip").read_bytes() == SYNTHETIC["hymenoptera_data.zip"]
    assert (data_dir / "hymenoptera_data" / "val" / "bees").is_dir()


def test_archive_with_the_wrong_layout_is_refused(server, tmp_path, data_dir):
    reg = write_registry(
        tmp_path / "r.toml",
        [server.url("a")],
        datasets={
            "hymenoptera": {
                "dir": "hymenoptera_data",
                "layout": {"hymenoptera_data/train/ants": 124},
                "files": [{"name": "hymenoptera_data.zip", "unpack": "extract"}],
            }
        },
    )

    summary = download(reg, data_dir, ["hymenoptera"])

    assert not summary["ok"]
    assert "holds 6 files, expected 124" in summary["errors"][0]
    assert visible_files(data_dir) == []
    assert Manifest(data_dir).pins == {}  # a refused copy is never remembered as good


def test_bad_input_exits_2_with_one_line(tmp_path, registry, data_dir):
    unknown = lab_data("download", "--dataset", "imagenet", "--registry", str(registry))
    broken = tmp_path / "broken.toml"
    broken.write_text("[datasets.x\n")
    bad_registry = lab_data("download", "--registry", str(broken))

    assert unknown.returncode == 2
    assert "unknown dataset 'imagenet'" in unknown.stderr and "mnist" in unknown.stderr
    assert bad_registry.returncode == 2 and "not valid TOML" in bad_registry.stderr
    for result in (unknown, bad_registry):
        assert len(result.stderr.strip().splitlines()) == 1
