"""A learner's exercise loop in the lab container: `invoke exercise 07` makes their copy,
`invoke check 07` fails on the stub and passes once they write a solution, and `down`/`up`
keeps both the file and the progress."""

from __future__ import annotations

import json
import subprocess

import pytest
from support.e2e_stack import ROOT
from support.exercises import solve

pytestmark = pytest.mark.e2e

COPY = "work/07_custom_autograd_function/exercises.py"


def invoke(stack, *args: str) -> subprocess.CompletedProcess:
    """``invoke ARGS`` from the repository, routed into this stack's lab container."""
    env = stack.env | {"COMPOSE_PROJECT_NAME": stack.project}
    return subprocess.run(
        ["invoke", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_exercise_then_check_in_the_container_and_down_up_keeps_file_and_progress(fresh_stack):
    stack = fresh_stack()
    stack.up()
    copy = stack.workdir / COPY

    made = invoke(stack, "exercise", "07")
    assert made.returncode == 0, made.stderr
    assert "running in the lab container" in made.stderr
    # the lab's start made the copy (`lab course sync`); `exercise` finds it and leaves it
    assert f"your copy (already there, left as it is): /workspace/{COPY}" in made.stdout
    template = (ROOT / "lab/course/07_custom_autograd_function/exercises.py").read_text("utf-8")
    assert copy.read_text(encoding="utf-8") == template  # on the host, in the bind mount

    stub = invoke(stack, "check", "07")
    assert stub.returncode == 1, stub.stdout + stub.stderr
    assert "· 07.1 not attempted yet" in stub.stdout
    assert "Traceback" not in stub.stdout + stub.stderr

    # The learner solves 07.1 (editing their file in place, as an editor does).
    copy.write_text(solve(template, "07.1"), encoding="utf-8")
    half = invoke(stack, "check", "07")
    assert half.returncode == 1
    assert "✓ 07.1 passed" in half.stdout
    assert "· 07.2 not attempted yet" in half.stdout

    solved = solve(solve(template, "07.1"), "07.2")
    copy.write_text(solved, encoding="utf-8")
    done = invoke(stack, "check", "07")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2/2 of exercises 07 passed" in done.stdout

    stack.down(volumes=False)
    stack.up()
    assert copy.read_text(encoding="utf-8") == solved
    again = invoke(stack, "exercise", "07")  # never overwrites the learner's file
    assert "already there, left as it is" in again.stdout
    assert copy.read_text(encoding="utf-8") == solved

    saved = json.loads((stack.workdir / "work/progress.json").read_text(encoding="utf-8"))
    assert saved["exercises"]["07.1"]["first_passed"]
    assert saved["exercises"]["07.1"]["attempts"] == 2  # the stub's check is no attempt
    table = invoke(stack, "progress")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("07.1"))
    assert "passed" in row and row.split()[-1] == "2", row
