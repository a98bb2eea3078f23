"""The real stack for the end-to-end tests: both images built, compose up with the CPU override.

Every session gets its own compose project, free ports, a token of its own and a scratch
checkout (``lab/``, compose files, tasks.py, empty ``data/`` and ``work/``): the tests (and
the browser running lessons) never touch the repository's files, and nothing clashes with a
learner's own stack. Without a Docker engine the tests skip, except in CI (``CI=true``) where
that is a failure.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from support import e2e_stack as stack
from support import jupyterlab
from support.ci_skip import skip_unless_ci


@pytest.fixture(scope="session")
def docker_engine() -> None:
    problem = stack.engine_problem()
    if problem:
        skip_unless_ci(problem)


@pytest.fixture(scope="session")
def images(docker_engine) -> dict[str, str]:
    """Both images, built (from cache when nothing changed) with the classic builder;
    ``{service: image ID}``."""
    return stack.build_images()


def _project_dir(tmp_path_factory, owner: int | None = None) -> Path:
    """A scratch checkout; as root (CI) owned by the image's uid 1000 unless ``owner`` says
    otherwise, as anyone else by them (the entrypoint adopts either)."""
    if owner is None and os.geteuid() == 0:
        owner = stack.LAB_UID
    return stack.make_checkout(tmp_path_factory.mktemp("labstack"), owner)


@pytest.fixture(scope="session")
def lab_stack(images, tmp_path_factory) -> stack.Stack:
    """One running stack shared by the tests that only look at it (or add runs to it)."""
    running = stack.Stack(
        project=f"labe2e{secrets.token_hex(4)}",
        workdir=_project_dir(tmp_path_factory),
        token=secrets.token_hex(16),
        images=images,
    )
    try:
        seconds = running.up()
        print(f"\nup -> healthy: {seconds:.1f} s")
        yield running
    finally:
        running.down(volumes=True)


@pytest.fixture
def fresh_stack(images, tmp_path_factory):
    """A stack of its own, for tests that take it down and up again; always removed after."""
    made: list[stack.Stack] = []

    def make(owner: int | None = None) -> stack.Stack:
        new = stack.Stack(
            project=f"labe2e{secrets.token_hex(4)}",
            workdir=_project_dir(tmp_path_factory, owner),
            token=secrets.token_hex(16),
            images=images,
        )
        made.append(new)
        return new

    yield make
    for each in made:
        each.down(volumes=True)


@pytest.fixture(scope="session")
def lesson07_in_container(lab_stack) -> dict:
    """Lesson 07 run once inside the lab container, through ``invoke lesson 07`` as a learner
    would; returns the new TensorBoard run, its scalar tags and how long it took to show up."""
    return lab_stack.run_lesson_and_watch_tensorboard("07")


@pytest.fixture
def page(request):
    """A page in headless Debian Chromium (a missing one skips off-CI and fails in CI); its
    screenshot lands in artifacts/<test name>.png whatever happens. Playwright's sync API
    runs an event loop while it is open, so it lives no longer than the test."""
    with jupyterlab.chromium() as browser:
        context, page = jupyterlab.new_page(browser)
        try:
            yield page
        finally:
            stack.ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(stack.ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            context.close()
