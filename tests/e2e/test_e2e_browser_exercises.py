"""A learner's browser: JupyterLab opens their copy of exercises 07, they type a solution
into the stub cell, and the check cell under it says it passed. Headless Debian Chromium
driven by Playwright, as in test_e2e_browser.py; screenshots in artifacts/."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect
from support import jupyterlab
from support.e2e_stack import ARTIFACTS
from support.exercises import solution_source

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LESSON07 = "07_custom_autograd_function"  # the copy: work/<this>/exercises.py


def test_a_solution_typed_into_the_stub_cell_passes_its_check_cell(lab_stack, page):
    made = lab_stack.exec("lab", "python", "-m", "lab", "exercise", "07", check=True)
    assert f"/workspace/work/{LESSON07}/exercises.py" in made.stdout  # made at the lab's start
    notebook = jupyterlab.open_notebook(page, lab_stack, LESSON07, "exercises.py")
    assert notebook.locator(".jp-MarkdownCell h1").first.inner_text().startswith("07")

    stub = notebook.locator(".jp-CodeCell").filter(has_text="class MySigmoid(")
    editor = stub.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(solution_source("07.1"))  # as pasted: no auto-indent
    expect(stub).to_contain_text("torch.exp(-x)")

    jupyterlab.run_all_cells(page)

    check_cell = notebook.locator(".jp-CodeCell").filter(has_text='check_exercise("07.1"')
    output = check_cell.locator(".jp-OutputArea-output")
    expect(output).to_contain_text("✓ 07.1 passed", timeout=120_000)
    other = notebook.locator(".jp-CodeCell").filter(has_text='check_exercise("07.2"')
    expect(other.locator(".jp-OutputArea-output")).to_contain_text("07.2 not attempted yet")
    outputs = "\n".join(notebook.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in outputs, outputs[-2000:]

    check_cell.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "exercise07_check_passes_in_jupyterlab.png"))

    # Saving writes the learner's own file on the host, where `lab check` reads it.
    page.keyboard.press("Control+S")
    copy = lab_stack.workdir / "work" / LESSON07 / "exercises.py"
    deadline = time.monotonic() + 30
    while "torch.exp(-x)" not in copy.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, "the notebook was not saved to the learner's copy"
        time.sleep(0.5)
    checked = lab_stack.exec("lab", "python", "-m", "lab", "check", "07")
    assert "✓ 07.1 passed" in checked.stdout, checked.stdout + checked.stderr
