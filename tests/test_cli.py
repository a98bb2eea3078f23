"""`lab lesson`: runs lessons by number/name/all, exits 2 on bad input, leaves TensorBoard runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab.cli import main
from lab.lessons import all_lessons


def run_cli(*args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_unknown_lesson_exits_2_listing_valid_ones():
    result = run_cli("lesson", "99")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, "one line, no traceback"
    assert "unknown lesson '99'" in result.stderr
    assert "07_custom_autograd_function" in result.stderr


def test_lesson_without_name_exits_2(capsys):
    assert main(["lesson"]) == 2
    assert "--list" in capsys.readouterr().err


def test_cuda_requested_without_gpu_is_one_line_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    assert main(["lesson", "01", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "no CUDA GPU" in err


def test_one_lesson_by_name_writes_one_run(runs_dir):
    assert main(["lesson", "manual_gradient", "--device", "cpu"]) == 0
    runs = list((runs_dir / "01_manual_gradient").iterdir())
    assert len(runs) == 1
    assert any(p.name.startswith("events.out.tfevents") for p in runs[0].iterdir())


def test_lesson_all_runs_every_lesson_and_logs_each(tmp_path):
    """`lab lesson all` in a real process: exit 0 and an event file for every lesson."""
    from synthetic import install_cifar, install_hymenoptera, install_mnist

    data = tmp_path / "data"
    install_mnist(data), install_cifar(data), install_hymenoptera(data)
    runs = tmp_path / "runs"
    result = run_cli("lesson", "all", "--device", "cpu", "--dry-run",
                     env_extra={"LAB_RUNS_DIR": str(runs), "LAB_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr[-3000:]
    for lesson in all_lessons():
        run_dirs = list((runs / lesson.run_name).iterdir())
        assert len(run_dirs) == 1, lesson.run_name
        events = list(run_dirs[0].glob("events.out.tfevents*"))
        assert events and events[0].stat().st_size > 0, lesson.run_name
    assert f"{len(all_lessons())} lessons passed" in result.stdout
