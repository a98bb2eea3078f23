"""Byte ranges, dropped connections, Ctrl-C and kill -9: a rerun fetches only what is missing."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest
from support.dl_support import blob_registry, lab_data, start_lab_data

from lab.data import segments
from lab.data.download import Run
from lab.data.progress import Quiet
from lab.data.registry import load


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def state_progress(data_dir) -> int:
    state = json.loads((data_dir / "blob" / ".blob.bin.part.json").read_text())
    return sum(pos - start for start, _, pos in state["segments"])


@pytest.fixture
def small_chunks(monkeypatch):
    """Split files of a few hundred kB the way multi-MB files are split for real."""
    monkeypatch.setattr(segments, "CHUNK_MIN", 32 << 10)
    monkeypatch.setattr(segments, "SPLIT_MIN", 64 << 10)


class CancelHalfway(Quiet):
    """Presses Ctrl-C (the run's cancel event) once half the bytes have arrived."""

    def __init__(self, size: int) -> None:
        self.size, self.seen, self.run = size, 0, None

    def advance(self, n: int) -> None:
        self.seen += n
        if self.seen >= self.size // 2:
            self.run.transport.cancel.set()


def test_large_file_is_split_into_parallel_ranges(server, tmp_path, data_dir, small_chunks):
    data = blob(600_000)
    reg = blob_registry(tmp_path, server, data)

    summary = Run(load(reg), data_dir, 4, Quiet()).run(["blob"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data
    ranges = [r for _, r, status, _ in server.stats.log if status == 206]
    assert len(ranges) > 4  # several segments, each its own range request
    assert server.served("blob.bin") == len(data)  # and no byte twice


def test_a_slow_connection_gets_help_near_the_end(
    server, tmp_path, data_dir, small_chunks, monkeypatch
):
    monkeypatch.setattr(segments, "SEGMENTS_PER_JOB", 1)  # two halves, one per connection
    monkeypatch.setattr(segments, "STEAL_AFTER", 0.5)
    data = blob(1 << 20)
    reg = blob_registry(tmp_path, server, data)
    server.behave("a", "blob.bin", throttle=100_000, throttle_times=1)  # the first half crawls

    summary = Run(load(reg), data_dir, 2, Quiet()).run(["blob"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data
    starts = [int(r.split("=")[1].split("-")[0]) for _, r, _, _ in server.stats.log]
    assert sorted(starts[:2]) == [0, len(data) // 2]
    # the idle connection took over the tail of the slow first half, piece by piece
    assert starts[2:] and all(0 < start < len(data) // 2 for start in starts[2:])
    assert server.served("blob.bin") < len(data) * 1.1  # little fetched twice


def test_dropped_connections_resume_where_they_stopped(server, tmp_path, data_dir, small_chunks):
    data = blob(600_000)
    reg = blob_registry(tmp_path, server, data)
    server.behave("a", "blob.bin", drop_after=20_000, drops=5)

    summary = Run(load(reg), data_dir, 4, Quiet()).run(["blob"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data
    assert server.served("blob.bin") == len(data)  # the dropped ranges were not refetched
    planned = len(segments.plan(len(data), segments.first_range_end(len(data), 4), 4))
    assert server.stats.requests == planned + 5  # one extra request per drop


def test_server_without_range_support_gets_one_stream(server, tmp_path, data_dir, small_chunks):
    data = blob(300_000)
    reg = blob_registry(tmp_path, server, data)
    server.behave("a", "blob.bin", ignore_range=True)

    summary = Run(load(reg), data_dir, 4, Quiet()).run(["blob"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data
    assert server.stats.requests == 1
    assert server.served("blob.bin") == len(data)


def interrupt_halfway(server, reg, data_dir, size) -> int:
    reporter = CancelHalfway(size)
    run = Run(load(reg), data_dir, 2, reporter)
    reporter.run = run
    with pytest.raises(KeyboardInterrupt):
        run.run(["blob"])
    assert not (data_dir / "blob" / "blob.bin").exists()  # nothing looks complete
    return state_progress(data_dir)


def test_ctrl_c_then_rerun_fetches_only_the_rest(server, tmp_path, data_dir, small_chunks):
    data = blob(800_000)
    reg = blob_registry(tmp_path, server, data)
    server.behave("a", "blob.bin", throttle=400_000)

    kept = interrupt_halfway(server, reg, data_dir, len(data))
    first_run = server.reset_stats().bytes
    summary = Run(load(reg), data_dir, 2, Quiet()).run(["blob"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data
    assert kept >= len(data) // 2
    assert server.served("blob.bin") == len(data) - kept
    assert summary["datasets"]["blob"]["files"][0]["resumed"] == kept
    assert first_run + server.served("blob.bin") - len(data) <= len(data) * 0.1


def test_resume_notices_the_file_changed_upstream(server, tmp_path, data_dir, small_chunks):
    old, new = blob(800_000, seed=1), blob(800_000, seed=2)
    reg = blob_registry(tmp_path, server, old, checksum=False)
    server.behave("a", "blob.bin", throttle=400_000)
    interrupt_halfway(server, reg, data_dir, len(old))
    server.files["blob.bin"] = new  # same size, new ETag: If-Range answers with the whole file
    server.behave("a", "blob.bin")

    summary = Run(load(reg), data_dir, 2, Quiet()).run(["blob"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "blob" / "blob.bin").read_bytes() == new


def test_ctrl_c_on_the_cli_keeps_progress_and_says_how_to_resume(server, tmp_path, data_dir):
    data = blob(6 << 20)
    reg = blob_registry(tmp_path, server, data)
    args = (
        "download",
        "--dataset",
        "blob",
        "--registry",
        str(reg),
        "--data-dir",
        str(data_dir),
        "--jobs",
        "2",
        "--quiet",
    )
    # slow enough that it cannot finish while this test, descheduled on a busy machine, looks
    # at its progress: the Ctrl-C must land mid-download
    server.behave("a", "blob.bin", throttle=1 << 17)
    proc = start_lab_data(*args)
    deadline = time.monotonic() + 60
    state = data_dir / "blob" / ".blob.bin.part.json"
    while time.monotonic() < deadline and not (
        state.exists() and state_progress(data_dir) >= len(data) * 0.3
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "lab data download: interrupted; what arrived is kept, rerun the same command to resume"
    ]
    kept = state_progress(data_dir)
    server.reset_stats()
    server.behave("a", "blob.bin")
    assert lab_data(*args).returncode == 0
    assert server.served("blob.bin") == len(data) - kept
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data


def test_a_damaged_progress_file_means_a_clean_start(server, tmp_path, data_dir, small_chunks):
    data = blob(300_000)
    reg = blob_registry(tmp_path, server, data)
    (data_dir / "blob").mkdir()
    (data_dir / "blob" / ".blob.bin.part").write_bytes(b"\xff" * len(data))
    # claims everything is there, but its segments do not tile the file
    (data_dir / "blob" / ".blob.bin.part.json").write_text(
        json.dumps(
            {
                "url": server.url("a") + "blob.bin",
                "size": len(data),
                "validator": None,
                "segments": [[0, 1000, 1000], [5000, len(data), len(data)]],
            }
        )
    )

    summary = Run(load(reg), data_dir, 2, Quiet()).run(["blob"])

    assert summary["ok"], summary["errors"]
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data
    assert server.served("blob.bin") == len(data)


def test_kill_9_mid_download_then_rerun_fetches_only_the_rest(server, tmp_path, data_dir):
    data = blob(6 << 20)  # above the real split threshold: the CLI subprocess splits it
    reg = blob_registry(tmp_path, server, data)
    server.behave("a", "blob.bin", throttle=1 << 20)
    state = data_dir / "blob" / ".blob.bin.part.json"
    proc = start_lab_data(
        "download",
        "--dataset",
        "blob",
        "--registry",
        str(reg),
        "--data-dir",
        str(data_dir),
        "--jobs",
        "2",
        "--quiet",
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if state.exists() and state_progress(data_dir) >= len(data) * 0.4:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    kept = state_progress(data_dir)
    first_run = server.reset_stats().bytes
    server.behave("a", "blob.bin")

    result = lab_data(
        "download",
        "--dataset",
        "blob",
        "--registry",
        str(reg),
        "--data-dir",
        str(data_dir),
        "--json",
    )

    assert result.returncode == 0, result.stderr
    assert (data_dir / "blob" / "blob.bin").read_bytes() == data
    assert 0.4 <= kept / len(data) < 1
    assert server.served("blob.bin") == len(data) - kept
    # what the kill cost: bytes served twice (lost with the process) stay a small fraction
    assert first_run + server.served("blob.bin") - len(data) <= len(data) * 0.25
