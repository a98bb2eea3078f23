"""Hostile archives are refused as a whole: nothing lands outside, nothing half-extracted."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest
from support.dl_support import cifar_archive_registry

from lab.data.download import Run
from lab.data.extract import CorruptArchive, UnsafeArchive, extract
from lab.data.progress import Quiet
from lab.data.registry import load


def tar_bytes(*members: tuple[str, str, str | bytes]) -> bytes:
    """members: (kind, name, payload) with kind file|symlink|hardlink|chardev|fifo|dir."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chardev": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
                "dir": tarfile.DIRTYPE,
            }[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tar.addfile(info)
    return out.getvalue()


def zip_bytes(*members: tuple[str, bytes, int | None]) -> bytes:
    """members: (name, payload, unix mode or None)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, payload, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, payload)
    return out.getvalue()


OK = ("file", "top/ok.txt", b"fine")
HOSTILE_TARS = {
    "dotdot": [OK, ("file", "top/../../evil.txt", b"x")],
    "absolute": [OK, ("file", "/tmp/evil-absolute.txt", b"x")],
    "symlink outside": [OK, ("symlink", "top/link", "../../evil.txt")],
    "absolute symlink": [OK, ("symlink", "top/link", "/etc/passwd")],
    "hardlink outside": [OK, ("hardlink", "top/hard", "../evil.txt")],
    "device": [OK, ("chardev", "top/null", "")],
    "fifo": [OK, ("fifo", "top/pipe", "")],
    # each link looks harmless alone; together top/b/c resolves outside the root
    "chained symlinks": [
        OK,
        ("symlink", "top/b", "."),
        ("symlink", "top/b/c", "../../evil"),
        ("file", "top/b/c/evil.txt", b"x"),
    ],
}
HOSTILE_ZIPS = {
    "dotdot": [("top/ok.txt", b"fine", None), ("top/../../evil.txt", b"x", None)],
    "absolute": [("top/ok.txt", b"fine", None), ("/tmp/evil-absolute.txt", b"x", None)],
    "symlink outside": [
        ("top/ok.txt", b"fine", None),
        ("top/link", b"../../evil.txt", stat.S_IFLNK | 0o777),
    ],
    "device": [("top/ok.txt", b"fine", None), ("top/null", b"", stat.S_IFCHR | 0o644)],
}


def assert_nothing_landed(tmp_path, data_dir):
    assert not (data_dir / "top").exists()
    assert not list(tmp_path.rglob("evil*"))
    assert not list(data_dir.glob(".extract-*"))  # the staging dir is gone too


@pytest.mark.parametrize("case", HOSTILE_TARS)
def test_hostile_tar_is_refused(case, tmp_path, data_dir):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(tar_bytes(*HOSTILE_TARS[case]))

    with pytest.raises(UnsafeArchive):
        extract(archive, data_dir, "top")

    assert_nothing_landed(tmp_path, data_dir)


@pytest.mark.parametrize("case", HOSTILE_ZIPS)
def test_hostile_zip_is_refused(case, tmp_path, data_dir):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(zip_bytes(*HOSTILE_ZIPS[case]))

    with pytest.raises(UnsafeArchive):
        extract(archive, data_dir, "top")

    assert_nothing_landed(tmp_path, data_dir)


def test_links_inside_the_archive_are_fine(tmp_path, data_dir):
    archive = tmp_path / "good.tar.gz"
    archive.write_bytes(tar_bytes(OK, ("symlink", "top/alias.txt", "ok.txt")))

    extract(archive, data_dir, "top")

    assert (data_dir / "top" / "alias.txt").read_bytes() == b"fine"


def test_replacing_an_old_copy_is_all_or_nothing(tmp_path, data_dir):
    (data_dir / "top").mkdir()
    (data_dir / "top" / "old.txt").write_text("old")
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(tar_bytes(OK, ("file", "top/big.bin", bytes(200_000)))[:-2000])

    with pytest.raises(CorruptArchive):
        extract(truncated, data_dir, "top")

    assert sorted(p.name for p in (data_dir / "top").iterdir()) == ["old.txt"]


def test_download_refuses_a_hostile_archive(server, tmp_path, data_dir):
    evil = tar_bytes(
        ("file", "cifar-10-batches-py/data_batch_1", b"x"), ("file", "../../evil.txt", b"x")
    )
    reg = cifar_archive_registry(tmp_path, server, evil)

    summary = Run(load(reg), data_dir, 2, Quiet()).run(["cifar10"])

    assert not summary["ok"]
    assert "climbs out with '..'" in summary["errors"][0]
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (data_dir / "cifar-10-batches-py").exists()
    assert not (data_dir / "evil.tar.gz").exists()


def test_a_python_without_tar_filters_refuses_links_but_extracts_plain_archives(
    monkeypatch, tmp_path, data_dir
):
    """Debian bookworm's Python 3.11.2 (the lab image's) has no tarfile filters: links could
    chain their way out, so they are refused; plain files and folders still unpack."""
    from lab.data import extract as extract_module

    monkeypatch.setattr(extract_module, "HAS_TAR_FILTERS", False)
    linked = tmp_path / "linked.tar.gz"
    linked.write_bytes(tar_bytes(OK, ("symlink", "top/alias.txt", "ok.txt")))
    with pytest.raises(UnsafeArchive, match="is a link"):
        extract(linked, data_dir, "top")
    assert_nothing_landed(tmp_path, data_dir)

    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(tar_bytes(("dir", "top", ""), OK))
    extract(plain, data_dir, "top")
    assert (data_dir / "top" / "ok.txt").read_bytes() == b"fine"
