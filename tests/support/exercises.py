"""Write a reference solution into an exercise file the way a learner would: the stub's
definition is replaced by the solution's, the rest of the file (check cells…) left as it is."""

from __future__ import annotations

import ast

from lab.course import exercise


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


def solve(text: str, key: str) -> str:
    """``text`` (an exercise notebook) with the stub of ``key`` replaced by the solution."""
    first, last = _span(ast.parse(text), exercise(key).target)
    lines = text.splitlines(keepends=True)
    return "".join(lines[: first - 1]) + solution_source(key) + "".join(lines[last:])
