"""Helpers for the download tests: synthetic files, test registries, the CLI in a subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from support import synthetic

ROOT = Path(__file__).resolve().parents[2]
FAST_FETCH = {"timeout": 5, "retries": 2, "backoff": 0.01}


def synthetic_files() -> dict[str, bytes]:
    files = dict(synthetic.mnist_files())
    files["cifar-10-python.tar.gz"] = synthetic.cifar_archive()
    files["hymenoptera_data.zip"] = synthetic.hymenoptera_zip()
    return files


SYNTHETIC = synthetic_files()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _toml_value(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def write_registry(
    path: Path,
    mirrors: list[str],
    fetch: dict | None = None,
    datasets: dict | None = None,
    checksums: bool = True,
) -> Path:
    """A registry for the synthetic datasets (real md5s, small hymenoptera counts).

    ``datasets`` adds/overrides entries: name -> {"dir", "layout", "files": [{...}]}.
    """
    entries = {
        "mnist": {
            "dir": "MNIST/raw",
            "layout": {"MNIST/raw": [n.removesuffix(".gz") for n in synthetic.MNIST_FILES]},
            "files": [
                {
                    "name": n,
                    "to": "MNIST/raw",
                    "md5": md5(SYNTHETIC[n]),
                    "size": len(SYNTHETIC[n]),
                    "unpack": "gunzip",
                }
                for n in synthetic.MNIST_FILES
            ],
        },
        "cifar10": {
            "dir": "cifar-10-batches-py",
            "layout": {"cifar-10-batches-py": sorted(synthetic.cifar_members())},
            "files": [
                {
                    "name": "cifar-10-python.tar.gz",
                    "unpack": "extract",
                    "md5": md5(SYNTHETIC["cifar-10-python.tar.gz"]),
                }
            ],
        },
        "hymenoptera": {
            "dir": "hymenoptera_data",
            "layout": {
                f"hymenoptera_data/{s}/{c}": n for (s, c), n in synthetic.HYMENOPTERA_SMALL.items()
            },
            "files": [{"name": "hymenoptera_data.zip", "unpack": "extract"}],
        },
    }
    entries.update(datasets or {})
    lines = ["[fetch]"] + [f"{k} = {v}" for k, v in (fetch or FAST_FETCH).items()]
    for name, entry in entries.items():
        lines += [
            "",
            f"[datasets.{name}]",
            f'dir = "{entry["dir"]}"',
            f"mirrors = {_toml_value(mirrors)}",
            "",
            f"[datasets.{name}.layout]",
        ]
        lines += [f'"{k}" = {_toml_value(v)}' for k, v in entry.get("layout", {}).items()]
        for spec in entry["files"]:
            if not checksums:
                spec = {k: v for k, v in spec.items() if k not in ("md5", "sha256")}
            lines += ["", f"[[datasets.{name}.files]]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def blob_registry(tmp_path, server, data: bytes, checksum: bool = True, mirrors=("a",)):
    """A registry of one raw file ``blob.bin`` (served by ``server``), md5 only with
    ``checksum``; its mirrors are ``server``'s prefixes ``mirrors``."""
    spec = {"name": "blob.bin", "to": "blob", "size": len(data)}
    if checksum:
        spec["md5"] = md5(data)
    server.files["blob.bin"] = data
    return write_registry(
        tmp_path / "blob.toml",
        [server.url(m) for m in mirrors],
        datasets={"blob": {"dir": "blob", "files": [spec]}},
    )


def cifar_archive_registry(tmp_path, server, archive: bytes) -> Path:
    """A registry whose cifar10 is ``archive`` (served as evil.tar.gz, md5 right): what is
    tested is what unpacking does with its members."""
    server.files["evil.tar.gz"] = archive
    return write_registry(
        tmp_path / "r.toml",
        [server.url("a")],
        datasets={
            "cifar10": {
                "dir": "cifar-10-batches-py",
                "files": [{"name": "evil.tar.gz", "md5": md5(archive), "unpack": "extract"}],
            }
        },
    )


def lab_data(*args: str, timeout: float = 60, **popen) -> subprocess.CompletedProcess:
    """``python -m lab data ...`` in a subprocess (as `invoke download-data` runs it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "lab", "data", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def start_lab_data(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "lab", "data", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
