"""`lab grade` per learner: a work folder with every exercise of the course solved, graded
cold (a new interpreter, as the grader's fresh container runs it), with a seed
(LAB_GRADE_SEED: every check again on unseen inputs) and without one.

Anchors: the interpreter starting with torch and the checks imported (what every cold run
pays before checking anything), and `lab grade` without a seed (what the unseen inputs add).
Medians of --repeat runs (default 3).

    python benchmarks/grade.py
    python benchmarks/grade.py --repeat 5
    python benchmarks/grade.py --image autograd-lab/lab:latest   # + `invoke class-grade`'s way

With ``--image``, also the grading container exactly as ``invoke class-grade`` makes it
(docker/hub/class_grade.py: no network, read-only, no capabilities, a fresh seed; the work
folder bound where the learner's volume would be): what a class costs per learner.
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
sys.path.insert(0, str(ROOT / "tests"))

from support.exercises import solve  # noqa: E402

from lab.course import all_exercises, with_exercises  # noqa: E402
from lab.exercises import copy_of  # noqa: E402

START_ONLY = "import torch, torchvision, lab.exercises.checking, lab.exercises.feedback"


def timed(argv: list[str], env: dict, repeat: int, check=None) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0 or (check and not check(done.stdout)):
            sys.exit(f"benchmark: {' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr}")
    return statistics.median(times)


def all_passed(out: str) -> bool:
    verdicts = json.loads(out)["exercises"].values()
    return all(verdict["status"] == "passed" for verdict in verdicts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (default: 3)")
    parser.add_argument("--image", help="the lab image: time the grading container too")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="lab-bench-grade-") as work:
        for lesson in with_exercises():  # every exercise solved, as a diligent learner's
            text = lesson.exercises_path.read_text(encoding="utf-8")
            for spec in lesson.exercises:
                text = solve(text, spec.key)
            copy = copy_of(lesson, Path(work)).path
            copy.parent.mkdir(parents=True)
            copy.write_text(text, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LAB_WORK_DIR": work}
        grade = [sys.executable, "-m", "lab", "grade", "--work", work, "--json"]
        start = timed([sys.executable, "-c", START_ONLY], env, args.repeat)
        plain = timed(grade, env, args.repeat, all_passed)
        seeded = timed(grade, {**env, "LAB_GRADE_SEED": "20261206"}, args.repeat, all_passed)
        contained = in_container(args.image, Path(work), args.repeat) if args.image else None
    count = len(all_exercises())
    print(
        f"{len(with_exercises())} lessons, {count} exercises, all solved · {os.cpu_count()} CPUs"
        f" · median of {args.repeat}"
    )
    print(f"\ninterpreter + torch + checks imported:     {start:7.2f} s")
    print(f"`lab grade`, no seed:                      {plain:7.2f} s")
    print(f"`lab grade`, LAB_GRADE_SEED (per learner): {seeded:7.2f} s")
    print(
        f"ratio seeded / no seed: {seeded / plain:.2f}x; seeded / start: {seeded / start:.1f}x; "
        f"{(seeded - start) / count * 1000:.0f} ms per exercise after the start"
    )
    if contained is not None:
        print(f"grading container (class-grade, per learner): {contained:7.2f} s")
        print(f"ratio container / `lab grade` seeded here: {contained / seeded:.2f}x")
    return 0


def in_container(image: str, work: Path, repeat: int) -> float:
    """Median seconds of class_grade.grade_one over ``work``, all exercises passing."""
    import importlib.util

    for name in ("autograd_hub", "class_grade"):
        spec = importlib.util.spec_from_file_location(name, ROOT / "docker" / "hub" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    import class_grade

    import docker

    for path in [work, *work.rglob("*")]:  # the lab user (uid 1000) reads it
        path.chmod(0o755 if path.is_dir() else 0o644)
    settings = class_grade.hub.settings_from_env({"LAB_IMAGE": image})
    client = docker.APIClient(version="auto", timeout=1800)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        report = class_grade.grade_one(client, settings, str(ROOT / "lab"), str(work), 1800)
        times.append(time.perf_counter() - started)
        if not all_passed(json.dumps(report)):
            sys.exit("benchmark: the grading container failed exercises that pass here")
    return statistics.median(times)


if __name__ == "__main__":
    raise SystemExit(main())
