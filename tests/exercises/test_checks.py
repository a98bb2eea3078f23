"""Every exercise: the reference solution passes, the untouched stub is 'not attempted yet',
and each typical wrong answer gets its own specific message (asserted on its content)."""

from __future__ import annotations

import importlib
import textwrap

import pytest
import torch
from torch import nn

from lab.exercises import ITEMS, all_files
from lab.exercises.checking import FAILED, NOT_ATTEMPTED, PASSED, evaluate, load_copy

LESSONS = sorted({key[:2] for key in ITEMS})
WRONG = {
    key: cases
    for number in LESSONS
    for key, cases in importlib.import_module(f"exercises.wrong{number}").WRONG.items()
}


def solution(key: str):
    module = importlib.import_module(f"lab.exercises.solutions.ex{key[:2]}")
    return getattr(module, ITEMS[key].target)


def test_exercises_cover_lessons_01_to_08_twice_and_09_13_15():
    per_lesson = {number: sum(key[:2] == number for key in ITEMS) for number in LESSONS}
    assert all(per_lesson[f"{n:02d}"] >= 2 for n in range(1, 9)), per_lesson
    assert all(per_lesson[n] >= 1 for n in ("09", "13", "15")), per_lesson
    assert sorted(each.number for each in all_files()) == LESSONS


@pytest.mark.parametrize("key", sorted(ITEMS))
def test_reference_solution_passes(key):
    result = evaluate(key, solution(key))
    assert result.status == PASSED, result.message


@pytest.mark.parametrize("exercise", all_files(), ids=lambda each: each.number)
def test_untouched_stubs_are_not_attempted_yet(exercise):
    namespace = load_copy(exercise.template)
    for spec in exercise.items:
        result = evaluate(spec.key, getattr(namespace, spec.target))
        assert result.status == NOT_ATTEMPTED, (spec.key, result.message)
        assert result.line().startswith(f"· {spec.key} not attempted yet")


def test_every_exercise_has_at_least_two_typical_wrong_answers():
    assert {key: len(WRONG.get(key, [])) >= 2 for key in ITEMS} == dict.fromkeys(ITEMS, True)


CASES = [
    pytest.param(key, source, expected, id=f"{key}-{n}")
    for key, cases in sorted(WRONG.items())
    for n, (source, expected) in enumerate(cases)
]


@pytest.mark.parametrize(("key", "source", "expected"), CASES)
def test_wrong_answer_gets_its_specific_message(key, source, expected):
    namespace = {"torch": torch, "nn": nn}
    exec(textwrap.dedent(source), namespace)  # noqa: S102 - the learner's code under test
    result = evaluate(key, namespace[ITEMS[key].target])
    assert result.status == FAILED, result
    assert expected in result.message, result.message
    assert "Traceback" not in result.message


def test_an_answer_no_check_foresaw_is_still_one_line():
    # 15.1 expects a function; a learner who wrote a class instead gets a sentence
    result = evaluate("15.1", type("train_step", (), {}))
    assert result.status == FAILED
    assert "\n" not in result.message and "Traceback" not in result.message
