"""The course: one folder per lesson, ``lab/course/NN_name/``, with everything that belongs to it.

    lesson.py        the lesson, a jupytext notebook (settings cell, ideas, checked claims)
    exercises.py     its exercise notebook: the template a learner's copy starts from
    exercises.toml   its exercises in order (NN.1, NN.2 …): the name the learner defines,
                     a title, the hints
    checks.py        ``CHECKS = {target: check}``: says what is right or the first mistake
    solutions.py     the reference solutions (shown by ``lab exercise NN --solution``)

Only ``lesson.py`` is required. The folder's name is the lesson's identity — its number, its
name and its TensorBoard run folder — and is typed nowhere else: adding lesson 22 is adding
``lab/course/22_name/``. Everything here reads files only (no torch), so ``lab lesson list``,
``lab hint`` and ``lab exercise --list`` stay light; ``checks`` imports on first use.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType

from lab.errors import LabError

COURSE_DIR = Path(__file__).resolve().parent
FOLDER_RE = re.compile(r"^(\d{2})_([a-z0-9_]+)$")


class UnknownLesson(LabError, LookupError):
    pass


@dataclass(frozen=True)
class Exercise:
    key: str  # "07.1"
    target: str  # the name the learner defines: "MySigmoid"
    title: str
    hints: tuple[str, ...]

    @property
    def lesson(self) -> Lesson:
        return find(self.key.split(".")[0])


@dataclass(frozen=True)
class Lesson:
    number: str  # "07"
    name: str  # "custom_autograd_function"
    folder: Path

    @property
    def path(self) -> Path:
        """The lesson notebook."""
        return self.folder / "lesson.py"

    @property
    def run_name(self) -> str:
        """The folder's name, ``07_custom_autograd_function``: also the TensorBoard run folder."""
        return self.folder.name

    @property
    def module_name(self) -> str:
        return f"{__name__}.{self.run_name}.lesson"

    @property
    def title(self) -> str:
        return _title(self.path, self.name)

    def load(self) -> ModuleType:
        """The lesson's reusable pieces (functions, classes, constants), narrative not run."""
        from lab.lessons.runner import definitions

        return definitions(self)

    # --- exercises ---------------------------------------------------------------------------

    @property
    def exercises_path(self) -> Path:
        """The exercise notebook's template (a learner works on a copy, never on this)."""
        return self.folder / "exercises.py"

    @property
    def solutions_path(self) -> Path:
        return self.folder / "solutions.py"

    @cached_property
    def exercises(self) -> tuple[Exercise, ...]:
        catalogue = self.folder / "exercises.toml"
        if not catalogue.exists():
            return ()
        entries = tomllib.loads(catalogue.read_text(encoding="utf-8")).get("exercise", [])
        return tuple(
            Exercise(f"{self.number}.{n}", entry["target"], entry["title"], tuple(entry["hints"]))
            for n, entry in enumerate(entries, start=1)
        )

    @property
    def exercises_title(self) -> str:
        return _title(self.exercises_path, self.name)

    def checks(self) -> ModuleType:
        """``checks.py`` as a module (imports torch)."""
        return importlib.import_module(f"{__name__}.{self.run_name}.checks")


def _title(path: Path, fallback: str) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# # "):
            return line[4:].strip()
    return fallback.replace("_", " ")


def all_lessons() -> list[Lesson]:
    found = []
    for folder in sorted(COURSE_DIR.iterdir()):
        match = FOLDER_RE.match(folder.name)
        if match and (folder / "lesson.py").is_file():
            found.append(Lesson(match.group(1), match.group(2), folder))
    return found


def with_exercises() -> list[Lesson]:
    return [lesson for lesson in all_lessons() if lesson.exercises]


def find(key: str) -> Lesson:
    """A lesson by number (``7``, ``07``), name, folder name (``07_name``), or the older file
    name (``lesson07_name.py``)."""
    wanted = key.strip().lower().removesuffix(".py").removeprefix("lesson")
    if wanted.isdigit():
        wanted = f"{int(wanted):02d}"
    for lesson in all_lessons():
        if wanted in (lesson.number, lesson.name, lesson.run_name):
            return lesson
    valid = ", ".join(lesson.run_name for lesson in all_lessons())
    raise UnknownLesson(f"unknown lesson {key!r}; valid lessons: {valid}")


def exercise(key: str) -> Exercise:
    """An exercise by its key, ``LESSON.N`` (``07.1``, ``7.1``)."""
    parts = key.strip().split(".")
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        number, n = f"{int(parts[0]):02d}", int(parts[1])
        for lesson in all_lessons():
            if lesson.number == number and 1 <= n <= len(lesson.exercises):
                return lesson.exercises[n - 1]
    first = next(e.key for lesson in all_lessons() for e in lesson.exercises)
    raise UnknownExercise(
        f"no exercise {key!r}: name one as LESSON.N, e.g. {first} "
        "(`lab exercise --list` lists them)"
    )


def all_exercises() -> list[Exercise]:
    return [e for lesson in all_lessons() for e in lesson.exercises]


class UnknownExercise(LabError, LookupError):
    pass
