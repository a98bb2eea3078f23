"""``lab course``: the learner's own copies of the course, in ``<work>/NN_name/``.

JupyterLab opens on the work folder, where each lesson's folder holds the learner's copy of
``lesson.py`` and ``exercises.py``: they run, edit and save those, never the course itself
(``lab/`` is mounted read-only in the container), so an update of the course (``git pull``, a
teacher's fix) never meets a learner's edit. ``lab course sync`` runs at every container
start:

- a missing copy is made (one the learner deleted too: that is how to start afresh);
- a copy the learner has not edited follows the course when the course changes;
- a copy the learner edited is kept as it is; when the course has a newer version, sync says
  so, and ``lab course reset NN`` takes it, keeping theirs beside it as
  ``lesson.mine-<time>.py``. Nothing the learner wrote is ever overwritten or deleted.

Which copies are untouched is known from ``<work>/.course/copied.json``: the sha256 of the
course's text each copy was made from. Stdlib and filelock only (no torch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lab.course import Lesson, all_lessons, find
from lab.errors import LabError
from lab.files import atomic_write, locked
from lab.paths import work_dir

NOTEBOOKS = ("lesson.py", "exercises.py")
STATE_DIR = ".course"


class CopyError(LabError):
    pass


@dataclass(frozen=True)
class Copy:
    """One notebook of the course and where the learner's copy of it lives."""

    lesson: Lesson
    name: str  # "lesson.py" | "exercises.py"
    work: Path

    @property
    def source(self) -> Path:
        return self.lesson.folder / self.name

    @property
    def path(self) -> Path:
        return self.work / self.lesson.run_name / self.name

    @property
    def key(self) -> str:
        return f"{self.lesson.run_name}/{self.name}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise CopyError(f"{path} is a folder where your copy should be: move it aside") from None


def copies_of(lesson: Lesson, work: Path | None = None) -> list[Copy]:
    work = Path(work or work_dir())
    return [Copy(lesson, name, work) for name in NOTEBOOKS if (lesson.folder / name).is_file()]


class _State:
    """``<work>/.course/copied.json``, read and written under its lock."""

    def __init__(self, work: Path) -> None:
        self.dir = work / STATE_DIR
        self.file = self.dir / "copied.json"
        self.copied: dict[str, str] = {}

    def __enter__(self) -> _State:
        self._lock = locked(self.dir / "lock")
        self._lock.__enter__()
        try:
            self.copied = json.loads(self.file.read_text(encoding="utf-8")).get("copied", {})
        except FileNotFoundError:
            self.copied = {}
        except (OSError, ValueError):
            self.copied = {}  # unreadable: every existing copy then counts as the learner's
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                text = json.dumps({"copied": self.copied}, indent=2, sort_keys=True) + "\n"
                atomic_write(self.file, text.encode("utf-8"))
        finally:
            self._lock.__exit__(*exc)


MADE, UPDATED, SAME, EDITED, NEWER = "made", "updated", "up to date", "yours", "yours, newer"


def _sync_one(copy: Copy, state: _State) -> str:
    course = copy.source.read_bytes()
    mine = _read(copy.path)
    recorded = state.copied.get(copy.key)
    if mine is None:
        _adopt_old_exercise_copy(copy)
        mine = _read(copy.path)
    if mine is None:
        atomic_write(copy.path, course, exclusive=True)
        state.copied[copy.key] = _sha256(course)
        return MADE
    if _sha256(mine) == _sha256(course):
        state.copied[copy.key] = _sha256(course)
        return SAME
    if recorded is not None and _sha256(mine) == recorded:  # untouched since it was copied
        atomic_write(copy.path, course)
        state.copied[copy.key] = _sha256(course)
        return UPDATED
    return NEWER if recorded not in (None, _sha256(course)) else EDITED


def _adopt_old_exercise_copy(copy: Copy) -> None:
    # Before lessons had folders, `lab exercise 07` copied to work/exercises/exercise07_*.py.
    if copy.name != "exercises.py":
        return
    old = copy.work / "exercises" / f"exercise{copy.lesson.number}_{copy.lesson.name}.py"
    if old.is_file():
        copy.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(old, copy.path)  # never over a copy that appeared meanwhile
        except FileExistsError:
            return
        old.unlink()


def sync(work: Path | None = None, lessons: list[Lesson] | None = None) -> list[tuple[Copy, str]]:
    """Bring the learner's copies up to date with the course; ``(copy, what happened)``."""
    work = Path(work or work_dir())
    done = []
    with _State(work) as state:
        for lesson in lessons or all_lessons():
            for copy in copies_of(lesson, work):
                done.append((copy, _sync_one(copy, state)))
    return done


def ensure(copy: Copy) -> bool:
    """Make ``copy`` if it is missing (never over an existing one); True when it was made."""
    with _State(copy.work) as state:
        return _sync_one(copy, state) == MADE


def edited(copy: Copy) -> bool:
    """The learner's copy exists and differs from the course's notebook."""
    mine = _read(copy.path)
    return mine is not None and mine != copy.source.read_bytes()


def reset(lesson: Lesson, work: Path | None = None) -> list[tuple[Copy, Path | None]]:
    """The course's version of the lesson's notebooks; an edited copy is kept beside it as
    ``NAME.mine-<time>.py``. ``(copy, where the learner's version went)``."""
    work = Path(work or work_dir())
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    moved = []
    with _State(work) as state:
        for copy in copies_of(lesson, work):
            kept = None
            if edited(copy):
                kept = copy.path.with_name(f"{copy.path.stem}.mine-{stamp}{copy.path.suffix}")
                os.link(copy.path, kept)  # fails rather than replace an earlier one
                copy.path.unlink()
            state.copied.pop(copy.key, None)
            _sync_one(copy, state)
            moved.append((copy, kept))
    return moved


# --- lab course -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("sync", help="make missing copies, update the ones you have not edited")
    sub.add_parser("status", help="which copies are yours (edited) and which have news")
    reset_parser = sub.add_parser(
        "reset", help="take the course's version of a lesson (yours is kept beside it)"
    )
    reset_parser.add_argument("lesson", help="lesson number (07) or name")
    for each in sub.choices.values():
        each.add_argument("--quiet", action="store_true", help="only what needs your attention")


def _say(copy: Copy, what: str, quiet: bool) -> None:
    if what == NEWER:
        print(
            f"{copy.key}: kept your edited copy; the course has a newer version "
            f"(`lab course reset {copy.lesson.number}` takes it, keeping yours beside it)"
        )
    elif not quiet:
        print(f"{copy.key}: {what}")


def run(args: argparse.Namespace) -> int:
    work = work_dir()
    if args.action == "reset":
        for copy, kept in reset(find(args.lesson), work):
            note = f" (your version: {kept.name})" if kept else ""
            print(f"{copy.key}: the course's version{note}")
        return 0
    if args.action == "sync":
        results = sync(work)
    else:
        with _State(work) as state:
            results = [
                (copy, _status(copy, state))
                for lesson in all_lessons()
                for copy in copies_of(lesson, work)
            ]
    for copy, what in results:
        _say(copy, what, args.quiet)
    if not args.quiet:
        print(f"your copies of the course are in {work}")
    return 0


def _status(copy: Copy, state: _State) -> str:
    mine = _read(copy.path)
    if mine is None:
        return "missing (`lab course sync` makes it)"
    if not edited(copy):
        return SAME
    recorded = state.copied.get(copy.key)
    return NEWER if recorded not in (None, _sha256(copy.source.read_bytes())) else EDITED
