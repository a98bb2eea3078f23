"""Start the ranks with torchrun from a lesson cell, show their output under it, read back what
each rank reported, and turn a dead rank or a stuck run into one line that names the rank."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lab
from lab.errors import LabError

WORKER = "lab.lessons.ddp.worker"
MAX_PROCESSES = 32  # more than this on one machine is a typo, not a lesson


class BadProcessCount(LabError):
    """``--nproc`` that this machine cannot honour."""


class RankFailed(LabError):
    """A rank died or the run did not finish in time."""

    status = 1


def resolve_nproc(value, device_type: str, gpu_count: int) -> int:
    """The NPROC setting as a process count: a number, ``gpu`` (one process per visible GPU)
    or ``auto`` (``gpu`` on CUDA, else 2)."""
    text = str(value).strip().lower()
    if text == "auto":
        text = "gpu" if device_type == "cuda" else "2"
    if text == "gpu":
        if device_type != "cuda" or gpu_count < 1:
            raise BadProcessCount(
                "--nproc gpu needs CUDA and the lesson runs on the CPU here (no GPU, or "
                "--device cpu); use --nproc N for N CPU processes"
            )
        return gpu_count
    if not text.isdigit() or not 1 <= int(text) <= MAX_PROCESSES:
        raise BadProcessCount(
            f"--nproc must be a whole number from 1 to {MAX_PROCESSES}, 'gpu' or 'auto', "
            f"got {value!r}"
        )
    if device_type == "cuda" and int(text) > gpu_count:
        raise BadProcessCount(
            f"--nproc {text} exceeds the {gpu_count} GPU(s) present: on CUDA, DDP runs one "
            f"process per GPU; use --nproc gpu, or --device cpu for {text} CPU processes"
        )
    return int(text)


def torchrun_command(
    nproc: int,
    worker_args: list[str],
    *,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "lesson16",
    rdzv_conf: str | None = None,
) -> list[str]:
    """``torchrun … -m lab.lessons.ddp.worker …`` with this interpreter. One node: a standalone
    rendezvous on a free local port. Several: the same command on every node, all pointing
    at one c10d rendezvous endpoint (``host:port``)."""
    command = [sys.executable, "-m", "torch.distributed.run"]
    if rdzv_endpoint is None:
        command += ["--standalone"]
    else:
        command += [
            f"--nnodes={nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id={rdzv_id}",
        ]
        if rdzv_conf:  # e.g. join_timeout=60: how long the nodes wait for each other
            command += [f"--rdzv-conf={rdzv_conf}"]
    return [*command, f"--nproc-per-node={nproc}", "--max-restarts=0", "-m", WORKER, *worker_args]


def shown(command: list[str]) -> str:
    """The command as a learner would type it."""
    start = command.index("torch.distributed.run") + 1
    return " ".join(["torchrun", *command[start:]])


def child_env(extra: dict | None = None) -> dict:
    """The ranks import this same ``lab``; gloo stays on the loopback interface; one thread
    per rank (they share the cores)."""
    env = dict(os.environ)
    root = str(Path(lab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.update(extra or {})
    return env


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def run_torchrun(command: list[str], log: Path, limit_s: float, echo=print) -> int:
    """Run torchrun, echoing the ranks' own lines (``[rank k] …``) as they arrive and keeping
    everything in ``log``. Past ``limit_s`` the whole process group is killed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
        start_new_session=True,  # torchrun and its ranks form one group we can stop together
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + limit_s
    try:
        with log.open("w", encoding="utf-8") as out:
            while (line := lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
                out.write(line)
                if line.startswith("[rank "):
                    echo(line.rstrip("\n"))
        return process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except (queue.Empty, subprocess.TimeoutExpired):
        raise RankFailed(
            f"torchrun did not finish within {limit_s:.0f} s (a rank is stuck); "
            f"stopped it; full log: {log}"
        ) from None
    finally:  # also on an interrupted kernel: no rank outlives the cell that started it
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def first_failure(output: str) -> tuple[int, int] | None:
    """(rank, exit code) of torchrun's 'Root Cause (first observed failure)', if it says."""
    section = output.split("Root Cause", 1)[-1] if "Root Cause" in output else ""
    rank = re.search(r"rank\s*:\s*(\d+)", section)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", section)
    return (int(rank.group(1)), int(code.group(1))) if rank and code else None


def how(exit_code: int) -> str:
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit status {exit_code}"


def read_results(out: Path, world: int) -> list[dict | None]:
    found = []
    for rank in range(world):
        path = out / f"rank{rank}" / "result.json"
        found.append(json.loads(path.read_text(encoding="utf-8")) if path.exists() else None)
    return found


def clear_ranks(out: Path) -> None:
    """Forget an earlier launch into ``out`` (a re-run cell): its results must not stand in
    for ranks that die this time, nor its curves overlay the new ones."""
    for old in out.glob("rank*"):
        if old.is_dir() and re.fullmatch(r"rank\d+", old.name):
            shutil.rmtree(old)


def launch(nproc: int, out: Path, worker_args: list[str], limit_s: float, echo=print) -> list:
    """The ranks' results, rank order. A rank that died (or a run that hung) is a RankFailed
    naming the rank; ranks that finished with a failed claim still return their results, so
    the lesson's own checks say which claim."""
    clear_ranks(out)
    command = torchrun_command(nproc, ["--out", str(out), *worker_args])
    echo(f"$ {shown(command)}")
    log = out / "torchrun.log"
    code = run_torchrun(command, log, limit_s, echo)
    results = read_results(out, nproc)
    if all(results):
        return results
    failure = first_failure(log.read_text(encoding="utf-8"))
    if failure is None:
        missing = [rank for rank, result in enumerate(results) if result is None]
        raise RankFailed(
            f"torchrun exited with {how(code)}, no result from rank(s) {missing}; full log: {log}"
        )
    rank, exit_code = failure
    raise RankFailed(
        f"rank {rank} of {nproc} failed ({how(exit_code)}); torchrun stopped the other "
        f"ranks and exited with {how(code)}; full log: {log}"
    )
