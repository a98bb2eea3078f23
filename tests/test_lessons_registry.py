"""The lesson registry finds lessons by number or name, and every lesson follows the format."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab.lessons import UnknownLesson, all_lessons, find

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
        "lesson07_custom_autograd_function.py",
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
def test_lesson_is_a_jupytext_percent_notebook(lesson):
    """Every lesson opens as a notebook: a markdown title cell first, then code cells."""
    import jupytext

    notebook = jupytext.read(lesson.path, fmt="py:percent")
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown"
    assert notebook.cells[0].source.startswith(f"# {lesson.number} ")
    assert kinds.count("markdown") >= 3, "a lesson explains itself in prose"
    assert kinds.count("code") >= 3
    assert "main()" in notebook.cells[-1].source


@pytest.mark.parametrize("lesson", all_lessons(), ids=lambda lesson: lesson.run_name)
def test_lesson_is_importable_with_a_main(lesson):
    module = lesson.load()
    assert callable(module.main)


def test_listing_lessons_does_not_import_torch():
    code = (
        "import sys; from lab.cli import main; main(['lesson', '--list']);"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "07  custom_autograd_function" in result.stdout
