"""``lab exercise``, ``lab check``, ``lab hint``, ``lab progress``: one module, four commands.

``lab.cli`` gives each command its own subparser and calls this module's ``add_arguments``
and ``run``; the subparser's prog (``lab check``) says which command it is. Only ``check``
loads torch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lab.copies import ensure
from lab.course import Lesson, UnknownLesson, find, with_exercises
from lab.course import exercise as exercise_by_key
from lab.errors import LabError
from lab.exercises import copy_of, progress


def _command(parser: argparse.ArgumentParser) -> str:
    return parser.prog.split()[-1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    command = _command(parser)
    if command == "exercise":
        parser.add_argument("lesson", nargs="?", help="lesson number (07), or 'list'")
        parser.add_argument("--list", action="store_true", help="list the exercises and exit")
        parser.add_argument(
            "--solution", action="store_true", help="print the reference solutions instead"
        )
    elif command == "check":
        parser.add_argument(
            "lesson", help="lesson number (07): checks all of its exercises; 07.1: just that one"
        )
        parser.add_argument("--watch", action="store_true", help="check again on every save")
    elif command == "hint":
        parser.add_argument("exercise", help="an exercise as LESSON.N, e.g. 07.1")
    parser.set_defaults(_exercise_command=command)


def run(args: argparse.Namespace) -> int:
    return {"exercise": exercise, "check": check, "hint": hint, "progress": show_progress}[
        args._exercise_command
    ](args)


# --- lab exercise --------------------------------------------------------------------------


def exercise(args: argparse.Namespace) -> int:
    if args.list or args.lesson in (None, "list"):
        for each in with_exercises():
            print(f"{each.number}  {each.exercises_title}")
            for spec in each.exercises:
                print(f"    {spec.key}  {spec.target:<22} {spec.title}")
        return 0
    chosen = lesson_with_exercises(args.lesson)
    if args.solution:
        text = solutions(chosen)
        print(f"# reference solutions for {chosen.number} (yours may differ and still pass)\n")
        print(text, end="")
        return 0
    copy = copy_of(chosen)
    made = ensure(copy)
    state = "new copy" if made else "your copy (already there, left as it is)"
    print(f"{state}: {copy.path}")
    print(
        f"open it in JupyterLab ({copy.key}), fill in the stubs, run the check cells; or from "
        f"a terminal: `lab check {chosen.number}`"
    )
    return 0


class NoExercises(LabError):
    pass


def solutions(lesson: Lesson) -> str:
    """The lesson's reference solutions: in self-study the course's file; on the classroom hub
    from the teacher's view, once the teacher has released them (learners' containers do not
    hold the files)."""
    from lab import classroom

    if classroom.url():
        return classroom.released_solutions(lesson.number)
    try:
        text = lesson.solutions_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if not text.strip():
        raise NoExercises(f"the solutions of lesson {lesson.number} are not in this lab")
    return text


def lesson_with_exercises(key: str) -> Lesson:
    """By lesson number (``7``, ``07``), name, or an exercise key (``07.1``)."""
    numbers = ", ".join(each.number for each in with_exercises())
    try:
        chosen = find(key.strip().split(".")[0])
    except UnknownLesson:
        chosen = None
    if chosen is None or not chosen.exercises:
        raise NoExercises(f"no exercises for {key!r}; there are exercises for lessons {numbers}")
    return chosen


# --- lab check ------------------------------------------------------------------------------


def _copy_of(chosen: Lesson) -> Path:
    copy = copy_of(chosen).path
    if copy.is_dir():
        raise LabError(
            f"{copy} is a folder, not your copy of the exercises: move it aside, then "
            f"`lab exercise {chosen.number}` makes a fresh copy"
        )
    if not copy.exists():
        raise LabError(
            f"no copy of exercises {chosen.number} in {copy.parent}: "
            f"`lab exercise {chosen.number}` makes one"
        )
    return copy


def _read(copy: Path) -> str:
    try:
        return copy.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LabError(
            f"{copy} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}): save it as UTF-8 and check again"
        ) from None
    except IsADirectoryError:
        raise LabError(f"{copy} is a folder, not your copy of the exercises") from None
    except OSError as exc:
        raise LabError(f"cannot read {copy}: {exc.strerror or exc}") from None


def _chosen(key: str) -> tuple[Lesson, list[str] | None]:
    """``07`` → lesson 07, all of its exercises; ``07.1`` → just that one."""
    if "." in key:
        spec = exercise_by_key(key)  # an unknown one is an error, never all of the lesson
        return spec.lesson, [spec.key]
    return lesson_with_exercises(key), None


def check_once(chosen: Lesson, copy: Path, keys: list[str] | None = None) -> bool:
    """Check and print; True when all passed. KeyboardInterrupt once a check was stopped."""
    from lab.exercises.checking import PASSED, check_copy

    text = _read(copy)
    results = []
    for checked in check_copy(chosen, copy, keys, text=text):
        for line in checked.output:
            print(line)
        print(checked.result.line(), flush=True)
        results.append(checked.result)
        if checked.interrupted:
            left = [s.key for s in chosen.exercises if keys is None or s.key in keys]
            left = left[len(results) :]
            if left:
                print(f"not checked: {', '.join(left)}")
            raise KeyboardInterrupt
    passed = sum(result.status == PASSED for result in results)
    what = f"exercise {keys[0]}" if keys and len(keys) == 1 else f"exercises {chosen.number}"
    print(f"{passed}/{len(results)} of {what} passed ({copy})")
    return passed == len(results)


def check(args: argparse.Namespace) -> int:
    chosen, keys = _chosen(args.lesson)
    copy = _copy_of(chosen)
    seen = copy.stat().st_mtime_ns  # before checking: a save during the check is not missed
    ok = check_once(chosen, copy, keys)
    if not args.watch:
        return 0 if ok else 1
    print("watching for saves (Ctrl-C to stop)", flush=True)
    while True:
        time.sleep(0.5)
        try:
            now = copy.stat().st_mtime_ns
        except FileNotFoundError:  # an editor saving by rename: the new file comes next
            continue
        if now != seen:
            seen = now
            print(f"\n--- saved at {time.strftime('%H:%M:%S')}: checking again", flush=True)
            try:
                check_once(chosen, copy, keys)
            except LabError as exc:  # a half-saved or odd file: say so, keep watching
                print(f"lab check: {exc.message}", flush=True)
            sys.stdout.flush()


# --- lab hint / lab progress ----------------------------------------------------------------


def hint(args: argparse.Namespace) -> int:
    from lab.exercises.hints import hint as show_hint

    show_hint(args.exercise)
    return 0


def show_progress(args: argparse.Namespace) -> int:
    data = progress.load()
    runs = progress.lessons_run()
    print(f"{'lesson':<40} {'runs':>4}  last run")
    from lab.course import all_lessons

    for lesson in all_lessons():
        seen = runs.get(lesson.run_name)
        when = seen["last"].strftime("%Y-%m-%d %H:%M") if seen else "-"
        print(f"{lesson.run_name:<40} {seen['runs'] if seen else 0:>4}  {when}")
    print()
    print(f"{'exercise':<8} {'what':<24} {'status':<14} {'first passed':<20} attempts")
    total = passed = 0
    for each in with_exercises():
        for spec in each.exercises:
            entry = data["exercises"].get(spec.key, {})
            first = entry.get("first_passed")
            status = "passed" if first else entry.get("last") or "not attempted"
            total += 1
            passed += bool(first)
            print(
                f"{spec.key:<8} {spec.target:<24} {status:<14} "
                f"{(first or '-').replace('T', ' '):<20} {entry.get('attempts', 0)}"
            )
    print(f"\n{passed}/{total} exercises passed; progress in {progress.progress_file()}")
    return 0
