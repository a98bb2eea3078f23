"""The stubs a learner starts from, as the course's exercise templates define them.

Only the untouched stub of an exercise is "not attempted": :func:`untouched` compares the
learner's definition with the template's (the compiled code, so comments, blank lines and
where it sits do not matter). :func:`owner` says whose stub raised a NotImplementedError, by
its message ("07.1: write forward"), so an exercise that calls an earlier unfinished one is
told so. Files and ``ast`` only (no torch).
"""

from __future__ import annotations

import ast
import re
import types
from functools import cache

from lab.course import Exercise, exercise, with_exercises

_KEY_PREFIX = re.compile(r"^(\d{2}\.\d+):")


@cache
def _template(key: str) -> tuple[types.CodeType | None, bool, tuple[str, ...]]:
    """The template's code object for the exercise's target, whether it is a class, and its
    NotImplementedError messages."""
    from lab.lessons.runner import cells

    spec = exercise(key)
    path = spec.lesson.exercises_path
    for cell in cells(path.read_text(encoding="utf-8")):
        if cell.kind != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == spec.target:
                module = compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec")
                code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
                return code, isinstance(node, ast.ClassDef), tuple(_raised_messages(node))
    return None, False, ()


def _raised_messages(node: ast.AST):
    for raise_ in ast.walk(node):
        if (
            isinstance(raise_, ast.Raise)
            and isinstance(raise_.exc, ast.Call)
            and getattr(raise_.exc.func, "id", None) == "NotImplementedError"
            and raise_.exc.args
            and isinstance(raise_.exc.args[0], ast.Constant)
            and isinstance(raise_.exc.args[0].value, str)
        ):
            yield raise_.exc.args[0].value


@cache
def _messages() -> dict[str, str]:
    return {
        message: spec.key
        for lesson in with_exercises()
        for spec in lesson.exercises
        for message in _template(spec.key)[2]
    }


def owner(message: str) -> str | None:
    """The exercise whose stub raises ``message`` (exactly, or by its "NN.N:" prefix)."""
    found = _messages().get(message)
    if found:
        return found
    match = _KEY_PREFIX.match(message)
    if match:
        try:
            return exercise(match.group(1)).key
        except LookupError:
            return None
    return None


def untouched(spec: Exercise, answer) -> bool:
    """Is ``answer`` the template's stub, as it was?"""
    stub, is_class, _ = _template(spec.key)
    if stub is None or answer is None or is_class != isinstance(answer, type):
        return False
    if is_class:
        methods = {c.co_name: c for c in stub.co_consts if isinstance(c, types.CodeType)}
        own = {
            name: _function(value)
            for name, value in vars(answer).items()
            if _function(value) is not None
        }
        return set(own) == set(methods) and all(
            _same(own[name].__code__, methods[name]) for name in methods
        )
    function = _function(answer)
    return function is not None and _same(function.__code__, stub)


def _function(value) -> types.FunctionType | None:
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    return value if isinstance(value, types.FunctionType) else None


def _same(a: types.CodeType, b: types.CodeType) -> bool:
    if (a.co_code, a.co_names, a.co_varnames) != (b.co_code, b.co_names, b.co_varnames):
        return False
    if len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts, strict=True):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True
