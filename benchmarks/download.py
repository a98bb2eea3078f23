"""Download benchmark: our downloader vs torchvision's download_url, and the cost of a kill -9.

Both fetch the same random archive from the tests' local HTTP server, throttled per connection
(default 160 MB at 2 MB/s per connection, like a slow origin). Ours runs as the CLI does
(`python -m lab data download`, a subprocess); torchvision's runs in this process.
Targets: ours >= 6x faster; after kill -9 at ~50 %, bytes fetched twice <= 5 % of the file.

    python benchmarks/download.py               # the real thing (~2 minutes)
    python benchmarks/download.py --size-mb 16  # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.dl_server import FileServer  # the same server the tests use

NAME = "bench.tar.gz"


def make_archive(path: Path, size: int) -> str:
    """Random bytes (incompressible, like a real archive); returns the md5."""
    digest = hashlib.md5()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def write_registry(path: Path, url: str, size: int, md5: str) -> None:
    path.write_text(
        "[fetch]\ntimeout = 30\nretries = 4\nbackoff = 0.5\n\n"
        f'[datasets.bench]\ndir = "bench"\nmirrors = ["{url}"]\n\n'
        f'[[datasets.bench.files]]\nname = "{NAME}"\nto = "bench"\nsize = {size}\nmd5 = "{md5}"\n'
    )


def lab_download(registry: Path, data_dir: Path, jobs: int, popen: bool = False):
    cmd = [
        sys.executable,
        "-m",
        "lab",
        "data",
        "download",
        "--dataset",
        "bench",
        "--registry",
        str(registry),
        "--data-dir",
        str(data_dir),
        "--jobs",
        str(jobs),
        "--json",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if popen:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"our downloader failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def persisted(state: Path) -> int:
    try:
        segments = json.loads(state.read_text())["segments"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(pos - start for start, _, pos in segments)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=160, help="archive size (default 160)")
    parser.add_argument(
        "--rate-mb", type=float, default=2, help="server throttle per connection, MB/s (default 2)"
    )
    parser.add_argument("--jobs", type=int, default=8, help="our connections (default 8)")
    parser.add_argument(
        "--skip-torchvision", action="store_true", help="only our downloader and the kill -9 check"
    )
    args = parser.parse_args(argv)
    size, rate = int(args.size_mb * 1e6), args.rate_mb * 1e6

    with tempfile.TemporaryDirectory(prefix="lab-download-bench-") as tmp:
        tmp = Path(tmp)
        source = tmp / NAME
        md5 = make_archive(source, size)
        registry = tmp / "registry.toml"
        with FileServer({NAME: source}) as server:
            server.behave("a", throttle=rate)
            write_registry(registry, server.url("a"), size, md5)
            print(
                f"archive {size / 1e6:.0f} MB, server throttled to {rate / 1e6:g} MB/s "
                f"per connection, ours with --jobs {args.jobs}"
            )

            started = time.perf_counter()
            summary = lab_download(registry, tmp / "ours", args.jobs)
            ours = time.perf_counter() - started
            ours_bytes = server.reset_stats().bytes
            assert file_md5(tmp / "ours" / "bench" / NAME) == md5
            print(
                f"ours:        {ours:7.2f} s  ({summary['requests']} requests, "
                f"{ours_bytes / 1e6:.1f} MB served)"
            )

            if not args.skip_torchvision:
                from torchvision.datasets.utils import download_url

                started = time.perf_counter()
                download_url(server.url("a") + NAME, str(tmp / "tv"), md5=md5)
                theirs = time.perf_counter() - started
                tv_bytes = server.reset_stats().bytes
                assert file_md5(tmp / "tv" / NAME) == md5
                print(f"torchvision: {theirs:7.2f} s  ({tv_bytes / 1e6:.1f} MB served)")
                print(f"ratio: ours is {theirs / ours:.1f}x faster (target >= 6x)")

            # kill -9 at ~50 %, then rerun: how much is fetched twice?
            data_dir = tmp / "killed"
            state = data_dir / "bench" / f".{NAME}.part.json"
            proc = lab_download(registry, data_dir, args.jobs, popen=True)
            while proc.poll() is None and persisted(state) < size / 2:
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kept = persisted(state)
            first = server.reset_stats().bytes
            lab_download(registry, data_dir, args.jobs)
            second = server.reset_stats().bytes
            assert file_md5(data_dir / "bench" / NAME) == md5
            twice = first + second - size
            print(
                f"kill -9 at {first / size:.0%} served ({kept / size:.0%} on disk and "
                f"recorded); rerun fetched {second / 1e6:.1f} MB; bytes fetched twice: "
                f"{twice / 1e6:.2f} MB = {twice / size:.2%} of the file (target <= 5 %)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
