"""Adding a lesson is adding its folder (and its tests): in a copy of the checkout, a tiny
lesson 22 with one exercise, and nothing else edited, is listed by `lab lesson list`, runs,
gets its exercise copied and checked, and is picked up by the notebook, registry and
exercise tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LESSON = """\
# %% [markdown]
# # 22 · A fixture lesson
#
# Squares, and their derivative: the smallest lesson the course accepts.

# %% tags=["parameters"]
X = 3.0  # where the derivative is taken

# %%
import torch

from lab.lessons.harness import check, open_lesson

lesson = open_lesson()

# %% [markdown]
# ## d(x²)/dx = 2x


# %%
def square(x):
    return x * x


x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
square(x).backward()
print(x.grad)
check(float(x.grad) == 2 * X, "d(x²)/dx = 2x, by hand")

# %% [markdown]
# ## The same at many points

# %%
xs = torch.linspace(-1, 1, 5, dtype=torch.float64, requires_grad=True)
square(xs).sum().backward()
print(xs.grad)
check(torch.equal(xs.grad, 2 * xs.detach()), "one backward() gives 2x at every point")

# %% [markdown]
# ## Logged

# %%
lesson.writer.add_scalar("fixture/grad", float(x.grad), 0)
print("logged")

# %% [markdown]
# ## Done

# %%
lesson.done()
"""

EXERCISES = """\
# %% [markdown]
# # 22 · Exercises: a fixture

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 22.1 · The derivative of x³


# %%
def cube_grad(x):
    raise NotImplementedError("22.1: write cube_grad")


# %%
check_exercise("22.1", cube_grad)
"""

TOML = """\
[[exercise]]
target = "cube_grad"
title = "the derivative of x cubed, by hand"
hints = ["d(x^n)/dx = n x^(n-1)", "3 * x ** 2", "return 3 * x ** 2"]
"""

CHECKS = """\
import torch

from lab.exercises.feedback import call, same

X = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)


def check_cube_grad(cube_grad) -> str:
    x = X.clone().requires_grad_(True)
    (x**3).sum().backward()
    same(x.grad, call(cube_grad, X.clone()), "cube_grad", given=f"x = {X.tolist()}")
    return "equals autograd's derivative of x**3"


CHECKS = {"cube_grad": check_cube_grad}
"""

SOLUTION = """\
def cube_grad(x):
    return 3 * x**2
"""

TESTS = '''\
"""Lesson 22, a fixture."""

from support.lessons import assert_mutation_caught

MUTATIONS = [
    ("2 * X", "X"),
    ("2 * xs.detach()", "xs.detach()"),
    ("return x * x", "return x * x * x"),
    ("float(x.grad) == 2 * X", "float(x.grad) == 2 * X + 1"),
]


def test_mutations_are_caught():
    for old, new in MUTATIONS:
        assert_mutation_caught("22", old, new)


WRONG = {
    "22.1": [
        ("def cube_grad(x):\\n    return 3 * x\\n", "differs"),
        ("def cube_grad(x):\\n    return x**2\\n", "differs"),
        ("def cube_grad(x):\\n    return 3 * x**3\\n", "differs"),
        ("def cube_grad(x):\\n    return x**3\\n", "differs"),
    ]
}
RIGHT = {"22.1": ["def cube_grad(x):\\n    return 3 * x * x\\n"]}
'''


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the checkout's lab/ and tests/ (and the config pytest reads), plus the new
    lesson's folder and its test module: nothing else is edited."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("lab", "tests"):
        shutil.copytree(
            ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    shutil.copy(ROOT / "pyproject.toml", root)
    folder = root / "lab" / "course" / "22_fixture_lesson"
    folder.mkdir()
    for name, text in {
        "lesson.py": LESSON,
        "exercises.py": EXERCISES,
        "exercises.toml": TOML,
        "checks.py": CHECKS,
        "solutions.py": SOLUTION,
    }.items():
        (folder / name).write_text(text, encoding="utf-8")
    (root / "tests" / "course" / "test_22_fixture_lesson.py").write_text(TESTS, "utf-8")
    return root


def run(checkout: Path, *argv: str, work: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "LAB_WORK_DIR": str(work),
        "LAB_RUNS_DIR": str(work.parent / "runs"),
    }
    return subprocess.run(
        [sys.executable, *argv], cwd=checkout, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_lab_commands_find_the_new_folder(checkout, tmp_path):
    work = tmp_path / "work"
    listed = run(checkout, "-m", "lab", "lesson", "list", work=work)
    assert "22  fixture_lesson" in listed.stdout, listed.stderr
    ran = run(checkout, "-m", "lab", "lesson", "22", "--device", "cpu", work=work)
    assert ran.returncode == 0, ran.stderr
    assert "[22_fixture_lesson] done: 2 claims checked" in ran.stdout
    assert list((work.parent / "runs" / "22_fixture_lesson").iterdir())

    made = run(checkout, "-m", "lab", "exercise", "22", work=work)
    assert made.returncode == 0 and "22_fixture_lesson/exercises.py" in made.stdout, made.stderr
    stub = run(checkout, "-m", "lab", "check", "22", work=work)
    assert stub.returncode == 1 and "· 22.1 not attempted yet" in stub.stdout, stub.stdout
    copy = work / "22_fixture_lesson" / "exercises.py"
    copy.write_text(
        copy.read_text(encoding="utf-8").replace(
            '    raise NotImplementedError("22.1: write cube_grad")', "    return 3 * x**2"
        ),
        encoding="utf-8",
    )
    solved = run(checkout, "-m", "lab", "check", "22", work=work)
    assert solved.returncode == 0 and "✓ 22.1 passed" in solved.stdout, solved.stdout
    hint = run(checkout, "-m", "lab", "hint", "22.1", work=work)
    assert "hint 1/3 for 22.1: d(x^n)/dx = n x^(n-1)" in hint.stdout, hint.stderr


def test_the_generic_tests_pick_the_new_lesson_up(checkout, tmp_path):
    selected = textwrap.dedent(
        """\
        tests/test_lessons_as_notebooks.py
        tests/test_lessons_registry.py
        tests/exercises/test_checks.py
        tests/course/test_22_fixture_lesson.py
        """
    ).split()
    done = run(
        checkout,
        "-m",
        "pytest",
        "-v",
        "-p",
        "no:cacheprovider",
        *selected,
        "-k",
        "22",
        work=tmp_path / "work",
    )
    assert done.returncode == 0, done.stdout[-3000:]
    for test in (
        "test_lesson_runs_cell_by_cell_as_a_notebook[22_fixture_lesson-inline]",
        "test_lesson_runs_cell_by_cell_as_a_notebook[22_fixture_lesson-MPLBACKEND=Agg]",
        "test_lesson_is_a_cell_by_cell_notebook[22_fixture_lesson]",
        "test_every_lesson_is_mutation_tested[22_fixture_lesson]",
        "test_reference_solution_passes[22.1]",
        "test_untouched_stubs_are_not_attempted_yet[22]",
        "test_wrong_answer_gets_its_specific_message[22.1-3]",
    ):
        assert test in done.stdout, f"{test} did not run:\n{done.stdout[-3000:]}"
