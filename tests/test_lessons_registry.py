"""The lesson registry finds lessons by number or name, and every lesson follows the format."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab.course import UnknownLesson, all_lessons, find

EXPECTED_AUTOGRAD_SERIES = [
    "00_interactive_playground",
    "01_manual_gradient",
    "02_autograd_basics",
    "03_computational_graph",
    "04_hooks",
    "05_jacobian_and_advanced_autograd",
    "06_gradient_accumulation_and_tricks",
    "07_custom_autograd_function",
    "08_tensor_operations_and_gpu",
]


def test_autograd_series_is_complete_and_in_order():
    names = [lesson.run_name for lesson in all_lessons()]
    assert names[: len(EXPECTED_AUTOGRAD_SERIES)] == EXPECTED_AUTOGRAD_SERIES
    assert len(set(lesson.number for lesson in all_lessons())) == len(names)


@pytest.mark.parametrize(
    "key",
    [
        "7",
        "07",
        "custom_autograd_function",
        "07_custom_autograd_function",
        "lesson07_custom_autograd_function.py",  # the file name before lessons had folders
        " 07 ",
    ],
)
def test_find_by_number_or_name(key):
    assert find(key).run_name == "07_custom_autograd_function"


def test_unknown_lesson_lists_the_valid_ones():
    with pytest.raises(UnknownLesson) as info:
        find("99")
    message = str(info.value)
    assert "'99'" in message
    assert all(lesson.run_name in message for lesson in all_lessons())


@pytest.mark.parametrize("lesson", all_lessons(), ids=lambda lesson: lesson.run_name)
def test_lesson_is_a_cell_by_cell_notebook(lesson):
    """Every lesson opens as a notebook: a title cell, a settings cell, prose between code
    cells, nothing script-only in view, and a last cell that closes the run."""
    import jupytext

    notebook = jupytext.read(lesson.path, fmt="py:percent")
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown"
    assert notebook.cells[0].source.startswith(f"# {lesson.number} ")
    assert kinds.count("markdown") >= 4, "a lesson explains itself in prose"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code) >= 5, "one idea per cell, not one cell per lesson"
    assert "parameters" in code[0].metadata.get("tags", []), "settings come first"
    assert code[-1].source.strip() == "lesson.done()"
    text = lesson.path.read_text(encoding="utf-8")
    for script_only in (
        "from __future__",
        "argparse",
        "def main(",
        "run_lesson",
        '__name__ == "__main__"',
    ):
        assert script_only not in text, f"{script_only!r} is script-only noise in a notebook"
    assert "open_lesson(" in text and lesson.run_name not in text, "the name is typed once"


@pytest.mark.parametrize("lesson", all_lessons(), ids=lambda lesson: lesson.run_name)
def test_lesson_pieces_load_without_running_the_narrative(lesson, runs_dir):
    module = lesson.load()
    assert not hasattr(module, "lesson"), "loading pieces opened no run"
    assert not runs_dir.exists()


def test_listing_lessons_does_not_import_torch():
    code = (
        "import sys; from lab.cli import main; main(['lesson', 'list']);"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "07  custom_autograd_function" in result.stdout


@pytest.mark.parametrize("lesson", all_lessons(), ids=lambda lesson: lesson.run_name)
def test_every_lesson_is_mutation_tested(lesson):
    """A lesson whose teaching is broken must fail its own checks: each lesson's test module
    names at least four mutations and runs them through ``assert_mutation_caught``."""
    import ast
    from pathlib import Path

    tests = Path(__file__).parent / "course" / f"test_{lesson.run_name}.py"
    assert tests.exists(), f"no test module for lesson {lesson.number}"
    tree = ast.parse(tests.read_text(encoding="utf-8"))
    mutations = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(target, "id", None) == "MUTATIONS" for target in node.targets)
    ]
    assert mutations and len(mutations[0].elts) >= 4, "fewer than four MUTATIONS"
    assert "assert_mutation_caught(" in tests.read_text(encoding="utf-8")
