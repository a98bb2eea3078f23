"""Where the lab reads and writes. Stdlib only: used on the host and in the container."""

from __future__ import annotations

import os
from pathlib import Path


def runs_dir() -> Path:
    """TensorBoard runs root: ``$LAB_RUNS_DIR``, default ``./runs``."""
    return Path(os.environ.get("LAB_RUNS_DIR") or "runs")


def data_dir() -> Path:
    """Datasets root: ``$LAB_DATA_DIR``, default ``./data``."""
    return Path(os.environ.get("LAB_DATA_DIR") or "data")


def work_dir() -> Path:
    """The learner's own files (exercise copies, progress): ``$LAB_WORK_DIR``, default the
    checkout's ``work/`` — not the current folder, since a notebook kernel starts in the
    exercise's own folder. Bind-mounted into the container, so they outlive it."""
    configured = os.environ.get("LAB_WORK_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / "work"
