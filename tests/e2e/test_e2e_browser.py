"""A learner's browser: JupyterLab opens lesson 07 as a notebook and runs it; TensorBoard
charts its scalars. Headless Debian Chromium driven by Playwright; screenshots in artifacts/."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from support.ci_skip import skip_unless_ci
from support.e2e_stack import ARTIFACTS, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

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
LESSON07 = "lesson07_custom_autograd_function.py"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        skip_unless_ci(f"{CHROMIUM} not found (Debian package chromium; or set LAB_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def _open_in_file_browser(page, name: str) -> None:
    item = page.locator(".jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    )
    item.dblclick()


def _code_prompts(page) -> list[str]:
    return page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()


def _render_every_cell(lab_stack) -> None:
    """JupyterLab only renders the cells in view by default; the checks below read every
    cell's prompt and output from the page, so have all of them rendered (a user setting)."""
    request = urllib.request.Request(
        f"{lab_stack.jupyter_url}/lab/api/settings/@jupyterlab/notebook-extension:tracker",
        data=json.dumps({"raw": json.dumps({"windowingMode": "none"})}).encode(),
        headers={"Authorization": f"token {lab_stack.token}"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def test_jupyterlab_opens_lesson_07_as_a_notebook_and_runs_it(lab_stack, page):
    _render_every_cell(lab_stack)
    page.goto(f"{lab_stack.jupyter_url}/lab?token={lab_stack.token}")
    page.locator(".jp-DirListing-content").wait_for()
    # Double-clicks, as a learner would: the default viewer for .py is jupytext's notebook.
    _open_in_file_browser(page, "lab")
    _open_in_file_browser(page, "lessons")
    _open_in_file_browser(page, LESSON07)

    notebook = page.locator(".jp-NotebookPanel:visible")
    notebook.locator(".jp-Cell").first.wait_for()
    assert page.locator(".jp-FileEditor:visible").count() == 0, "opened in the text editor"
    assert notebook.locator(".jp-MarkdownCell h1").first.inner_text().startswith("07")
    # The kernel starts on its own (no "Select Kernel" dialog); wait until it is connected.
    expect(page.locator("#jp-main-statusbar")).to_contain_text(
        re.compile(r"Python 3 \(ipykernel\)\s*\|\s*Idle"), timeout=120_000
    )

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()

    deadline = time.monotonic() + 180
    while True:
        prompts = _code_prompts(page)
        if prompts and all(re.fullmatch(r"\[\d+\]:", prompt.strip()) for prompt in prompts):
            break
        assert time.monotonic() < deadline, f"cells did not all run: {prompts}"
        time.sleep(0.5)

    outputs = "\n".join(notebook.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in outputs, outputs[-2000:]
    assert re.search(r"\[07_custom_autograd_function\] done: \d+ claims checked", outputs), outputs[
        -2000:
    ]
    # Opening and running a lesson in the browser never rewrites it (jupytext may save it).
    lesson = f"lab/lessons/{LESSON07}"
    assert (lab_stack.workdir / lesson).read_bytes() == (ROOT / lesson).read_bytes()


def drawn_points(page, tensorboard_url: str, run: str, tag: str) -> int:
    """Open TensorBoard's scalars for ``run`` alone (the run filter, as a learner narrows it)
    and ``tag``; the most vertices any line of the tag's chart has once drawn (Plottable
    draws each series as ``path.line``, "M x,y L x,y ..."), 0 when no line has any point.
    The card's icons are paths too, which is why a bare ``svg path[d]`` proves nothing."""
    page.goto(f"{tensorboard_url}/#scalars")
    page.locator("tf-runs-selector input").first.fill(f"^{re.escape(run)}$")
    # Only the first tag groups start expanded: filter to the tag, as a learner would search.
    page.locator("tf-tag-filterer input").fill(tag)
    card = page.locator("tf-scalar-card").filter(has_text=tag).first
    card.wait_for()
    expect(page.get_by_text(run, exact=True)).to_be_visible()  # the run selector lists it
    lines = card.locator("path.line")
    deadline = time.monotonic() + 20
    most = 0
    while most < 2 and time.monotonic() < deadline:
        counts = [
            d.count("L") + 1
            for d in (lines.nth(i).get_attribute("d") or "" for i in range(lines.count()))
            if d.startswith("M")
        ]
        most = max(counts, default=0)
        time.sleep(0.25)
    card.screenshot(path=str(ARTIFACTS / f"tensorboard-chart-{run.replace('/', '_')}.png"))
    return most


def test_tensorboard_draws_the_lessons_scalar_series(lab_stack, lesson07_in_container, page):
    run = lesson07_in_container["run"]
    tag = next(tag for tag in lesson07_in_container["tags"] if tag.endswith("/loss"))
    query = urllib.parse.urlencode({"run": run, "tag": tag})
    points = len(lab_stack.tensorboard_json(f"plugin/scalars/scalars?{query}"))
    assert points >= 2, f"the lesson logged {points} {tag} point(s): too few to draw a line"
    ARTIFACTS.mkdir(exist_ok=True)
    # The series is drawn: its line passes through every point the run logged (checked to
    # fail on a run without this tag's points: see drawn_points).
    assert drawn_points(page, lab_stack.tensorboard_url, run, tag) == points
