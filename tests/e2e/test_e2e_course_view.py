"""What a learner sees of the course in JupyterLab, and what Ctrl+S does to it.

- The file browser opens on their work folder: the lesson folders in order and their own
  files, never the engine's modules, the checks, the solutions or the course's catalogue; a
  lesson folder holds their copies of lesson.py (and exercises.py) and nothing else.
- Ctrl+S on a lesson or an exercise notebook they ran but did not change writes it back
  byte-identical to the course's; a settings value typed into the editor survives the save
  under its `parameters` tag, and `lab lesson NN --help` in the container lists the flag with
  the new default. (The same through jupytext's contents manager: tests/test_saving.py.)

Headless Debian Chromium driven by Playwright, as in test_e2e_browser.py; every assertion on
the page reads the DOM; screenshots in artifacts/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect
from support import jupyterlab
from support.e2e_stack import ARTIFACTS, ROOT

from lab.course import all_lessons

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LESSONS = [lesson.run_name for lesson in all_lessons()]
# Lesson 01 runs fast and has both notebooks; no other browser test edits its copies.
LESSON01 = "01_manual_gradient"
# The engine and the course's hidden parts: none of these is ever in the learner's view.
NEVER_SHOWN = {
    *("runner.py", "harness.py", "cli.py", "imaging.py", "__init__.py", "ddp"),
    *("checks.py", "solutions.py", "lab", "course", "exercises.toml"),
}
LEARNERS_OWN = {"my_experiments": None, "notes.py": "# my notes\n"}  # folder, file


def listing(page) -> list[str]:
    """The names the file browser shows, top to bottom: only what is on screen (while
    JupyterLab restores its layout, the listing is in the DOM before it is drawn)."""
    items = page.locator(".jp-DirListing-content .jp-DirListing-itemText:visible")
    return items.all_inner_texts()


def wait_for_listing(page, until, timeout: float = 30) -> list[str]:
    """The listing once ``until(names)`` holds (the browser fetches and redraws it)."""
    deadline = time.monotonic() + timeout
    while True:
        names = listing(page)
        if until(names):
            return names
        assert time.monotonic() < deadline, f"the file browser lists {names}"
        time.sleep(0.25)


def open_folder(page, name: str) -> list[str]:
    jupyterlab.open_in_file_browser(page, name)
    expect(page.locator(".jp-BreadCrumbs")).to_contain_text(name)
    return wait_for_listing(page, lambda names: "lesson.py" in names)


@pytest.fixture
def learners_files(lab_stack):
    """A folder and a file the learner made in their work folder (as the lab's user)."""
    work = "/workspace/work"
    lab_stack.exec(
        "lab",
        "sh",
        "-c",
        f"mkdir {work}/my_experiments && printf '# my notes\\n' > {work}/notes.py",
        user="lab",
        check=True,
    )
    yield set(LEARNERS_OWN)
    lab_stack.exec("lab", "rm", "-r", f"{work}/my_experiments", f"{work}/notes.py", user="lab")


def test_the_file_browser_shows_the_course_and_the_learners_files_only(
    lab_stack, learners_files, page
):
    page.goto(f"{lab_stack.jupyter_url}/lab?reset&token={lab_stack.token}")
    names = wait_for_listing(page, lambda names: learners_files <= set(names))

    # What the host's work folder holds besides the lessons is the learner's own (their files,
    # progress.json once a check ran, notebooks other tests on this stack saved): the browser
    # shows exactly that after the lessons, and nothing of the lab's inside.
    work = lab_stack.workdir / "work"
    own = {p.name for p in work.iterdir() if not p.name.startswith(".")} - set(LESSONS)
    assert learners_files <= own, own
    assert names[: len(LESSONS)] == LESSONS, "the lesson folders, in order, first"
    assert sorted(names[len(LESSONS) :]) == sorted(own)
    assert not NEVER_SHOWN & set(names)
    page.screenshot(path=str(ARTIFACTS / "course_view_root.png"))

    lesson07 = next(lesson for lesson in all_lessons() if lesson.number == "07")
    assert lesson07.exercises and (lesson07.folder / "solutions.py").is_file()
    assert open_folder(page, lesson07.run_name) == ["exercises.py", "lesson.py"]
    page.screenshot(path=str(ARTIFACTS / "course_view_lesson07.png"))

    # A lesson without exercises: its folder holds the lesson alone.
    page.locator(".jp-BreadCrumbs-home").click()
    wait_for_listing(page, lambda names: names[: len(LESSONS)] == LESSONS)
    alone = next(lesson for lesson in reversed(all_lessons()) if not lesson.exercises)
    assert open_folder(page, alone.run_name) == ["lesson.py"]


def run_first_cells(page, notebook, count: int) -> None:
    """The first ``count`` code cells run one by one, as a learner steps through them (select
    the cell, Ctrl+Enter); waits until each has run (its prompt shows an execution count)."""
    for n in range(count):
        prompt = notebook.locator(".jp-CodeCell").nth(n).locator(".jp-InputPrompt")
        prompt.click()
        page.keyboard.press("Control+Enter")
        expect(prompt).to_have_text(re.compile(r"^\s*\[\d+\]:\s*$"), timeout=120_000)


def save_with_ctrl_s(page, copy: Path, timeout: float = 30) -> None:
    """Ctrl+S, then wait until the save has rewritten the file on the host (its mtime moves:
    a save that changed nothing leaves its text as it was)."""
    before = copy.stat().st_mtime_ns
    page.keyboard.press("Control+S")
    deadline = time.monotonic() + timeout
    while copy.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, f"Ctrl+S did not write {copy}"
        time.sleep(0.25)


@pytest.mark.parametrize("name", ["lesson.py", "exercises.py"])
def test_ctrl_s_after_running_cells_leaves_the_copy_byte_identical(lab_stack, page, name):
    copy = lab_stack.workdir / "work" / LESSON01 / name
    course = (ROOT / "lab" / "course" / LESSON01 / name).read_bytes()
    assert copy.read_bytes() == course  # the learner's untouched copy, as synced at start
    notebook = jupyterlab.open_notebook(page, lab_stack, LESSON01, name)
    run_first_cells(page, notebook, 2)

    save_with_ctrl_s(page, copy)
    page.screenshot(path=str(ARTIFACTS / f"course_view_saved_{Path(name).stem}.png"))
    assert copy.read_bytes() == course


def test_a_setting_typed_and_saved_stays_the_lessons_flag(lab_stack, page):
    copy = lab_stack.workdir / "work" / LESSON01 / "lesson.py"
    course = (ROOT / "lab" / "course" / LESSON01 / "lesson.py").read_text(encoding="utf-8")
    assert '# %% tags=["parameters"]\nPOINTS = 64  #' in course and "\nSTEPS = 200  #" in course
    notebook = jupyterlab.open_notebook(page, lab_stack, LESSON01, "lesson.py")
    try:
        settings = notebook.locator(".jp-CodeCell").filter(has_text="POINTS = 64  #").first
        # As a learner types: into the line, onto the value, over it.
        settings.locator(".cm-line", has_text="STEPS = 200").click()
        page.keyboard.press("Home")
        for _ in range(len("STEPS = ")):
            page.keyboard.press("ArrowRight")
        for _ in range(len("200")):
            page.keyboard.press("Shift+ArrowRight")
        page.keyboard.type("300")
        expect(settings).to_contain_text("STEPS = 300  # gradient-descent steps")

        page.keyboard.press("Control+S")
        deadline = time.monotonic() + 30
        while "STEPS = 300" not in copy.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, "the edited setting was not saved to the copy"
            time.sleep(0.25)
        page.screenshot(path=str(ARTIFACTS / "course_view_setting_saved.png"))
        # The one value changed, under the settings cell's tag; nothing else moved.
        saved = copy.read_text(encoding="utf-8")
        assert saved == course.replace("\nSTEPS = 200  #", "\nSTEPS = 300  #")
        assert '# %% tags=["parameters"]\nPOINTS = 64  # data points on the line\nSTEPS = 300' in (
            saved
        )

        shown = lab_stack.exec(
            "lab", "python", "-m", "lab", "lesson", "01", "--help", user="lab", check=True
        )
        assert re.search(
            r"--steps STEPS\s+gradient-descent steps \(default: 300\)", shown.stdout
        ), shown.stdout
        assert "--points POINTS" in shown.stdout and "--lr LR" in shown.stdout, shown.stdout
    finally:
        # Back to the course's lesson, for the other tests on this stack (an untouched copy).
        copy.write_text(course, encoding="utf-8")
