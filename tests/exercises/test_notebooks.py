"""The exercise notebooks as JupyterLab runs them: in a kernel, top to bottom. With the stubs
untouched every check cell says 'not attempted yet'; with the solutions typed into the stub
cells, every check cell says 'passed' and the pass is recorded."""

from __future__ import annotations

import jupytext
from nbclient import NotebookClient
from support.exercises import solve

from lab.course import with_exercises
from lab.exercises import progress


def _run(text: str, tmp_path) -> list[str]:
    path = tmp_path / "exercise.py"
    path.write_text(text, encoding="utf-8")
    notebook = jupytext.read(path)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and "check_exercise(" in cell.source:
            outputs.append("".join(out.get("text", "") for out in cell.outputs))
    return outputs


def test_every_notebook_in_a_kernel_stubs_then_solved(tmp_path):
    # All the notebooks one after the other in one kernel: one kernel start, not 22.
    files = with_exercises()
    keys = [spec.key for each in files for spec in each.exercises]
    stubs = "\n\n".join(each.exercises_path.read_text(encoding="utf-8") for each in files)
    assert [out.split(":")[0] for out in _run(stubs, tmp_path)] == [
        f"· {key} not attempted yet" for key in keys
    ]
    solved = stubs
    for key in keys:
        solved = solve(solved, key)
    outputs = _run(solved, tmp_path)
    assert [out.split(":")[0] for out in outputs] == [f"✓ {key} passed" for key in keys], outputs
    recorded = progress.load()["exercises"]
    assert all(recorded[key]["first_passed"] and recorded[key]["attempts"] == 1 for key in keys)
