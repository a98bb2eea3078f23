"""A learner's browser for the e2e tests: headless Debian Chromium driven by Playwright, and
the JupyterLab moves every browser test makes (open a file by double-clicks, wait for the
kernel, see every cell)."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from support.ci_skip import skip_unless_ci

CHROMIUM = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
# Quiet, sandbox-free headless Chromium: no calls home (this network refuses them), no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IDLE_KERNEL = re.compile(r"Python 3 \(ipykernel\)\s*\|\s*Idle")


@contextmanager
def chromium():
    if not CHROMIUM.exists():
        skip_unless_ci(f"{CHROMIUM} not found (Debian package chromium; or set LAB_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    return context, page


def put_setting(lab_stack, plugin: str, raw: dict) -> None:
    """A JupyterLab user setting, through its settings API."""
    request = urllib.request.Request(
        f"{lab_stack.jupyter_url}/lab/api/settings/{plugin}",
        data=json.dumps({"raw": json.dumps(raw)}).encode(),
        headers={"Authorization": f"token {lab_stack.token}"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def render_every_cell(lab_stack) -> None:
    """JupyterLab renders only the cells in view by default; the tests read prompts and
    outputs far down a notebook, so have all of them rendered (a user setting)."""
    put_setting(lab_stack, "@jupyterlab/notebook-extension:tracker", {"windowingMode": "none"})


def open_in_file_browser(page, name: str) -> None:
    text = page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    page.locator(".jp-DirListing-item").filter(has=text).dblclick()


def open_notebook(page, lab_stack, *path: str, kernel_timeout_s: int = 120):
    """Double-click down ``path`` as a learner would (jupytext's notebook is the default
    viewer for .py), wait until its kernel is idle; returns the notebook panel."""
    render_every_cell(lab_stack)
    # ?reset: the file browser starts at the root, not where an earlier visit left it
    page.goto(f"{lab_stack.jupyter_url}/lab?reset&token={lab_stack.token}")
    page.locator(".jp-DirListing-content").wait_for()
    for name in path:
        open_in_file_browser(page, name)
    notebook = page.locator(".jp-NotebookPanel:visible")
    notebook.locator(".jp-Cell").first.wait_for()
    assert page.locator(".jp-FileEditor:visible").count() == 0, "opened in the text editor"
    # The kernel starts on its own (no "Select Kernel" dialog); wait until it is connected.
    expect(page.locator("#jp-main-statusbar")).to_contain_text(
        IDLE_KERNEL, timeout=kernel_timeout_s * 1000
    )
    return notebook


def run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()


def _wait_until_run(cell, index: int, timeout_s: float) -> None:
    """Wait for a code cell's prompt to read ``[n]:`` (it reads ``[*]:`` while running)."""
    prompt = cell.locator(".jp-InputPrompt")
    deadline = time.monotonic() + timeout_s
    while True:
        text = prompt.inner_text().strip()
        if re.fullmatch(r"\[\d+\]:", text):
            return
        assert time.monotonic() < deadline, f"code cell {index} did not finish: prompt {text!r}"
        time.sleep(0.2)


def step_through(page, notebook, cell_timeout_s: float) -> int:
    """Run every cell with Shift+Enter, one at a time, as a learner does; returns how many
    code cells ran, after asserting they ran in order.

    The first cell is selected in command mode; each press runs the selected cell and moves
    on, and the next press waits for it. The last cell gets Ctrl+Enter (run, stay):
    Shift+Enter there would append an empty cell, and the notebook (the lesson file, through
    jupytext) must stay as it is."""
    cells = notebook.locator(".jp-Notebook .jp-Cell")
    cells.first.locator(".jp-InputPrompt, .jp-Cell-inputArea").first.click()
    page.keyboard.press("Escape")
    total = cells.count()
    code_cells = 0
    for index in range(total):
        cell = cells.nth(index)
        expect(cell).to_have_class(re.compile(r"\bjp-mod-selected\b"))
        page.keyboard.press("Shift+Enter" if index < total - 1 else "Control+Enter")
        if "jp-CodeCell" in (cell.get_attribute("class") or ""):
            _wait_until_run(cell, index, cell_timeout_s)
            code_cells += 1
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    numbers = [int(re.search(r"\d+", prompt).group()) for prompt in prompts]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), prompts  # in order
    return code_cells
