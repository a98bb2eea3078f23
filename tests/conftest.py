"""Shared fixtures. Every test runs with its own runs/, data/ and work/ so nothing leaks between
tests."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest


def pytest_configure(config):
    # Started in the background by a non-interactive shell (`cmd &`), the suite inherits
    # SIGINT ignored, and so would every Python it starts: no KeyboardInterrupt anywhere, and
    # the Ctrl-C tests would test nothing. A terminal's Ctrl-C, whoever started it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("LAB_RUNS_DIR", str(path))
    return path


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("LAB_DATA_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def _work_dir(tmp_path, monkeypatch) -> Path:
    """The learner's copies and progress go to a scratch work dir, never the checkout's work/
    (whose edited lesson copies `lab lesson` would otherwise run)."""
    monkeypatch.setenv("LAB_WORK_DIR", str(tmp_path / "work"))
    return tmp_path / "work"
