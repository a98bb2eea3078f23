"""A learner's browser steps through lesson 17 in JupyterLab one cell at a time (Shift+Enter)
and sees, under the cells that make them, the engine's gradients checked against torch's and
the expression's graph drawn by Graphviz.

Headless Debian Chromium driven by Playwright, against the lab image (which has Graphviz);
screenshots in artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from support import jupyterlab
from support.e2e_stack import ARTIFACTS, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LESSON17 = "17_build_your_own_autograd"  # the learner's copy: work/<this>/lesson.py
# Code that only the cell it names contains.
TINY_CELL = "by_torch = torch_grads("
GRAPH_CELL = '"tiny_expression_graph")'
RANDOM_CELL = "compare_with_torch(program, xs, device)"
MLP_CELL = "train_torch(start, x, y, STEPS, LR)"
KERNEL_TIMEOUT = 240  # seconds until the kernel is idle (a loaded 2-core CI machine)
CELL_TIMEOUT = 180  # seconds for one cell


def _cell(notebook, code: str):
    cell = notebook.locator(".jp-CodeCell").filter(has_text=code)
    expect(cell).to_have_count(1)
    return cell


def test_stepping_through_lesson_17_shows_engine_vs_torch_and_the_graph(lab_stack, page):
    notebook = jupyterlab.open_notebook(
        page, lab_stack, LESSON17, "lesson.py", kernel_timeout_s=KERNEL_TIMEOUT
    )
    assert notebook.locator(".jp-MarkdownCell h1").first.inner_text().startswith("17")
    code_cells = jupyterlab.step_through(page, notebook, CELL_TIMEOUT)
    assert code_cells >= 10, f"only {code_cells} code cells were run"

    everything = "\n".join(notebook.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in everything, everything[-2000:]
    ARTIFACTS.mkdir(exist_ok=True)

    # Our engine against torch, said under the cells that compare them.
    tiny = _cell(notebook, TINY_CELL).locator(".jp-OutputArea")
    expect(tiny).to_contain_text("ours:  dL/da = -0.4700074244, dL/db = 0.4700074244")
    expect(tiny).to_contain_text("torch: dL/da = -0.4700074244, dL/db = 0.4700074244")
    expect(tiny).to_contain_text("✓ our engine's dL/da and dL/db equal torch's (float64)")
    tiny.screenshot(path=str(ARTIFACTS / "lesson17_engine_vs_torch.png"))
    expect(_cell(notebook, RANDOM_CELL).locator(".jp-OutputArea")).to_contain_text(
        "✓ on 25 random expressions every gradient equals torch's (float64)"
    )
    expect(_cell(notebook, MLP_CELL).locator(".jp-OutputArea")).to_contain_text(
        "✓ our engine and torch give the same loss at each of 30 steps (float64)"
    )

    # The graph: a PNG under the cell that draws it, decoded by the browser, laid out left to
    # right from the leaves to L, with the claim about it checked right there.
    graph_cell = _cell(notebook, GRAPH_CELL)
    picture = graph_cell.locator(".jp-OutputArea-output img")
    expect(picture).to_have_count(1)
    assert picture.get_attribute("src").startswith("data:image/png")
    width, height = picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 3 * height > 150, (width, height)
    expect(graph_cell.locator(".jp-OutputArea")).to_contain_text(
        "✓ the drawing has 5 values, 3 operations and 8 arrows, as counted by hand"
    )
    picture.scroll_into_view_if_needed()
    graph_cell.locator(".jp-Cell-outputArea").screenshot(
        path=str(ARTIFACTS / "lesson17_graph_cell_output.png")
    )

    # every claim the lesson checked was shown under its cell as a ✓ line
    done = re.search(r"\[17_build_your_own_autograd\] done: (\d+) claims checked", everything)
    shown = len(re.findall(r"^\s*✓ ", everything, flags=re.M))
    assert done and int(done.group(1)) == shown > 10, everything[-2000:]
    # Opening and running a lesson in the browser never rewrites it (jupytext may save it).
    copy = lab_stack.workdir / "work" / LESSON17 / "lesson.py"
    assert copy.read_bytes() == (ROOT / "lab" / "course" / LESSON17 / "lesson.py").read_bytes()
