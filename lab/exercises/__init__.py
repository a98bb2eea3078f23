"""Exercises: a notebook per lesson with stubs to fill in and checks that say what is wrong.

A template is ``exerciseNN_name.py`` in this folder (a jupytext percent script, like the
lessons). ``lab exercise NN`` copies it to ``<work>/exercises/`` — the learner's own copy,
never overwritten — and ``lab check NN`` checks that copy. This module reads files only (no
torch); ``check_exercise`` and ``hint`` (what the notebook cells call) load on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.exercises.catalog import ITEMS, Item

__all__ = ["ITEMS", "ExerciseFile", "Item", "all_files", "find", "item"]
from lab.paths import work_dir

EXERCISES_DIR = Path(__file__).resolve().parent
_FILE_RE = re.compile(r"^exercise(\d{2})_([a-z0-9_]+)\.py$")


class UnknownExercise(LabError):
    pass


@dataclass(frozen=True)
class ExerciseFile:
    number: str  # "07"
    name: str  # "custom_autograd_function"
    template: Path

    @property
    def items(self) -> list[Item]:
        return [item for key, item in ITEMS.items() if key.split(".")[0] == self.number]

    @property
    def title(self) -> str:
        for line in self.template.read_text(encoding="utf-8").splitlines():
            if line.startswith("# # "):
                return line[4:].strip()
        return self.name.replace("_", " ")

    def copy(self, work: Path | None = None) -> Path:
        """Where the learner's copy lives (it may not exist yet)."""
        return (work or work_dir()) / "exercises" / self.template.name


def all_files() -> list[ExerciseFile]:
    found = []
    for path in sorted(EXERCISES_DIR.glob("exercise*.py")):
        match = _FILE_RE.match(path.name)
        if match:
            found.append(ExerciseFile(match.group(1), match.group(2), path))
    return found


def find(key: str) -> ExerciseFile:
    """By lesson number (``7``, ``07``) or an exercise key (``07.1``)."""
    wanted = key.strip().split(".")[0]
    if wanted.isdigit():
        wanted = f"{int(wanted):02d}"
    for each in all_files():
        if wanted in (each.number, each.name):
            return each
    numbers = ", ".join(each.number for each in all_files())
    raise UnknownExercise(f"no exercises for {key!r}; there are exercises for lessons {numbers}")


def item(key: str) -> Item:
    parts = key.strip().split(".")
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        normal = f"{int(parts[0]):02d}.{int(parts[1])}"
        if normal in ITEMS:
            return ITEMS[normal]
    raise UnknownExercise(
        f"no exercise {key!r}: name one as LESSON.N, e.g. {next(iter(ITEMS))} "
        "(`lab exercise --list` lists them)"
    )


def __getattr__(name: str):
    # The notebook's `from lab.exercises import check_exercise, hint` loads torch only then.
    if name == "check_exercise":
        from lab.exercises.checking import check_exercise

        return check_exercise
    if name == "hint":
        from lab.exercises.hints import hint

        return hint
    raise AttributeError(name)
