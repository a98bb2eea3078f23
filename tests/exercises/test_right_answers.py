"""Different correct answers to every exercise (``RIGHT`` in each lesson's test module) pass
everywhere a learner can check them, with the same verdict: through ``evaluate``, through
``lab check`` on a copy holding that answer, and in the notebook's check cell in a kernel."""

from __future__ import annotations

import pytest
from support.exercises import answer, cases, notebook_until_check

from lab.cli import main
from lab.course import all_exercises, exercise
from lab.exercises import copy_of
from lab.exercises.checking import PASSED, evaluate, load_copy

from .test_notebooks import _run

KEYS = [spec.key for spec in all_exercises()]
RIGHT = cases("RIGHT")
CASES = [
    pytest.param(key, source, id=f"{key}-{n}")
    for key, sources in sorted(RIGHT.items())
    for n, source in enumerate(sources)
]


def test_every_exercise_has_a_correct_answer_besides_the_reference():
    assert {key: len(RIGHT.get(key, [])) >= 1 for key in KEYS} == dict.fromkeys(KEYS, True)


def as_learner_wrote_it(key: str, source: str):
    """The answer, defined where a learner defines it: in the notebook, under its imports."""
    spec = exercise(key)
    namespace = dict(vars(load_copy(spec.lesson.exercises_path)))
    exec(compile(source, f"<{key} answer>", "exec"), namespace)  # noqa: S102 - the answer
    return namespace[spec.target]


@pytest.mark.parametrize(("key", "source"), CASES)
def test_a_different_correct_answer_passes(key, source):
    result = evaluate(key, as_learner_wrote_it(key, source))
    assert result.status == PASSED, result.message


@pytest.mark.parametrize(("key", "source"), CASES)
def test_a_different_correct_answer_passes_lab_check(key, source, capsys, _work_dir):
    spec = exercise(key)
    copy = copy_of(spec.lesson, _work_dir).path
    copy.parent.mkdir(parents=True)
    copy.write_text(
        answer(spec.lesson.exercises_path.read_text(encoding="utf-8"), key, source),
        encoding="utf-8",
    )
    status = main(["check", key])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"✓ {key} passed" in out


def test_every_correct_answer_passes_in_a_kernel(tmp_path):
    # one kernel for all of them: each answer in its stub's cell, its notebook run up to its
    # check cell
    sections = [
        notebook_until_check(
            answer(exercise(key).lesson.exercises_path.read_text(encoding="utf-8"), key, source),
            key,
        )
        for key, sources in sorted(RIGHT.items())
        for source in sources
    ]
    expected = [f"✓ {key} passed" for key, sources in sorted(RIGHT.items()) for _ in sources]
    outputs = _run("\n".join(sections), tmp_path)
    assert [out.splitlines()[-1].split(":")[0] if out else "" for out in outputs] == expected, (
        outputs
    )
