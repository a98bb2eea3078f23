"""Lessons run as notebooks: jupytext turns each into a notebook that executes in a real kernel.

This is how a learner meets them in JupyterLab: no ``__file__``, the kernel's own argv, the
lesson's folder as working directory, and cells run one after another. A lesson that teaches
cell by cell shows something under (nearly) every cell, and its pictures arrive as PNGs.
"""

from __future__ import annotations

import pytest
from support.lessons import execute_notebook
from support.synthetic import install_cifar, install_hymenoptera, install_mnist

from lab.course import all_lessons

# Pictures a learner would rather look at than read: at least this many PNG outputs.
MIN_FIGURES = {
    "00": 1,  # f and f' on one plot
    "01": 1,  # loss curve and the fitted line
    "03": 1,  # the autograd graph
    "05": 2,  # f and f'; Jacobian and Hessian heatmaps
    "06": 1,  # gradient norm before/after clipping
    "07": 1,  # ReLU / STE forward and backward
    "08": 1,  # CPU vs GPU timing bars
    "09": 1,  # image grids ...
    "10": 1,
    "11": 1,
    "12": 1,
    "13": 1,
    "14": 1,
    "15": 2,  # loss/accuracy curves; misclassified test images
    "16": 1,  # each rank's loss; rank 0's backward() timeline
    "17": 2,  # the expression's graph; the MLP trained by our engine and by torch
    "18": 1,  # saved bytes per block, with and without checkpointing
    "19": 2,  # jacfwd vs jacrev passes and times; per-sample gradient norms
    "20": 2,  # gradient norm per layer; GradScaler's scale over the steps
    "21": 1,  # saved-for-backward bytes: eager, default partition, min-cut
}


def _visible(cell) -> bool:
    return any(
        out.get("output_type") in ("display_data", "execute_result")
        or (out.get("output_type") == "stream" and out.get("text", "").strip())
        for out in cell.get("outputs", [])
    )


# The kernel's own backend (inline), and Agg as a server or CI sets it in the environment:
# show() must put each figure under its cell as a PNG either way.
@pytest.mark.parametrize("backend", [None, "Agg"], ids=["inline", "MPLBACKEND=Agg"])
@pytest.mark.parametrize("lesson", all_lessons(), ids=lambda lesson: lesson.run_name)
def test_lesson_runs_cell_by_cell_as_a_notebook(lesson, backend, runs_dir, data_dir):
    if int(lesson.number) >= 9:  # the data lessons, on small synthetic data in the real formats
        install_mnist(data_dir), install_cifar(data_dir), install_hymenoptera(data_dir)
    notebook = execute_notebook(lesson.number, mpl_backend=backend)
    if backend is not None:  # the setting reached the kernel: this run is not an inline one
        # (a late stream from an earlier cell may land in this cell too, on a busy machine)
        used = "".join(out.get("text", "") for out in notebook.cells[-1].outputs).lower()
        assert f"matplotlib backend: {backend.lower()}\n" in used, used
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [out for cell in code for out in cell.get("outputs", [])]
    errors = [out for out in outputs if out.get("output_type") == "error"]
    assert not errors, errors[0].get("ename", "") + ": " + errors[0].get("evalue", "")
    printed = "".join(out.get("text", "") for out in outputs)
    assert f"[{lesson.run_name}] done:" in printed
    assert "✓" in printed, "the lesson checked its claims"
    assert list((runs_dir / lesson.run_name).iterdir()), "the notebook logged a run"

    # the settings cell and the import/open cell aside, >= 80 % of code cells show something
    teaching = [cell for cell in code if "parameters" not in cell.metadata.get("tags", [])][1:]
    shown = sum(_visible(cell) for cell in teaching)
    assert shown >= 0.8 * len(teaching), f"only {shown} of {len(teaching)} cells show a result"
    pngs = sum("image/png" in out.get("data", {}) for out in outputs)
    assert pngs >= MIN_FIGURES.get(lesson.number, 0), f"{pngs} figures"
