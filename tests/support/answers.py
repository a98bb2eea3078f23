"""A learner's answer, checked the two ways a learner checks it: typed over the stub in a copy
of the exercise notebook and checked from the file (`lab check`), and executed in the
notebook's namespace and handed to the check cell's `evaluate` — the same verdict both ways."""

from __future__ import annotations

import textwrap
from pathlib import Path

from lab.course import exercise
from lab.exercises.checking import Result, check_file, evaluate, load_copy
from support.exercises import answer


def typed_in(key: str, source: str) -> str:
    """The exercise notebook with the stub of ``key`` replaced by ``source``."""
    return answer(exercise(key).lesson.exercises_path.read_text(encoding="utf-8"), key, source)


def verdicts(key: str, source: str, folder: Path) -> tuple[Result, Result]:
    """(the check cell's verdict, `lab check`'s verdict) on the answer."""
    spec = exercise(key)
    namespace = vars(load_copy(spec.lesson.exercises_path))  # the notebook's imports and stubs
    exec(textwrap.dedent(source), namespace)  # noqa: S102 - the answer under test
    in_cell = evaluate(key, namespace[spec.target])
    copy = folder / spec.lesson.run_name / spec.lesson.exercises_path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(typed_in(key, source), encoding="utf-8")
    from_file = next(r for r in check_file(spec.lesson, copy) if r.key == key)
    return in_cell, from_file


def cases(answers: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(key, source) for key, sources in answers.items() for source in sources]
