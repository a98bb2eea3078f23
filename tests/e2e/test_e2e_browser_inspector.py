"""A learner's browser steps through a backward pass with the inspector: a notebook calls
``inspect(...)``, the step control (ipywidgets, served by the lab itself: the lab runs
offline) is clicked forward three times, and each time the highlighted node and the edge
labels are the ones the engine's recorded steps say. Headless Debian Chromium driven by
Playwright against the lab image (Graphviz inside); screenshots in artifacts/."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect
from support import jupyterlab
from support.e2e_stack import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

NOTEBOOK = "inspector_steps.ipynb"  # written into the learner's work/ (JupyterLab's root)
CELLS = [
    """\
import json
import torch
from lab.inspector import inspect
from lab.inspector.picture import summary

x = torch.tensor([0.5, -1.5, 2.0], dtype=torch.float64, requires_grad=True)
w = torch.tensor([1.25, 0.5, -0.75], dtype=torch.float64, requires_grad=True)
h = x * w
loss = (h.sin() + x * x).sum()
view = inspect(loss, params={"x": x, "w": w})""",
    """\
# What the engine did, step by step: the node it ran, and the label of every edge whose
# gradient had been sent by then (from the recorded gradients themselves).
recorded = []
for k, index in enumerate(view.order, 1):
    ran = set(view.order[:k])
    labels = [
        summary(view.sent(e), float(view.sent(e).norm())) for e in view.edges if e.source in ran
    ]
    node = view.nodes[index]
    title = node.name if node.leaf else node.op  # a leaf's box shows its name first
    recorded.append({"box": f"n{index}", "title": title, "labels": sorted(labels)})
print("RECORDED " + json.dumps(recorded))""",
]
KERNEL_TIMEOUT = 240
CELL_TIMEOUT = 240_000  # ms: importing torch in a fresh kernel on a loaded 2-core machine
CURRENT_FILL = "rgb(255, 213, 79)"  # COLOURS["current"]


def notebook_model() -> dict:
    cells = [
        {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
        for s in CELLS
    ]
    kernel = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    content = {
        "cells": cells,
        "metadata": {"kernelspec": kernel},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return {"type": "notebook", "format": "json", "content": content}


@pytest.fixture
def inspector_notebook(lab_stack):
    """The notebook in the learner's work folder for this test only: the stack is shared, and
    the file browser test counts what the learner's folder holds."""
    status, answer = lab_stack.jupyter_save(NOTEBOOK, notebook_model())
    assert status in (200, 201), answer
    yield NOTEBOOK
    lab_stack.exec("lab", "rm", "-f", f"/workspace/work/{NOTEBOOK}", user="lab")


def test_three_clicks_on_step_move_the_highlight_and_the_edge_labels_as_recorded(
    lab_stack, inspector_notebook, page
):
    notebook = jupyterlab.open_notebook(page, lab_stack, NOTEBOOK, kernel_timeout_s=KERNEL_TIMEOUT)
    jupyterlab.run_all_cells(page)

    printed = notebook.locator(".jp-RenderedText", has_text="RECORDED ")
    expect(printed).to_have_count(1, timeout=CELL_TIMEOUT)
    recorded = json.loads(printed.inner_text().split("RECORDED ", 1)[1])
    assert len(recorded) >= 5
    view = notebook.locator(".lab-inspector-view")
    expect(view).to_have_count(1)
    caption = view.locator(".widget-html b").first
    expect(caption).to_contain_text("before backward()")
    expect(view.locator("g.node.current")).to_have_count(0)
    outputs = "\n".join(notebook.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in outputs, outputs[-2000:]

    forward = view.get_by_role("button", name="step ▶")
    ARTIFACTS.mkdir(exist_ok=True)
    for click, step in enumerate(recorded[:3], 1):
        forward.click()
        expect(caption).to_contain_text(re.compile(rf"^step {click}/{len(recorded)}: "))
        current = view.locator("g.node.current")
        expect(current).to_have_count(1)
        assert current.get_attribute("id") == step["box"]
        assert current.locator("text").first.text_content().startswith(step["title"])
        fill = current.locator("path, polygon").first.evaluate("e => getComputedStyle(e).fill")
        assert fill == CURRENT_FILL, fill
        shown = view.locator("g.edge:not(.later) text")
        assert sorted(shown.all_text_contents()) == step["labels"]
        hidden = view.locator("g.edge.later text")
        assert all(not label.is_visible() for label in hidden.all())
        view.screenshot(path=str(ARTIFACTS / f"inspector_step{click}.png"))
    assert len(recorded[2]["labels"]) > len(recorded[0]["labels"])  # the labels did change
