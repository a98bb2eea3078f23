"""Exercise checks: `lab check NN` cold vs the notebook's check cells in a running kernel, and
what the time limit costs a passing check.

- cold: `python -m lab check NN` on a copy with every exercise solved (interpreter, torch and
  the checks imported each time, then one forked child per exercise);
- kernel: the lesson's check cells, `check_exercise("NN.k", answer)`, run in one warm Jupyter
  kernel (what a learner waits for after Shift+Enter);
- time limit: the same check cells in this process, each in a forked child under the limit
  (the default) vs in-process with no limit (LAB_CHECK_TIME_LIMIT=0).

Medians of --repeat runs (default 5); ratios against the anchors (the kernel, no limit).

    python benchmarks/exercises.py              # lesson 07
    python benchmarks/exercises.py --lesson 06 --repeat 9
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.exercises import solution_source, solve  # noqa: E402

from lab.course import find  # noqa: E402
from lab.exercises import copy_of  # noqa: E402


def solved_copy(lesson, work: Path) -> Path:
    copy = copy_of(lesson, work).path
    copy.parent.mkdir(parents=True, exist_ok=True)
    text = lesson.exercises_path.read_text(encoding="utf-8")
    for spec in lesson.exercises:
        text = solve(text, spec.key)
    copy.write_text(text, encoding="utf-8")
    return copy


def cold(lesson, env: dict, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "lab", "check", lesson.number],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            sys.exit(f"benchmark: lab check {lesson.number} failed:\n{done.stdout}{done.stderr}")
    return times


def check_cells(lesson) -> tuple[str, str]:
    """(set-up code, the check cells' code) for the lesson's solutions."""
    import_cell = next(
        cell
        for cell in lesson.exercises_path.read_text(encoding="utf-8").split("# %%")
        if "from lab.exercises import" in cell
    )
    setup = (
        import_cell.split("\n", 1)[1]
        + "\n"
        + "\n".join(solution_source(spec.key) for spec in lesson.exercises)
    )
    checks = "\n".join(f'check_exercise("{spec.key}", {spec.target})' for spec in lesson.exercises)
    return setup, checks


def in_kernel(lesson, env: dict, repeat: int) -> list[float]:
    from jupyter_client.manager import start_new_kernel

    setup, checks = check_cells(lesson)
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(ROOT))
    printed: list[str] = []

    def run(code: str) -> None:
        reply = client.execute_interactive(
            code,
            timeout=300,
            output_hook=lambda msg: printed.append(msg["content"].get("text", "")),
        )
        if reply["content"]["status"] != "ok":
            sys.exit(f"benchmark: the kernel failed on:\n{code}\n{reply['content']}")

    try:
        run(setup)
        run(checks)  # once to warm up: the checks module, torchvision…
        times = []
        for _ in range(repeat):
            printed.clear()
            started = time.perf_counter()
            run(checks)
            times.append(time.perf_counter() - started)
            if "".join(printed).count("passed") != len(lesson.exercises):
                sys.exit(f"benchmark: a check did not pass in the kernel:\n{''.join(printed)}")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return times


def with_and_without_limit(lesson, repeat: int) -> tuple[list[float], list[float]]:
    from lab.exercises.checking import check_exercise

    namespace: dict = {}
    setup, _ = check_cells(lesson)
    exec(setup, namespace)  # noqa: S102 - the reference solutions
    answers = [(spec.key, namespace[spec.target]) for spec in lesson.exercises]

    def all_checks() -> float:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as out:
            for key, answer in answers:
                check_exercise(key, answer)
        if out.getvalue().count("passed") != len(answers):
            sys.exit(f"benchmark: a check did not pass:\n{out.getvalue()}")
        return time.perf_counter() - started

    limited, unlimited = [], []
    for _ in range(repeat + 1):  # the first round warms up both
        os.environ.pop("LAB_CHECK_TIME_LIMIT", None)
        limited.append(all_checks())
        os.environ["LAB_CHECK_TIME_LIMIT"] = "0"
        unlimited.append(all_checks())
    os.environ.pop("LAB_CHECK_TIME_LIMIT", None)
    return limited[1:], unlimited[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesson", default="07", help="a lesson with exercises (default: 07)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (default: 5)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    lesson = find(args.lesson)
    if not lesson.exercises:
        parser.error(f"lesson {lesson.number} has no exercises")
    with tempfile.TemporaryDirectory(prefix="lab-bench-work-") as work:
        os.environ["LAB_WORK_DIR"] = work
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        solved_copy(lesson, Path(work))
        keys = ", ".join(spec.key for spec in lesson.exercises)
        print(f"lesson {lesson.number} ({keys}) · {os.cpu_count()} CPUs · median of {args.repeat}")
        cold_s = statistics.median(cold(lesson, env, args.repeat))
        kernel_s = statistics.median(in_kernel(lesson, env, args.repeat))
        limited, unlimited = with_and_without_limit(lesson, args.repeat)
    limited_s, unlimited_s = statistics.median(limited), statistics.median(unlimited)
    per = len(lesson.exercises)
    print(f"\n`lab check {lesson.number}`, cold (new interpreter): {cold_s:7.3f} s")
    print(f"check cells in a warm kernel:                {kernel_s:7.3f} s")
    print(f"ratio cold / kernel: {cold_s / kernel_s:.1f}x")
    print(f"\npassing checks, forked under the time limit: {limited_s:7.3f} s")
    print(f"passing checks, in-process, no limit:        {unlimited_s:7.3f} s")
    print(
        f"time limit's overhead: {limited_s / unlimited_s:.2f}x "
        f"(+{(limited_s - unlimited_s) / per * 1000:.0f} ms per check)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
