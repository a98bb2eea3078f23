"""Every exercise: the reference solution passes, the untouched stub is 'not attempted yet',
and each typical wrong answer gets its own specific message (asserted on its content)."""

from __future__ import annotations

import importlib
import textwrap

import pytest
import torch
from support.exercises import cases
from torch import nn

from lab.course import all_exercises, exercise, with_exercises
from lab.exercises.checking import FAILED, NOT_ATTEMPTED, PASSED, evaluate, load_copy

KEYS = [spec.key for spec in all_exercises()]
# Each lesson's typical wrong answers live beside its other tests (tests/course/test_NN_name.py).
WRONG = cases("WRONG")


def solution(key: str):
    spec = exercise(key)
    module = importlib.import_module(f"lab.course.{spec.lesson.run_name}.solutions")
    return getattr(module, spec.target)


def test_exercises_cover_lessons_01_to_08_twice_and_09_13_15():
    per_lesson = {lesson.number: len(lesson.exercises) for lesson in with_exercises()}
    assert all(per_lesson[f"{n:02d}"] >= 2 for n in range(1, 9)), per_lesson
    assert all(per_lesson[n] >= 1 for n in ("09", "13", "15")), per_lesson


def test_every_exercise_has_a_check_and_every_check_an_exercise():
    for lesson in with_exercises():
        targets = {spec.target for spec in lesson.exercises}
        assert set(lesson.checks().CHECKS) == targets, lesson.run_name
        assert lesson.exercises_path.exists() and lesson.solutions_path.exists()


@pytest.mark.parametrize("key", KEYS)
def test_reference_solution_passes(key):
    result = evaluate(key, solution(key))
    assert result.status == PASSED, result.message


@pytest.mark.parametrize("lesson", with_exercises(), ids=lambda each: each.number)
def test_untouched_stubs_are_not_attempted_yet(lesson):
    namespace = load_copy(lesson.exercises_path)
    for spec in lesson.exercises:
        result = evaluate(spec.key, getattr(namespace, spec.target))
        assert result.status == NOT_ATTEMPTED, (spec.key, result.message)
        assert result.line().startswith(f"· {spec.key} not attempted yet")


def test_every_exercise_has_at_least_four_typical_wrong_answers():
    assert {key: len(WRONG.get(key, [])) >= 4 for key in KEYS} == dict.fromkeys(KEYS, True)


CASES = [
    pytest.param(key, source, expected, id=f"{key}-{n}")
    for key, cases in sorted(WRONG.items())
    for n, (source, expected) in enumerate(cases)
]


@pytest.mark.parametrize(("key", "source", "expected"), CASES)
def test_wrong_answer_gets_its_specific_message(key, source, expected):
    namespace = {"torch": torch, "nn": nn}
    exec(textwrap.dedent(source), namespace)  # noqa: S102 - the learner's code under test
    result = evaluate(key, namespace[exercise(key).target])
    assert result.status == FAILED, result
    assert expected in result.message, result.message
    assert "Traceback" not in result.message


def test_an_answer_no_check_foresaw_is_still_one_line():
    # 15.1 expects a function; a learner who wrote a class instead gets a sentence
    result = evaluate("15.1", type("train_step", (), {}))
    assert result.status == FAILED
    assert "\n" not in result.message and "Traceback" not in result.message


def test_only_the_untouched_stub_is_not_attempted():
    # 07.1 with forward written and backward still the stub's: attempted, and said so
    namespace = {"torch": torch}
    exec(  # noqa: S102 - the learner's code under test
        "class MySigmoid(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        return torch.sigmoid(x)\n"
        "    @staticmethod\n"
        "    def backward(ctx, grad_output):\n"
        '        raise NotImplementedError("07.1: write backward")\n',
        namespace,
    )
    result = evaluate("07.1", namespace["MySigmoid"])
    assert result.status == FAILED
    assert result.message == "forward works; `backward` still raises NotImplementedError"
    # the stub itself, defined anywhere (comments and blank lines do not matter)
    exec(  # noqa: S102
        "def train_step(model, optimizer, loss_fn, x, y):\n"
        "    # TODO\n\n"
        '    raise NotImplementedError("15.1: one step; return the loss as a float")\n',
        namespace,
    )
    assert evaluate("15.1", namespace["train_step"]).status == NOT_ATTEMPTED
