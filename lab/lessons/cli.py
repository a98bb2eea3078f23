"""``lab lesson``: run one lesson's cells headless, or every lesson in one process.

Listing and lookup read the lesson files as text; torch is imported only to run one. Flags
after the lesson (``--epochs 2``, ``--device cpu`` …) are the lesson's own: its settings cell
defines them (``lab lesson 15 --help`` lists them).
"""

from __future__ import annotations

import argparse
import sys
import time

from lab.course import UnknownLesson, all_lessons, find


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lesson", nargs="?", help="number (07), name, 'all', or 'list'")
    parser.add_argument(
        "options",
        nargs=argparse.REMAINDER,
        help="the lesson's own flags (`lab lesson 15 --help` lists them)",
    )


def print_list() -> None:
    for lesson in all_lessons():
        print(f"{lesson.number}  {lesson.name:<34} {lesson.title}")


def _run_one(lesson, argv: list[str], lenient: bool = False) -> None:
    from lab.lessons import runner

    runner.run(lesson, argv, lenient=lenient)


def run(args: argparse.Namespace) -> int:
    if args.lesson == "list":
        print_list()
        return 0
    if not args.lesson:
        print("lab lesson: name a lesson (e.g. `lab lesson 07`), `all`, or `list`", file=sys.stderr)
        return 2
    try:
        lessons = all_lessons() if args.lesson == "all" else [find(args.lesson)]
    except UnknownLesson as exc:
        print(f"lab lesson: {exc}", file=sys.stderr)
        return 2
    if len(lessons) == 1:
        _run_one(lessons[0], list(args.options))
        return 0
    return _run_all(lessons, list(args.options))


def _run_all(lessons, argv: list[str]) -> int:
    """Every lesson whose data is present; the rest are listed with the command that fetches
    their dataset. Exit 0 when nothing failed."""
    from lab.data import DatasetMissing

    passed, skipped = [], []
    for lesson in lessons:
        started = time.perf_counter()
        try:
            _run_one(lesson, argv, lenient=True)
        except DatasetMissing as exc:
            skipped.append((lesson, exc))
            continue
        passed.append((lesson, time.perf_counter() - started))
    print()
    for lesson, seconds in passed:
        print(f"  passed   {lesson.run_name:<40} {seconds:6.1f} s")
    for lesson, exc in skipped:
        print(
            f"  skipped  {lesson.run_name:<40} no {exc.dataset!r} data: "
            f"`invoke download-data --dataset {exc.dataset}`"
        )
    total = sum(seconds for _, seconds in passed)
    print(f"{len(passed)} lessons passed in {total:.1f} s, {len(skipped)} skipped (data missing)")
    return 0
