"""`lab lesson`: runs lessons by number/name/all, exits 2 on bad input, leaves TensorBoard runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from lab.cli import main
from lab.course import all_lessons


def run_cli(*args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_unknown_lesson_exits_2_listing_valid_ones():
    result = run_cli("lesson", "99")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, "one line, no traceback"
    assert "unknown lesson '99'" in result.stderr
    assert "07_custom_autograd_function" in result.stderr


def test_lesson_without_name_exits_2(capsys):
    assert main(["lesson"]) == 2
    assert "`list`" in capsys.readouterr().err


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


def test_lesson_all_runs_every_lesson_and_logs_each(runs_dir, data_dir, monkeypatch, capsys):
    """`lab lesson all`: exit 0 and an event file for every lesson (data lessons on tiny data)."""
    from support.synthetic import (
        install_cifar,
        install_hymenoptera,
        install_mnist,
        trust_synthetic_cifar,
    )

    install_mnist(data_dir), install_cifar(data_dir), install_hymenoptera(data_dir)
    trust_synthetic_cifar(monkeypatch)
    assert main(["lesson", "all", "--device", "cpu", "--dry-run"]) == 0
    for lesson in all_lessons():
        run_dirs = list((runs_dir / lesson.run_name).iterdir())
        assert len(run_dirs) == 1, lesson.run_name
        events = list(run_dirs[0].glob("events.out.tfevents*"))
        assert events and events[0].stat().st_size > 0, lesson.run_name
    out = capsys.readouterr().out
    assert f"{len(all_lessons())} lessons passed" in out
    for lesson in all_lessons():  # each lesson's time is printed
        assert f"passed   {lesson.run_name}" in out


def test_lesson_all_skips_lessons_without_data_and_says_how_to_fetch_it(runs_dir, data_dir, capsys):
    """No datasets at all: every autograd lesson runs, each data lesson is listed as skipped
    with the command that fetches its dataset, no empty runs are left, and the exit is 0."""
    needs_data = {lesson.run_name for lesson in DATA_LESSONS}
    assert needs_data, "the data lessons declare their datasets in open_lesson"
    assert main(["lesson", "all", "--device", "cpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for lesson in all_lessons():
        if lesson.run_name in needs_data:
            assert f"skipped  {lesson.run_name}" in out
            assert not (runs_dir / lesson.run_name).exists()
        else:
            assert f"passed   {lesson.run_name}" in out
    assert "`invoke download-data --dataset mnist`" in out
    assert f"{len(needs_data)} skipped (data missing)" in out


def declared_datasets(lesson) -> tuple[str, ...]:
    """What the lesson's ``open_lesson(..., datasets=(...))`` asks for (read, not run)."""
    match = re.search(r"open_lesson\([^)]*datasets=\(([^)]*)\)", lesson.path.read_text())
    return tuple(re.findall(r"[\"']([^\"']+)[\"']", match.group(1))) if match else ()


DATA_LESSONS = [lesson for lesson in all_lessons() if declared_datasets(lesson)]


@pytest.mark.parametrize("lesson", DATA_LESSONS, ids=lambda lesson: lesson.run_name)
def test_a_missing_dataset_is_one_line_and_leaves_no_run_and_no_data(
    lesson, runs_dir, data_dir, capsys
):
    dataset = declared_datasets(lesson)[0]
    assert main(["lesson", lesson.number, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"invoke download-data --dataset {dataset}" in err
    assert err.startswith(f"lab lesson: dataset {dataset!r} is missing")
    assert not (runs_dir / lesson.run_name).exists()
    assert not list(data_dir.iterdir()), "a stopped lesson wrote nothing into the data dir"
