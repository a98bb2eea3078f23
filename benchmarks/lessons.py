"""Lesson benchmark: lessons 00-08 in one process vs one process per lesson.

One process pays for Python, torch and TensorBoard once; one process per lesson
(`python -m lab lesson NN`) pays for them every time. Target: lessons 00-08 together
take <= 6 s in one process on 2 CPU cores (headless, --device cpu, figures included).

Lessons 09 and later need datasets, so they are left out. When `lab lesson all` runs exactly
the selected lessons it is timed as is; otherwise the one-process run goes through the same
registry (lab.lessons) and runs each lesson's cells in one interpreter.

    python benchmarks/lessons.py              # lessons 00-08, once each way
    python benchmarks/lessons.py --repeat 3   # median of three
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.course import all_lessons  # noqa: E402 - stdlib only, no torch

RESULT_PREFIX = "BENCH-RESULT "


def selected_lessons(last: int):
    return [lesson for lesson in all_lessons() if int(lesson.number) <= last]


def run_here(numbers: list[str], device: str) -> None:
    """The one-process runner: import torch once, run each lesson's cells, report timings."""
    started = time.perf_counter()
    import torch  # noqa: F401 - timed on its own: the cost one process pays once
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    timings = {"import_s": time.perf_counter() - started, "lessons": {}}
    from lab.lessons import runner

    by_number = {lesson.number: lesson for lesson in all_lessons()}
    for number in numbers:
        lesson_started = time.perf_counter()
        runner.run(by_number[number], ["--device", device])
        timings["lessons"][number] = time.perf_counter() - lesson_started
    print(RESULT_PREFIX + json.dumps(timings))


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(
            f"benchmark: `{' '.join(cmd[1:])}` failed (exit {done.returncode}):\n"
            f"{(done.stdout + done.stderr)[-2000:]}"
        )
    return seconds, done.stdout


def one_process(numbers: list[str], device: str, env: dict[str, str]) -> tuple[float, dict]:
    if [lesson.number for lesson in all_lessons()] == numbers:
        seconds, _ = timed([sys.executable, "-m", "lab", "lesson", "all", "--device", device], env)
        return seconds, {}
    cmd = [sys.executable, __file__, "--run-here", ",".join(numbers), "--device", device]
    seconds, out = timed(cmd, env)
    line = next(line for line in out.splitlines() if line.startswith(RESULT_PREFIX))
    return seconds, json.loads(line.removeprefix(RESULT_PREFIX))


def per_process(numbers: list[str], device: str, env: dict[str, str]) -> dict[str, float]:
    return {
        number: timed([sys.executable, "-m", "lab", "lesson", number, "--device", device], env)[0]
        for number in numbers
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each arrangement; the median is reported (default: 1)",
    )
    parser.add_argument(
        "--last", type=int, default=8, help="highest lesson number included (default: 8)"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="passed to every lesson (default: cpu)",
    )
    parser.add_argument(
        "--target-s",
        type=float,
        default=6.0,
        help="target for the one-process run, in seconds (default: 6)",
    )
    parser.add_argument("--run-here", help=argparse.SUPPRESS)  # internal: the one-process runner
    args = parser.parse_args(argv)
    if args.run_here:
        run_here(args.run_here.split(","), args.device)
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    numbers = [lesson.number for lesson in selected_lessons(args.last)]
    if not numbers:
        parser.error(f"no lessons numbered <= {args.last}")
    print(
        f"lessons {', '.join(numbers)} · device {args.device} · {os.cpu_count()} CPUs · "
        f"repeat {args.repeat}"
    )
    with tempfile.TemporaryDirectory(prefix="lab-bench-runs-") as runs:
        env = {**os.environ, "LAB_RUNS_DIR": runs, "PYTHONPATH": str(ROOT)}
        singles, splits = [], []
        for _ in range(args.repeat):
            seconds, inside = one_process(numbers, args.device, env)
            singles.append(seconds)
            splits.append(per_process(numbers, args.device, env))

    one = statistics.median(singles)
    each = {n: statistics.median(split[n] for split in splits) for n in numbers}
    many = statistics.median(sum(split.values()) for split in splits)
    if inside:
        print(
            f"\none process, inside (last run): torch + tensorboard import "
            f"{inside['import_s']:.2f} s"
        )
        for number, seconds in inside["lessons"].items():
            print(f"  lesson {number}: {seconds:6.2f} s")
    print("\none process per lesson (wall time incl. interpreter and torch import):")
    for number, seconds in each.items():
        print(f"  lesson {number}: {seconds:6.2f} s")
    print(f"\none process:          {one:6.2f} s")
    print(f"one process / lesson: {many:6.2f} s")
    print(f"ratio (per-process / one-process): {many / one:.2f}x")
    verdict = "met" if one <= args.target_s else "NOT met"
    print(
        f"target: lessons {numbers[0]}-{numbers[-1]} in one process <= {args.target_s:g} s: "
        f"{verdict} ({one:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
