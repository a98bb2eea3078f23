"""Lessons run as notebooks: jupytext turns each into a notebook that executes in a real kernel.

This is how a learner meets them in JupyterLab: no ``__file__``, the kernel's own argv, and
the lesson's folder as the working directory.
"""

from __future__ import annotations

import jupytext
import pytest
from nbclient import NotebookClient

from lab.lessons import all_lessons

# lessons 09-15 need datasets; tests/lessons covers them with synthetic data
AUTOGRAD_SERIES = [lesson for lesson in all_lessons() if int(lesson.number) <= 8]


@pytest.mark.parametrize("lesson", AUTOGRAD_SERIES, ids=lambda lesson: lesson.run_name)
def test_lesson_runs_top_to_bottom_as_a_notebook(lesson, runs_dir, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs_dir))
    notebook = jupytext.read(lesson.path)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(lesson.path.parent)}},
    ).execute()
    outputs = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    ]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    printed = "".join(out.get("text", "") for out in outputs)
    assert f"[{lesson.run_name}] done:" in printed
    assert "✓" in printed, "the lesson checked its claims"
    assert list((runs_dir / lesson.run_name).iterdir()), "the notebook logged a run"
