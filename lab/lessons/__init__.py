"""The lesson registry: finds lessons by number or name without importing them (no torch).

A lesson is a module ``lessonNN_name.py`` in this folder. Its first markdown heading
(``# # ...`` in jupytext percent format) is its title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

LESSONS_DIR = Path(__file__).resolve().parent
_FILE_RE = re.compile(r"^lesson(\d{2})_([a-z0-9_]+)\.py$")


@dataclass(frozen=True)
class Lesson:
    number: str  # "07"
    name: str  # "custom_autograd_function"
    path: Path

    @property
    def module_name(self) -> str:
        return f"{__name__}.{self.path.stem}"

    @property
    def run_name(self) -> str:
        """The TensorBoard run folder: ``07_custom_autograd_function``."""
        return f"{self.number}_{self.name}"

    @property
    def title(self) -> str:
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.startswith("# # "):
                return line[4:].strip()
        return self.name.replace("_", " ")

    def load(self) -> ModuleType:
        """The lesson's reusable pieces (functions, classes, constants), narrative not run."""
        from lab.lessons.runner import definitions

        return definitions(self)


class UnknownLesson(LookupError):
    pass


def all_lessons() -> list[Lesson]:
    found = []
    for path in sorted(LESSONS_DIR.glob("lesson*.py")):
        match = _FILE_RE.match(path.name)
        if match:
            found.append(Lesson(match.group(1), match.group(2), path))
    return found


def find(key: str) -> Lesson:
    """Look a lesson up by number (``7``, ``07``), name, or ``07_name``/``lesson07_name``."""
    wanted = key.strip().lower().removesuffix(".py").removeprefix("lesson")
    if wanted.isdigit():
        wanted = f"{int(wanted):02d}"
    for lesson in all_lessons():
        if wanted in (lesson.number, lesson.name, lesson.run_name):
            return lesson
    valid = ", ".join(lesson.run_name for lesson in all_lessons())
    raise UnknownLesson(f"unknown lesson {key!r}; valid lessons: {valid}")
