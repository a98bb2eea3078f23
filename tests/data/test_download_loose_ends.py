"""The loose ends a fault-injection run found: crash between rename and unpack, raw files
without a checksum, retry budgets, refused archives and failed runs' output, write errors."""

from __future__ import annotations

import errno
import os
import random

from support.dl_support import blob_registry, cifar_archive_registry, lab_data, write_registry

from lab.data import connection
from lab.data.cli import write_problem
from lab.data.download import Run
from lab.data.progress import Quiet
from lab.data.registry import load

CIFAR = "cifar-10-python.tar.gz"


def test_a_crash_after_the_rename_before_unpacking_is_finished_by_the_rerun(
    server, registry, data_dir, monkeypatch
):
    from lab.data import download

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies right after the archive is in place

    monkeypatch.setattr(download, "extract", crash)
    try:
        Run(load(registry), data_dir, 2, Quiet()).run(["cifar10"])
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert (data_dir / CIFAR).is_file() and not list(data_dir.glob(".*.part"))

    server.reset_stats()
    summary = Run(load(registry), data_dir, 2, Quiet()).run(["cifar10"])

    assert summary["ok"], summary["errors"]
    assert summary["datasets"]["cifar10"]["status"] == "restored"
    assert server.stats.requests == 0  # unpacked from the verified download in place
    assert (data_dir / "cifar-10-batches-py").is_dir()


def test_a_present_file_clears_a_leftover_part_file(registry, data_dir):
    Run(load(registry), data_dir, 2, Quiet()).run(["cifar10"])
    leftover = data_dir / f".{CIFAR}.part"
    leftover.write_bytes(b"x" * 1000)  # what the old landing order left after a kill
    (data_dir / f".{CIFAR}.part.json").write_text("{}")

    summary = Run(load(registry), data_dir, 2, Quiet()).run(["cifar10"])

    assert summary["ok"] and summary["requests"] == 0
    assert not leftover.exists() and not (data_dir / f".{CIFAR}.part.json").exists()


def test_a_raw_file_without_checksum_is_remembered_and_a_changed_copy_caught(
    server, tmp_path, data_dir
):
    data = random.Random(3).randbytes(50_000)
    reg = blob_registry(tmp_path, server, data, checksum=False)
    assert Run(load(reg), data_dir, 2, Quiet()).run(["blob"])["ok"]

    (data_dir / "blob" / "blob.bin").unlink()
    server.files["blob.bin"] = random.Random(4).randbytes(50_000)  # upstream swapped it
    summary = Run(load(reg), data_dir, 2, Quiet()).run(["blob"])

    assert not summary["ok"]
    assert "differs from the copy verified on" in summary["errors"][0]


def test_a_mirror_that_cuts_every_answer_falls_back_in_bounded_retries(server, tmp_path, data_dir):
    data = random.Random(5).randbytes(400_000)
    reg = blob_registry(tmp_path, server, data, checksum=True, mirrors=("a", "b"))
    # progress every time (a few KB), then the cut: without a bound, retried forever
    server.behave("a", "blob.bin", drop_after=2_000, drops=10_000)

    summary = Run(load(reg), data_dir, 1, Quiet()).run(["blob"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data
    from_a = sum(1 for path, *_ in server.stats.log if path.startswith("/a/"))
    retries = load(reg).fetch.retries
    assert from_a <= 2 + connection.RECONNECTS_PER_RETRY * max(1, retries), from_a


def test_a_refused_archive_does_not_blame_the_connection(server, tmp_path, data_dir):
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/null")
        info.type = tarfile.CHRTYPE
        tar.addfile(info)
    evil = out.getvalue()
    reg = cifar_archive_registry(tmp_path, server, evil)

    summary = Run(load(reg), data_dir, 2, Quiet()).run(["cifar10"])

    error = summary["errors"][0]
    assert "device or FIFO" in error and "not safe to unpack" in error
    assert "check the connection" not in error


def test_a_failed_run_keeps_its_error_lines_apart_from_the_summary(tmp_path, data_dir):
    reg = write_registry(tmp_path / "r.toml", ["http://127.0.0.1:9/nothing/"])

    result = lab_data(
        "download", "--dataset", "mnist", "--registry", str(reg), "--data-dir", str(data_dir)
    )

    assert result.returncode == 1
    assert result.stdout == ""  # one stream, so nothing can interleave with it
    lines = result.stderr.splitlines()
    assert lines[-2].startswith("mnist: failed (")
    assert lines[-1].startswith("lab data download: mnist: could not get")
    assert lines[-1].endswith("(and 3 more of its files failed)")


def test_permission_denied_names_the_owner_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("LAB_CONTAINER_USER", raising=False)
    target = tmp_path / "data"
    target.mkdir()
    exc = PermissionError(errno.EACCES, "Permission denied", str(target / "x"))

    line = write_problem(target, exc)

    assert "permission denied" in line and f"belongs to uid {os.stat(target).st_uid}" in line
    assert f"sudo chown -R {os.getuid()}:{os.getgid()} {target.resolve()}" in line
    assert "space" not in line and "\n" not in line
    monkeypatch.setenv("LAB_CONTAINER_USER", "lab")
    assert "invoke down && invoke up" in write_problem(target, exc)
    full = OSError(errno.ENOSPC, "No space left on device", str(target))
    assert "free some space" in write_problem(target, full)


def test_temp_files_of_dead_writers_are_removed(registry, data_dir):
    Run(load(registry), data_dir, 2, Quiet()).run(["mnist"])
    stale = [
        data_dir / ".lab-manifest.json.999999.140000.tmp",  # kill -9 during a manifest write
        data_dir / "MNIST" / "raw" / ".t10k-images-idx3-ubyte.gz.part.json.999999.1.tmp",
        data_dir / "MNIST" / "raw" / ".t10k-images-idx3-ubyte.tmp",  # a gunzip cut short
    ]
    for path in stale:
        path.write_text("{")

    assert Run(load(registry), data_dir, 2, Quiet()).run(["mnist"])["ok"]

    assert [path.name for path in stale if path.exists()] == []


def test_a_rerun_with_nothing_to_do_needs_no_write_access(registry, data_dir, monkeypatch):
    """A complete data dir that is read-only (or whose lock file another user owns): tests
    run as root, whom permissions do not stop, so every write fails here by decree."""
    from lab.data import lock, store

    assert Run(load(registry), data_dir, 2, Quiet()).run(["mnist", "cifar10"])["ok"]
    real_open = os.open

    def read_only_open(path, flags, *args):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    def no_write(path, payload):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(lock.os, "open", read_only_open)
    monkeypatch.setattr(store, "write_json_atomic", no_write)

    summary = Run(load(registry), data_dir, 2, Quiet()).run(["mnist", "cifar10"])

    assert summary["ok"], summary["errors"]
    assert summary["requests"] == 0


def test_one_module_owns_the_checksum_algorithms(tmp_path):
    import dataclasses
    import hashlib

    from lab.data.hashing import ALGORITHMS, PrefixHasher, hash_file, parse_digests
    from lab.data.registry import FileSpec

    data = random.Random(6).randbytes(3 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    truth = {name: hashlib.new(name, data).hexdigest() for name in ALGORITHMS}
    assert hash_file(path) == truth
    follower = PrefixHasher()
    with open(path, "rb") as handle:
        follower.advance(handle.fileno(), len(data))
    assert follower.digests() == truth
    # the registry reads and FileSpec carries exactly these
    assert set(ALGORITHMS) <= {field.name for field in dataclasses.fields(FileSpec)}
    assert parse_digests({"md5": truth["md5"].upper()}, "x")["md5"] == truth["md5"]
