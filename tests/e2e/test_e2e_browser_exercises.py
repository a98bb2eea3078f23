"""A learner's browser: JupyterLab opens their copy of exercises 07, they type a solution
into the stub cell, and the check cell under it says it passed. Headless Debian Chromium
driven by Playwright, as in test_e2e_browser.py; screenshots in artifacts/."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from support.ci_skip import skip_unless_ci
from support.e2e_stack import ARTIFACTS
from support.exercises import solution_source

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
COPY = "exercise07_custom_autograd_function.py"


@pytest.fixture(scope="module")
def page(lab_stack):
    if not CHROMIUM.exists():
        skip_unless_ci(f"{CHROMIUM} not found (Debian package chromium; or set LAB_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _jupyter_setting(lab_stack, plugin: str, raw: dict) -> None:
    request = urllib.request.Request(
        f"{lab_stack.jupyter_url}/lab/api/settings/{plugin}",
        data=json.dumps({"raw": json.dumps(raw)}).encode(),
        headers={"Authorization": f"token {lab_stack.token}"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def _open(page, name: str) -> None:
    text = page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    page.locator(".jp-DirListing-item").filter(has=text).dblclick()


def test_a_solution_typed_into_the_stub_cell_passes_its_check_cell(lab_stack, page):
    made = lab_stack.exec("lab", "python", "-m", "lab", "exercise", "07", check=True)
    assert f"work/exercises/{COPY}" in made.stdout
    # Every cell rendered: the checks read outputs below the fold.
    _jupyter_setting(lab_stack, "@jupyterlab/notebook-extension:tracker", {"windowingMode": "none"})
    page.goto(f"{lab_stack.jupyter_url}/lab?token={lab_stack.token}")
    page.locator(".jp-DirListing-content").wait_for()
    _open(page, "work")
    _open(page, "exercises")
    _open(page, COPY)

    notebook = page.locator(".jp-NotebookPanel:visible")
    notebook.locator(".jp-Cell").first.wait_for()
    assert notebook.locator(".jp-MarkdownCell h1").first.inner_text().startswith("07")
    expect(page.locator("#jp-main-statusbar")).to_contain_text(
        re.compile(r"Python 3 \(ipykernel\)\s*\|\s*Idle"), timeout=120_000
    )

    stub = notebook.locator(".jp-CodeCell").filter(has_text="class MySigmoid(")
    editor = stub.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(solution_source("07.1"))  # as pasted: no auto-indent
    expect(stub).to_contain_text("torch.exp(-x)")

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()

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
    copy = lab_stack.workdir / "work" / "exercises" / COPY
    deadline = time.monotonic() + 30
    while "torch.exp(-x)" not in copy.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, "the notebook was not saved to the learner's copy"
        time.sleep(0.5)
    checked = lab_stack.exec("lab", "python", "-m", "lab", "check", "07")
    assert "✓ 07.1 passed" in checked.stdout, checked.stdout + checked.stderr
