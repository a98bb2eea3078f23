"""A learner's browser steps through lesson 03 in JupyterLab one cell at a time (Shift+Enter)
and sees, under the cells that make them, the autograd graph as a picture and checked claims.

Headless Debian Chromium driven by Playwright, against the lab image (which has Graphviz and
torchviz); screenshots in artifacts/."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect
from support import jupyterlab
from support.e2e_stack import ARTIFACTS, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LESSON03 = "03_computational_graph"  # the learner's copy: work/<this>/lesson.py
# Code that only the cell drawing the small model's graph contains.
GRAPH_CELL = '"autograd_graph")'
GAN_CELL = "detach=False)"  # the discriminator step without detach()
# Generous: the kernel's start and the first cell (importing torch) are slow on a loaded
# 2-core CI machine; a cell that never finishes still fails.
KERNEL_TIMEOUT = 240  # seconds until the kernel is idle
CELL_TIMEOUT = 180  # seconds for one cell


def _wait_until_run(cell, index: int) -> str:
    """Wait for a code cell's prompt to read ``[n]:`` (it reads ``[*]:`` while running)."""
    prompt = cell.locator(".jp-InputPrompt")
    deadline = time.monotonic() + CELL_TIMEOUT
    while True:
        text = prompt.inner_text().strip()
        if re.fullmatch(r"\[\d+\]:", text):
            return text
        assert time.monotonic() < deadline, f"code cell {index} did not finish: prompt {text!r}"
        time.sleep(0.2)


def test_stepping_through_lesson_03_shows_the_graph_picture_and_checked_claims(lab_stack, page):
    notebook = jupyterlab.open_notebook(
        page, lab_stack, LESSON03, "lesson.py", kernel_timeout_s=KERNEL_TIMEOUT
    )
    cells = notebook.locator(".jp-Notebook .jp-Cell")
    assert notebook.locator(".jp-MarkdownCell h1").first.inner_text().startswith("03")

    # Select the first cell in command mode, then Shift+Enter once per cell, as a learner
    # does: each press runs the selected cell and moves on; the next press waits for it.
    # The last cell gets Ctrl+Enter (run, stay): Shift+Enter there would append an empty
    # cell, and the notebook (the lesson file, through jupytext) must stay as it is.
    cells.first.locator(".jp-InputPrompt, .jp-Cell-inputArea").first.click()
    page.keyboard.press("Escape")
    total = cells.count()
    code_cells = 0
    for index in range(total):
        cell = cells.nth(index)
        expect(cell).to_have_class(re.compile(r"\bjp-mod-selected\b"))
        page.keyboard.press("Shift+Enter" if index < total - 1 else "Control+Enter")
        if "jp-CodeCell" in (cell.get_attribute("class") or ""):
            _wait_until_run(cell, index)
            code_cells += 1
    assert code_cells >= 10, f"only {code_cells} code cells were run"
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    numbers = [int(re.search(r"\d+", prompt).group()) for prompt in prompts]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), prompts  # in order

    everything = "\n".join(notebook.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in everything, everything[-2000:]

    # The graph picture: a PNG under the cell that draws it, really decoded by the browser,
    # with the claim about it checked right there.
    graph_cell = notebook.locator(".jp-CodeCell").filter(has_text=GRAPH_CELL)
    expect(graph_cell).to_have_count(1)
    picture = graph_cell.locator(".jp-OutputArea-output img")
    expect(picture).to_have_count(1)
    assert picture.get_attribute("src").startswith("data:image/png")
    width, height = picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 150 and height > 300, (width, height)  # a tall graph: leaves down to loss
    expect(graph_cell.locator(".jp-OutputArea")).to_contain_text(
        "✓ the picture has a gray box per node of the walk"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    picture.scroll_into_view_if_needed()
    graph_cell.locator(".jp-Cell-outputArea").screenshot(
        path=str(ARTIFACTS / "lesson03_graph_cell_output.png")
    )

    # A checked claim of the detach() section under its own cell, and none of it elsewhere.
    gan_cell = notebook.locator(".jp-CodeCell").filter(has_text=GAN_CELL)
    expect(gan_cell).to_have_count(1)
    claim = "✓ without detach(), the D step puts (nonzero) gradients into every G parameter"
    expect(gan_cell.locator(".jp-OutputArea")).to_contain_text(claim)
    assert everything.count(claim) == 1
    gan_cell.locator(".jp-Cell-outputArea").screenshot(
        path=str(ARTIFACTS / "lesson03_detach_cell_output.png")
    )

    assert re.search(r"\[03_computational_graph\] done: 27 claims checked", everything)
    # Opening and running a lesson in the browser never rewrites it (jupytext may save it).
    copy = lab_stack.workdir / "work" / LESSON03 / "lesson.py"
    assert copy.read_bytes() == (ROOT / "lab" / "course" / LESSON03 / "lesson.py").read_bytes()
