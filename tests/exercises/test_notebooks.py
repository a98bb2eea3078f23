"""The exercise notebooks as JupyterLab runs them: in a kernel, top to bottom. With the stubs
untouched every check cell says 'not attempted yet'; with the solutions typed into the stub
cells, every check cell says 'passed' and the pass is recorded."""

from __future__ import annotations

import jupytext
from nbclient import NotebookClient
from support.exercises import solve

from lab.course import with_exercises
from lab.exercises import progress


def _run(text: str, tmp_path, every: bool = False) -> list:
    """The check cells' printed output, in order (``every``: (source, output) of every code
    cell)."""
    path = tmp_path / "exercise.py"
    path.write_text(text, encoding="utf-8")
    notebook = jupytext.read(path)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = []
    for cell in notebook.cells:
        printed = "".join(out.get("text", "") for out in cell.get("outputs", []))
        if cell.cell_type == "code" and every:
            outputs.append((cell.source, printed))
        elif cell.cell_type == "code" and "check_exercise(" in cell.source:
            outputs.append(printed)
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


HOSTILE = """# %%
import os
import sys

import torch

from lab.exercises import check_exercise

# %%
class Looping(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        while True:
            pass

# %%
check_exercise("07.1", Looping)

# %%
class Exiting(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        os._exit(3)

# %%
check_exercise("07.1", Exiting)

# %%
class Printing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        for i in range(50000):
            print("spam" * 50, i)
        sys.exit(0)

# %%
check_exercise("07.1", Printing)

# %%
torch.set_grad_enabled(False)
torch.set_default_dtype(torch.float64)
torch.manual_seed(123)
INFERENCE = torch.inference_mode()
INFERENCE.__enter__()
SOLVED

# %%
check_exercise("07.2", MulAdd)

# %%
print("kernel alive", torch.is_inference_mode_enabled(), torch.get_default_dtype())
"""


def test_hostile_answers_in_a_kernel_each_get_their_line_and_the_kernel_lives_on(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("LAB_CHECK_TIME_LIMIT", "5")
    from support.exercises import solution_source

    outputs = _run(HOSTILE.replace("SOLVED", solution_source("07.2")), tmp_path, every=True)
    checks = [out for source, out in outputs if "check_exercise(" in source]
    assert checks[0].startswith("✗ 07.1: still running after 5 s while checking `MySigmoid`")
    assert checks[1].startswith("✗ 07.1: the check's process ended while checking `MySigmoid`")
    assert "exit status 3" in checks[1]
    flood = checks[2].splitlines()
    assert len(flood) < 25 and "more of your code's output, not shown" in flood[-2]
    assert flood[-1].startswith("✗ 07.1: ") and "forward called sys.exit(0)" in flood[-1]
    assert checks[3].startswith("✓ 07.2 passed")
    assert outputs[-1][1] == "kernel alive True torch.float64\n"  # the learner's, as left
