"""Run lessons the three ways a learner meets them: cells headless (``lab lesson NN``), as a
notebook in a real kernel, and mutated (a lesson whose teaching is broken must fail its own
checks)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from lab.course import find


def run_lesson(number: str, *argv: str) -> types.ModuleType:
    """Every cell of the lesson, in order, as ``lab lesson NN ARGV`` runs them; returns the
    namespace the cells left behind (``ns.losses``, ``ns.lesson.checks`` …)."""
    from lab.lessons import runner

    return runner.run(find(number), ["--device", "cpu", "--no-gpu-metrics", *argv])


def definitions(number: str) -> types.ModuleType:
    """The lesson's functions, classes and constants, its narrative not run."""
    return find(number).load()


def mutate(number: str, old: str, new: str) -> str:
    """The lesson's source with ``old`` (which must occur exactly once) replaced by ``new``."""
    text = find(number).path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"mutation target must occur once in lesson {number}: {old!r}"
    return text.replace(old, new)


def assert_mutation_caught(number: str, old: str, new: str, *argv: str) -> str:
    """Run the mutated lesson; its own checks must stop it. Returns the failed claim."""
    from lab.lessons import runner

    source = mutate(number, old, new)
    with pytest.raises(AssertionError, match="lesson claim failed") as failure:
        runner.run(find(number), ["--device", "cpu", "--no-gpu-metrics", *argv], source=source)
    return str(failure.value)


# TEST-ONLY kernel setup: the notebook kernel is another process, so the in-process
# ``trust_synthetic_cifar(monkeypatch)`` does not reach it. The kernel runs this file before
# the first cell (IPKernelApp.exec_files): torchvision's CIFAR10 is told the md5s of the
# synthetic batches (support.synthetic), every other check stays. Real CIFAR-10 is never used
# by the tests; it would fail this md5 check, as a damaged copy does.
_KERNEL_SETUP = """\
from torchvision import datasets as _datasets
_cls = _datasets.CIFAR10
_cls.train_list = [[_name, {digest}[_name]] for _name, _ in _cls.train_list]
_cls.test_list = [[_name, {digest}[_name]] for _name, _ in _cls.test_list]
_cls.meta = {{**_cls.meta, "md5": {digest}["batches.meta"]}}
del _datasets, _cls
"""


def _kernel_setup_file(directory: Path) -> Path:
    import hashlib

    from support.synthetic import cifar_members

    digest = {name: hashlib.md5(data).hexdigest() for name, data in cifar_members().items()}
    path = directory / "lab_test_kernel_setup.py"
    path.write_text(_KERNEL_SETUP.format(digest=repr(digest)), encoding="utf-8")
    return path


BACKEND_CELL = "import matplotlib\nprint('matplotlib backend:', matplotlib.get_backend())"


def execute_notebook(number: str, timeout: int = 600, mpl_backend: str | None = None):
    """The lesson as JupyterLab shows it, executed top to bottom in an ipykernel (which
    trusts the synthetic CIFAR-10 batches, see ``_KERNEL_SETUP``). The kernel picks its own
    matplotlib backend (inline), or with ``mpl_backend`` starts with ``MPLBACKEND`` set to it,
    as on a server, and a last cell (``BACKEND_CELL``) prints the backend it really used."""
    import os
    import tempfile

    import jupytext
    import nbformat
    from nbclient import NotebookClient

    lesson = find(number)
    notebook = jupytext.read(lesson.path)
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    if mpl_backend is not None:
        env["MPLBACKEND"] = mpl_backend
        notebook.cells.append(nbformat.v4.new_code_cell(BACKEND_CELL))
    with tempfile.TemporaryDirectory() as scratch:
        setup = _kernel_setup_file(Path(scratch))
        NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            extra_arguments=[f"--IPKernelApp.exec_files={setup}"],
            resources={"metadata": {"path": str(Path(lesson.path).parent)}},
        ).execute(env=env)
    return notebook
