"""Lesson 16 benchmark: wall time of `lab lesson 16` with 1, 2 and 3 CPU processes (gloo), and
with one process per GPU (`--nproc gpu`, NCCL) where torch sees a GPU.

Anchor: 1 CPU process. Each extra process pays for its own Python + torch start and for the
gloo all-reduces; on a machine with fewer cores than processes they also queue for the CPU.
The lesson's model is tiny on purpose (it teaches correctness, not speed-up), so the ratio
is the cost of the processes, not a scaling curve.

    python benchmarks/ddp.py                  # 1, 2, 3 CPU processes (+ gpu), once each
    python benchmarks/ddp.py --repeat 3       # median of three
    python benchmarks/ddp.py --nproc 1 2 4    # other counts
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gpu_count(env: dict[str, str]) -> int:
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


def timed(argv: list[str], env: dict[str, str], limit_s: float) -> float:
    command = [sys.executable, "-m", "lab", "lesson", "16", "--no-gpu-metrics", *argv]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit_s
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(
            f"benchmark: `lab lesson 16 {' '.join(argv)}` failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}"
        )
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nproc",
        type=int,
        nargs="+",
        default=[1, 2, 3],
        help="CPU process counts; the first is the anchor (default: 1 2 3)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (default: 1)")
    parser.add_argument("--steps", type=int, default=12, help="training steps (default: 12)")
    parser.add_argument("--limit", type=float, default=600, help="seconds per run (default: 600)")
    args = parser.parse_args(argv)

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    settings = [
        (f"{n} CPU process(es), gloo", ["--device", "cpu", "--nproc", str(n)]) for n in args.nproc
    ]
    gpus = gpu_count(env)
    if gpus:
        settings.append((f"{gpus} GPU process(es), nccl", ["--device", "cuda", "--nproc", "gpu"]))
    print(
        f"lab lesson 16 --steps {args.steps}, {os.cpu_count()} CPU core(s), {gpus} GPU(s), "
        f"median of {args.repeat}"
    )
    anchor = None
    with tempfile.TemporaryDirectory() as runs:
        env["LAB_RUNS_DIR"] = runs
        for label, flags in settings:
            flags = [*flags, "--steps", str(args.steps)]
            seconds = statistics.median(timed(flags, env, args.limit) for _ in range(args.repeat))
            anchor = anchor or seconds
            print(f"  {label:<28} {seconds:7.1f} s   x{seconds / anchor:.2f} of the anchor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
