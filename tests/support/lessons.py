"""Run lessons the three ways a learner meets them: cells headless (``lab lesson NN``), as a
notebook in a real kernel, and mutated (a lesson whose teaching is broken must fail its own
checks)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from lab.lessons import find


def run_lesson(number: str, *argv: str) -> types.ModuleType:
    """Every cell of the lesson, in order, as ``lab lesson NN ARGV`` runs them; returns the
    namespace the cells left behind (``ns.losses``, ``ns.lesson.checks`` …)."""
    from lab.lessons import runner

    return runner.run(find(number), ["--device", "cpu", "--no-gpu-metrics", *argv])


def definitions(number: str) -> types.ModuleType:
    """The lesson's functions, classes and constants, its narrative not run."""
    return find(number).load()


def mutate(number: str, old: str, new: str) -> str:
    """The lesson's source with ``old`` (which must occur exactly once) replaced by ``new``."""
    text = find(number).path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"mutation target must occur once in lesson {number}: {old!r}"
    return text.replace(old, new)


def assert_mutation_caught(number: str, old: str, new: str, *argv: str) -> str:
    """Run the mutated lesson; its own checks must stop it. Returns the failed claim."""
    from lab.lessons import runner

    source = mutate(number, old, new)
    with pytest.raises(AssertionError, match="lesson claim failed") as failure:
        runner.run(find(number), ["--device", "cpu", "--no-gpu-metrics", *argv], source=source)
    return str(failure.value)


def execute_notebook(number: str, timeout: int = 600):
    """The lesson as JupyterLab shows it, executed top to bottom in an ipykernel."""
    import jupytext
    from nbclient import NotebookClient

    lesson = find(number)
    notebook = jupytext.read(lesson.path)
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(lesson.path).parent)}},
    ).execute()
    return notebook
