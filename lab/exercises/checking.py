"""Run an exercise's check and say the result: in a notebook cell or for ``lab check``.

The learner's copy is read like a lesson's definitions: its imports, functions, classes and
UPPER_CASE constants are executed, its check cells are not. Each check lives in
the lesson's ``checks.py`` (``CHECKS[target]``) and returns the sentence that says what was
verified.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

from lab.course import Lesson, exercise
from lab.exercises import progress
from lab.exercises.feedback import NotAttempted, Problem

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"


@dataclass(frozen=True)
class Result:
    key: str
    status: str
    message: str

    def line(self) -> str:
        if self.status == PASSED:
            return f"✓ {self.key} passed: {self.message}"
        if self.status == NOT_ATTEMPTED:
            return f"· {self.key} not attempted yet: {self.message}"
        return f'✗ {self.key}: {self.message}  (hint("{self.key}") or `lab hint {self.key}`)'


def evaluate(key: str, answer) -> Result:
    """Check one answer; no progress recorded."""
    spec = exercise(key)
    check = spec.lesson.checks().CHECKS[spec.target]
    if answer is None:
        return Result(spec.key, FAILED, f"there is no `{spec.target}` in your copy")
    try:
        verified = check(answer)
    except NotAttempted:
        return Result(spec.key, NOT_ATTEMPTED, f"write `{spec.target}`, then check again")
    except Problem as problem:
        return Result(spec.key, FAILED, problem.message)
    except Exception as exc:  # an answer of a shape no check foresaw: still one line
        return Result(
            spec.key, FAILED, f"checking `{spec.target}` failed: {type(exc).__name__}: {exc}"
        )
    return Result(spec.key, PASSED, verified)


def record(result: Result) -> None:
    if result.status != NOT_ATTEMPTED:
        progress.record(result.key, result.status)


def check_exercise(key: str, answer) -> None:
    """The check cell under a stub: says what is right or the first thing wrong."""
    result = evaluate(key, answer)
    record(result)
    print(result.line())


def load_copy(path: Path) -> types.ModuleType:
    """The copy's definitions (imports, defs, classes, UPPER_CASE constants), run in order;
    a broken cell is a Problem naming its line, never a traceback."""
    from lab.lessons.runner import definition_code

    module = types.ModuleType(f"exercise_copy_{path.parent.name}")
    try:
        for cell, code in definition_code(path.read_text(encoding="utf-8"), path):
            try:
                exec(code, module.__dict__)  # noqa: S102 - the learner's own code
            except Exception as exc:
                raise Problem(
                    f"{path.name} (cell at line {cell.first_line}) raised "
                    f"{type(exc).__name__}: {exc}"
                ) from None
    except SyntaxError as exc:
        raise Problem(f"{path.name} line {exc.lineno}: SyntaxError: {exc.msg}") from None
    return module


def check_file(lesson: Lesson, path: Path) -> list[Result]:
    """Every exercise of the lesson in the learner's copy, each recorded."""
    try:
        namespace = load_copy(path)
    except Problem as problem:
        results = [Result(spec.key, FAILED, problem.message) for spec in lesson.exercises]
    else:
        results = [
            evaluate(spec.key, getattr(namespace, spec.target, None)) for spec in lesson.exercises
        ]
    for result in results:
        record(result)
    return results
