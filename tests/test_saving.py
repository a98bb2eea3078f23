"""Saving from JupyterLab is safe. A learner's copy of a lesson or an exercise saved through
jupytext's contents manager — what JupyterLab's Ctrl+S calls, configured by the image's
docker/lab/jupytext.toml — is byte-identical when nothing changed (whatever JupyterLab added
to the cells while the learner ran them), keeps the settings cell's tag, and a saved lesson
still runs headless with its flags. The browser's Ctrl+S: tests/e2e/test_e2e_course_view.py."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
from jupytext import TextFileContentsManager

from lab import copies
from lab.cli import main
from lab.course import all_lessons

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [c.key for lesson in all_lessons() for c in copies.copies_of(lesson, Path("."))]


@pytest.fixture
def contents(tmp_path, monkeypatch, _work_dir) -> TextFileContentsManager:
    """The image's jupytext configuration, and JupyterLab's root: the learner's copies."""
    config = tmp_path / "xdg" / "jupytext"
    config.mkdir(parents=True)
    shutil.copy(ROOT / "docker" / "lab" / "jupytext.toml", config / "jupytext.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config.parent))
    copies.sync(_work_dir)
    return TextFileContentsManager(root_dir=str(_work_dir))


def _as_a_learner_left_it(notebook) -> None:
    """What JupyterLab adds while a learner runs every cell: outputs, counts, timings,
    scroll state, the kernel's metadata."""
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.metadata["language_info"] = {"name": "python", "version": "3.11.2"}
    for n, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            cell.execution_count = n
            cell.outputs = [{"output_type": "stream", "name": "stdout", "text": "✓ ran\n"}]
            cell.metadata["execution"] = {"iopub.status.idle": "2026-12-06T10:00:00.000Z"}
            cell.metadata["scrolled"] = True
        cell.metadata["collapsed"] = False


@pytest.mark.parametrize("key", NOTEBOOKS)
def test_saving_an_unchanged_notebook_leaves_it_byte_identical(contents, _work_dir, key):
    before = (_work_dir / key).read_bytes()
    model = contents.get(key, content=True, type="notebook")
    _as_a_learner_left_it(model["content"])
    contents.save({"type": "notebook", "content": model["content"]}, key)
    assert (_work_dir / key).read_bytes() == before


def test_an_edited_setting_survives_the_save_and_stays_a_flag(contents, _work_dir, capsys):
    key = "15_mnist_training/lesson.py"
    model = contents.get(key, content=True, type="notebook")
    notebook = copy.deepcopy(model["content"])
    (settings,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert "EPOCHS = 1  #" in settings.source
    settings.source = settings.source.replace("EPOCHS = 1  #", "EPOCHS = 3  #")
    _as_a_learner_left_it(notebook)
    contents.save({"type": "notebook", "content": notebook}, key)

    saved = (_work_dir / key).read_text(encoding="utf-8")
    assert '# %% tags=["parameters"]\nEPOCHS = 3  # passes over the training set' in saved
    with pytest.raises(SystemExit):
        main(["lesson", "15", "--help"])
    out = capsys.readouterr().out
    assert "--epochs EPOCHS" in out and "passes over the training set (default: 3)" in out
    assert "--batch-size BATCH_SIZE" in out


def test_the_copy_saved_unchanged_still_counts_as_untouched(contents, _work_dir):
    # A save that changed nothing must not make the copy "the learner's": it keeps following
    # the course (lab course sync), which a byte-identical save guarantees.
    key = "07_custom_autograd_function/lesson.py"
    model = contents.get(key, content=True, type="notebook")
    contents.save({"type": "notebook", "content": model["content"]}, key)
    status = dict((c.key, what) for c, what in copies.sync(_work_dir))
    assert status[key] == copies.SAME
