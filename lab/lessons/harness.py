"""What a lesson's cells share: the device, the lesson's TensorBoard run, checked claims, figures.

A lesson is a jupytext notebook a learner runs cell by cell. Its first code cell holds its
settings (plain ``NAME = value`` lines); the cell after it opens the lesson::

    lesson = open_lesson("01_manual_gradient")
    device = lesson.device

and later cells call ``check(condition, "claim")`` and ``show(fig, "tag")``; the last cell
calls ``lesson.done()``. The same cells run headless under ``lab lesson 01``
(:mod:`lab.lessons.runner`), which passes ``--device``/``--runs-dir``/… through
:func:`cli_options`. This module imports torch; host-side code must not import it.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from lab.errors import LabError
from lab.gpu.sampler import GpuSampler
from lab.paths import data_dir as default_data_dir
from lab.paths import runs_dir as default_runs_dir


class LabUsageError(LabError):
    """A lesson option that cannot be honoured, e.g. ``--device cuda`` without a GPU."""


def in_notebook() -> bool:
    """True inside a Jupyter kernel (figures display inline, no command line to read)."""
    # Imported modules are not enough (a test or a tool may import ipykernel without
    # running in one): the running shell must be the kernel's.
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def _use_headless_backend() -> None:
    # A terminal run has no display: draw into memory. A kernel keeps its inline backend.
    if not in_notebook() and not os.environ.get("MPLBACKEND"):
        import matplotlib

        matplotlib.use("Agg")


@dataclass
class Options:
    """What the command line decides for every lesson (a notebook gets the defaults)."""

    device: str = "auto"
    run_name: str | None = None  # the lesson being run (a notebook tells by its folder)
    runs_dir: Path | None = None
    data_dir: Path | None = None
    gpu_metrics: bool = True


_cli: Options | None = None  # set by the runner while it runs a lesson's cells
_current: LessonRun | None = None  # the lesson the last `open_lesson` opened


@contextmanager
def cli_options(options: Options):
    """While the runner executes a lesson: ``open_lesson`` takes these instead of defaults."""
    global _cli
    previous, _cli = _cli, options
    try:
        yield
    finally:
        _cli = previous


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise LabUsageError(
            "--device cuda was asked for but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "use --device cpu, or check the driver with `invoke doctor`"
        )
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def new_run_dir(run_name: str, root: Path | None = None) -> Path:
    """``<runs>/<NN_name>/<timestamp>``; a fresh folder per run, never reused."""
    base = (root or default_runs_dir()) / run_name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    path = base / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = base / f"{stamp}-{suffix}"
    path.mkdir(parents=True)
    return path


@dataclass
class LessonRun:
    """One open lesson: where to compute, where to log, and the claims checked so far."""

    name: str
    device: torch.device
    log_dir: Path
    data_dir: Path
    writer: object  # torch.utils.tensorboard.SummaryWriter
    checks: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    _sampler: GpuSampler | None = None
    closed: bool = False

    def flush(self) -> None:
        if not self.closed:
            self.writer.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._sampler is not None:
            self._sampler.__exit__(None, None, None)
        self.writer.flush()
        self.writer.close()

    def done(self) -> None:
        """The lesson's last cell: flush the run and say what was verified."""
        self.close()
        print(f"[{self.name}] done: {len(self.checks)} claims checked, run in {self.log_dir}")

    def discard(self) -> None:
        """Remove the run: the lesson stopped before teaching anything (a missing dataset)."""
        self.close()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        with suppress(OSError):
            self.log_dir.parent.rmdir()  # only when no earlier run is in there


def open_lesson(
    run_name: str | None = None, *, device: str | None = None, datasets: tuple = ()
) -> LessonRun:
    """Open the lesson's run ``<runs>/<NN_name>/<timestamp>``. Which lesson: the one the
    runner runs, or in a notebook the folder it sits in (``07_custom_autograd_function/``,
    the course's or the learner's copy of it), so a lesson never types its own name.
    ``datasets`` are checked first, so a missing one stops the lesson with the command that
    fetches it and leaves no empty run behind. Re-running this cell in a notebook closes the
    previous run and starts a new one."""
    global _current
    from torch.utils.tensorboard import SummaryWriter

    from lab.data import require_dataset

    options = _cli or Options()
    run_name = run_name or options.run_name or notebook_lesson()
    chosen = pick_device(device or options.device)
    data_root = Path(options.data_dir) if options.data_dir else default_data_dir()
    for name in datasets:
        require_dataset(name, data_root)
    if _current is not None:
        _current.close()
    _use_headless_backend()
    log_dir = new_run_dir(run_name, options.runs_dir)
    writer = SummaryWriter(log_dir=str(log_dir), flush_secs=2)
    lesson = LessonRun(run_name, chosen, log_dir, data_root, writer)
    if options.gpu_metrics:
        # GPU utilization/memory/power of the lesson's own device; a no-op on the CPU.
        lesson._sampler = GpuSampler(writer, device=chosen, enabled=True)
        lesson._sampler.__enter__()
    _current = lesson
    _flush_after_each_cell()
    from lab import classroom

    classroom.report_progress()  # on the classroom hub: the teacher sees the lesson run
    print(f"[{run_name}] device={chosen} torch={torch.__version__} run={log_dir}")
    return lesson


def notebook_lesson() -> str:
    """The lesson a notebook kernel runs, from its folder's name: Jupyter starts the kernel in
    the notebook's folder and names the notebook in ``JPY_SESSION_NAME``."""
    from lab.course import FOLDER_RE

    candidates = []
    if os.environ.get("JPY_SESSION_NAME"):
        candidates.append(Path(os.environ["JPY_SESSION_NAME"]).parent.name)
    candidates.append(Path.cwd().name)
    for name in candidates:
        if FOLDER_RE.match(name):
            return name
    raise LabUsageError(
        f"open_lesson() cannot tell which lesson this is: the notebook's folder ({Path.cwd()}) "
        "is not a lesson's (NN_name); pass the lesson's name, e.g. "
        'open_lesson("07_custom_autograd_function")'
    )


def current() -> LessonRun | None:
    return _current


def check(condition: bool, claim: str) -> None:
    """A lesson's claim, verified where it is made (kept under ``python -O``, unlike
    ``assert``): prints ``✓ claim``, or stops the lesson with ``lesson claim failed``."""
    if not bool(condition):
        raise AssertionError(f"lesson claim failed: {claim}")
    print(f"  ✓ {claim}")
    if _current is not None:
        _current.checks.append(claim)
        _current.flush()


def _picture(tag: str, log, shown, described: str) -> None:
    # One way for every picture: into the open run (``log(writer)``) so the terminal run has
    # it in TensorBoard's Images tab, then ``shown()`` under the cell in a notebook, or the
    # line ``described`` otherwise.
    if _current is not None and not _current.closed:
        log(_current.writer)
        _current.figures.append(tag)
        _current.flush()
    if in_notebook():
        from IPython.display import display

        display(shown())
    else:
        print(f"  {described}")


def show(fig, tag: str) -> None:
    """A matplotlib figure: under the cell (as a PNG), and in the run as ``tag``."""
    import matplotlib.pyplot as plt

    _picture(
        tag,
        lambda w: w.add_figure(tag, fig, close=False),
        lambda: _png_for_display(figure_png(fig)),
        f"[figure] {tag}",
    )
    plt.close(fig)


def figure_png(fig) -> bytes:
    """The figure drawn as a PNG by matplotlib itself. A kernel shows a bare figure as a PNG
    only under the inline backend; with ``MPLBACKEND=Agg`` (servers, CI) it would show the
    text "<Figure size 640x360 with 1 Axes>", so the picture is made here, whatever the
    backend, the way the inline backend draws it."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def show_image(png: bytes, tag: str, shown=None) -> None:
    """A PNG (Graphviz's drawing of a graph, say): under the cell, and in the run as ``tag``.
    ``shown``: what to display under the cell instead (an interactive view of the picture)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    _picture(
        tag,
        lambda writer: writer.add_image(tag, pixels, 0, dataformats="HWC"),
        shown or (lambda: _png_for_display(png)),
        f"[picture] {tag}: {pixels.shape[1]}×{pixels.shape[0]} PNG",
    )


def _png_for_display(png: bytes):
    from IPython.display import Image

    return Image(data=png, format="png")


def _flush_after_each_cell() -> None:
    # TensorBoard shows a notebook's run while it is open: flush when each cell finishes.
    if not in_notebook():
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or getattr(shell, "_lab_flush_hook", False):
        return
    shell.events.register("post_run_cell", lambda *_: _current and _current.flush())
    shell._lab_flush_hook = True
