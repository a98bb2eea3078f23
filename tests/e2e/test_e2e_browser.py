"""A learner's browser: JupyterLab opens lesson 07 as a notebook and runs it; TensorBoard
charts its scalars. Headless Debian Chromium driven by Playwright; screenshots in artifacts/."""

from __future__ import annotations

import re
import time
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect
from support import jupyterlab
from support.e2e_stack import ARTIFACTS, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LESSON07 = "07_custom_autograd_function"  # the learner's copy: work/<this>/lesson.py


def _code_prompts(page) -> list[str]:
    return page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()


def test_jupyterlab_opens_lesson_07_as_a_notebook_and_runs_it(lab_stack, page):
    notebook = jupyterlab.open_notebook(page, lab_stack, LESSON07, "lesson.py")
    assert notebook.locator(".jp-MarkdownCell h1").first.inner_text().startswith("07")
    jupyterlab.run_all_cells(page)

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
    # Opening and running a lesson in the browser never rewrites it (jupytext may save it):
    # the learner's copy is still the course's lesson, byte for byte.
    copy = lab_stack.workdir / "work" / LESSON07 / "lesson.py"
    assert copy.read_bytes() == (ROOT / "lab" / "course" / LESSON07 / "lesson.py").read_bytes()


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
