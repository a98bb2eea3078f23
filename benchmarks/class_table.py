"""The teacher's class table: time to render it for 10 and 100 learners.

What the hub's page and CSV do per request (lab/classroom/service.py): read every
learner's report and grade from the store (``class_table``), render the HTML page
(``render_html``) and the CSV (``to_csv``). Synthetic records over the real course's
exercises: each learner has attempted a random part of them, passed some, been graded or not.
The anchor is 10 learners; the ratio 100 vs 10 says how it grows (10.0 = linear).

    python benchmarks/class_table.py              # 10 and 100 learners, median of 7 runs
    python benchmarks/class_table.py --repeat 15 --learners 10 100 1000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_service():
    from lab.classroom import service

    return service


def synthetic_class(service, store, course, learners: int, seed: int = 19) -> None:
    """``learners`` records (a report each, a grade for most), as a class midway through."""
    rng = random.Random(seed)
    for n in range(learners):
        tried = rng.sample(course.exercises, rng.randint(0, len(course.exercises)))
        exercises = {}
        for key in tried:
            passed = rng.random() < 0.7
            exercises[key] = {
                "attempts": rng.randint(1, 12),
                "first_passed": f"2026-12-{rng.randint(1, 28):02d}T10:00:00" if passed else None,
                "last": "passed" if passed else "failed",
            }
        lessons = {
            name: {"runs": rng.randint(1, 5), "last": f"2026-12-{rng.randint(1, 28):02d}T09:00:00"}
            for name in rng.sample(course.lessons, rng.randint(0, len(course.lessons)))
        }
        report = service.clean_report(
            {"exercises": exercises, "lessons": lessons}, course.exercises, course.lessons
        )
        user = f"learner{n:04d}"
        store.save_report(user, report)
        if rng.random() < 0.8:
            verdicts = {
                key: {"status": "passed" if entry["last"] == "passed" else "failed"}
                for key, entry in exercises.items()
            }
            store.save_grade(user, {"graded_at": "2026-12-06T12:00:00", "exercises": verdicts})


def render(service, store, course) -> tuple[str, str]:
    """One page view and one CSV download, from the records on disk."""
    lessons = {number: title for number, (title, _) in course.with_solutions.items()}
    rows = service.class_table(store, course.exercises)
    page = service.render_html(rows, course.exercises, lessons, store.released(), "")
    return page, service.to_csv(service.class_table(store, course.exercises))


def time_render(service, course, learners: int, repeat: int) -> float:
    """Median seconds of ``render`` over ``repeat`` runs for a class of ``learners``."""
    with tempfile.TemporaryDirectory() as tmp:
        store = service.Store(Path(tmp) / "course")
        synthetic_class(service, store, course, learners)
        page, table = render(service, store, course)  # warm-up, and proof it is the whole class
        assert page.count('<tr><td class="l">learner') == learners, "rows missing from the page"
        assert len(table.splitlines()) == 1 + learners * len(course.exercises), "CSV lines"
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            render(service, store, course)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeat", type=int, default=7, help="runs per size (median)")
    args = parser.parse_args(argv)

    service = load_service()
    course = service.Course.from_checkout()
    print(
        f"class table (read records + HTML page + CSV), {len(course.exercises)} exercises, "
        f"{len(course.lessons)} lessons, median of {args.repeat}:"
    )
    anchor_n, anchor = None, None
    for learners in args.learners:
        seconds = time_render(service, course, learners, args.repeat)
        if anchor is None:
            anchor_n, anchor = learners, seconds
        ratio = seconds / anchor
        print(
            f"  {learners:5d} learners  {seconds * 1000:8.1f} ms  "
            f"{seconds / learners * 1e6:7.0f} µs/learner  "
            f"ratio vs {anchor_n}: {ratio:5.1f} (linear: {learners / anchor_n:g})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
