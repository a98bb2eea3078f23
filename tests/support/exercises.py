"""Write an answer into an exercise file the way a learner would: the stub's definition is
replaced by the answer's source (which may define helpers above it, in the same cell), the
rest of the file (check cells…) left as it is."""

from __future__ import annotations

import ast
import textwrap

from lab.course import exercise
from lab.lessons.runner import cells


def _span(tree: ast.Module, name: str) -> tuple[int, int]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return first, node.end_lineno
    raise LookupError(f"no top-level {name!r}")


def solution_source(key: str) -> str:
    """The reference solution's definition of the exercise's target, as source text."""
    spec = exercise(key)
    text = spec.lesson.solutions_path.read_text(encoding="utf-8")
    first, last = _span(ast.parse(text), spec.target)
    return "\n".join(text.splitlines()[first - 1 : last]) + "\n"


def answer(text: str, key: str, source: str) -> str:
    """``text`` (an exercise notebook) with the stub of ``key`` replaced by ``source``."""
    first, last = _span(ast.parse(text), exercise(key).target)
    lines = text.splitlines(keepends=True)
    body = textwrap.dedent(source).strip("\n") + "\n"
    return "".join(lines[: first - 1]) + body + "".join(lines[last:])


def solve(text: str, key: str) -> str:
    """``text`` (an exercise notebook) with the stub of ``key`` replaced by the solution."""
    return answer(text, key, solution_source(key))


def notebook_until_check(text: str, key: str) -> str:
    """The code cells of ``text`` up to the check cell of ``key``, without the other
    exercises' check cells: what a learner runs to check ``key``."""
    kept = []
    for cell in cells(text):
        if cell.kind != "code":
            continue
        if "check_exercise(" in cell.source and f'"{key}"' not in cell.source:
            continue
        kept.append("# %%\n" + cell.source + "\n")
        if f'check_exercise("{key}"' in cell.source:
            break
    return "\n".join(kept)


def cases(name: str) -> dict:
    """``WRONG`` or ``RIGHT`` of every lesson with exercises, merged: each lesson's live
    beside its other tests, in tests/course/test_NN_name.py."""
    import importlib

    from lab.course import with_exercises

    merged: dict = {}
    for lesson in with_exercises():
        module = importlib.import_module(f"course.test_{lesson.run_name}")
        merged.update(getattr(module, name, {}))
    return merged
