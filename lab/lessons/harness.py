"""What every lesson shares: arguments, device choice, its TensorBoard run, and checks.

This module imports torch; host-side code must not import it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from lab.errors import LabError
from lab.gpu.sampler import GpuSampler
from lab.paths import runs_dir


class LabUsageError(LabError):
    """A lesson option that cannot be honoured, e.g. ``--device cuda`` without a GPU."""


def lesson_parser(description: str | None, data: bool = False) -> argparse.ArgumentParser:
    """The options every lesson understands (``data``: it reads datasets); a lesson may add more."""
    parser = argparse.ArgumentParser(
        description=(description or "").strip().splitlines()[0] if description else None
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where tensors live (default: auto = cuda when available, else cpu)",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help="TensorBoard runs root (default: $LAB_RUNS_DIR or ./runs)",
    )
    parser.add_argument(
        "--no-gpu-metrics",
        action="store_true",
        help="do not sample GPU utilization/memory/power into the run",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="a tiny version of the lesson (few steps/batches), for a quick check",
    )
    if data:
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="datasets root (default: $LAB_DATA_DIR or ./data)",
        )
    return parser


def parse_lesson_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    # Inside a Jupyter kernel sys.argv holds the kernel's own flags (-f kernel.json), not ours.
    if argv is None and "ipykernel" in sys.modules:
        argv = []
    return parser.parse_args(argv)


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
    base = (root or runs_dir()) / run_name
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
    """Handed to a lesson's body: where to compute, and where to log."""

    name: str
    device: torch.device
    log_dir: Path
    writer: object  # torch.utils.tensorboard.SummaryWriter
    args: argparse.Namespace
    checks: list[str] = field(default_factory=list)

    def check(self, condition: bool, claim: str) -> None:
        """Assert one claim the lesson teaches, and say so."""
        check(condition, claim)
        self.checks.append(claim)


def check(condition: bool, claim: str) -> None:
    """A lesson's claim, verified as it runs (kept under ``python -O``, unlike ``assert``)."""
    if not condition:
        raise AssertionError(f"lesson claim failed: {claim}")
    print(f"  ✓ {claim}")


@contextmanager
def lesson_run(run_name: str, args: argparse.Namespace) -> Iterator[LessonRun]:
    """Open the lesson's TensorBoard run; on exit, flush it so TensorBoard sees it at once."""
    from torch.utils.tensorboard import SummaryWriter

    device = pick_device(args.device)
    log_dir = new_run_dir(run_name, args.runs_dir)
    writer = SummaryWriter(log_dir=str(log_dir), flush_secs=5)
    run = LessonRun(run_name, device, log_dir, writer, args)
    print(f"[{run_name}] device={device} torch={torch.__version__} run={log_dir}")
    try:
        # GPU utilization/memory/power into the same run; a no-op without an NVIDIA GPU.
        with GpuSampler(writer, device=device, enabled=not getattr(args, "no_gpu_metrics", False)):
            yield run
    except SystemExit:
        # stopped before teaching anything (a missing dataset, a bad option): leave no
        # empty run behind for TensorBoard to list
        writer.close()
        shutil.rmtree(log_dir, ignore_errors=True)
        with suppress(OSError):
            log_dir.parent.rmdir()  # only when no earlier run is in there
        raise
    finally:
        writer.flush()
        writer.close()
    print(f"[{run_name}] done: {len(run.checks)} claims checked")


def run_main(
    run_name: str,
    body: Callable[[LessonRun], None],
    argv: Sequence[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> LessonRun:
    """A lesson's ``main``: parse its options, open its run ``<runs>/<run_name>/...``, run it.

    The run name is passed explicitly (not derived from ``__file__``): a notebook kernel
    running the lesson has no ``__file__``.
    """
    args = parse_lesson_args(parser or lesson_parser(None), argv)
    with lesson_run(run_name, args) as run:
        body(run)
    return run
