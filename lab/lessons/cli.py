"""``lab lesson``: run one lesson, or all of them in one process.

Listing and lookup read the lesson files as text; torch is imported only to run one.
Options a lesson defines itself (``--dry-run``, ``--epochs`` ...) pass straight through.
"""

from __future__ import annotations

import argparse
import sys
import time

from lab.lessons import UnknownLesson, all_lessons, find

ACCEPTS_EXTRA_ARGS = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lesson", nargs="?", help="number (07), name, or 'all'")
    parser.add_argument("--list", action="store_true", help="list the lessons and exit")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where tensors live (default: auto = cuda when available)",
    )
    parser.add_argument(
        "--no-gpu-metrics",
        action="store_true",
        help="do not sample GPU metrics into the lesson's TensorBoard run",
    )


def print_list() -> None:
    for lesson in all_lessons():
        print(f"{lesson.number}  {lesson.name:<34} {lesson.title}")


def run(args: argparse.Namespace) -> int:
    if args.list:
        print_list()
        return 0
    if not args.lesson:
        print("lab lesson: name a lesson (e.g. `lab lesson 07`), `all`, or --list", file=sys.stderr)
        return 2
    try:
        lessons = all_lessons() if args.lesson == "all" else [find(args.lesson)]
    except UnknownLesson as exc:
        print(f"lab lesson: {exc}", file=sys.stderr)
        return 2
    lesson_argv = ["--device", args.device, *args.extra]
    if args.no_gpu_metrics:
        lesson_argv.append("--no-gpu-metrics")
    timings = []
    for lesson in lessons:
        started = time.perf_counter()
        try:
            lesson.load().main(lesson_argv)
        except SystemExit as exc:  # argparse has printed its error; LabUsageError has not
            if exc.code not in (0, None):
                message = getattr(exc, "message", None)
                if message:
                    print(f"lab lesson {lesson.run_name}: {message}", file=sys.stderr)
                return exc.code if isinstance(exc.code, int) else 2
        timings.append((lesson.run_name, time.perf_counter() - started))
    if len(timings) > 1:
        total = sum(seconds for _, seconds in timings)
        print(f"\n{len(timings)} lessons passed in {total:.1f} s")
    return 0
