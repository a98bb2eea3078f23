"""`lab exercise`, `lab check`, `lab hint`, `lab progress` as a learner uses them: the copy is
theirs (never overwritten), checks say what is wrong, progress survives a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.exercises import solve

from lab.cli import main
from lab.course import all_exercises, find
from lab.exercises import progress

ROOT = Path(__file__).resolve().parents[2]
LESSON07 = find("07")
TEMPLATE = LESSON07.exercises_path


def lab(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_exercise_makes_a_copy_and_never_overwrites_the_learners_edit(capsys, _work_dir):
    status, out, _ = lab(capsys, "exercise", "07")
    copy = _work_dir / LESSON07.run_name / TEMPLATE.name
    assert status == 0
    assert f"new copy: {copy}" in out
    assert copy.read_text(encoding="utf-8") == TEMPLATE.read_text(encoding="utf-8")

    edited = solve(copy.read_text(encoding="utf-8"), "07.1") + "\n# my notes\n"
    copy.write_text(edited, encoding="utf-8")
    status, out, _ = lab(capsys, "exercise", "7")
    assert status == 0
    assert "already there, left as it is" in out
    assert copy.read_text(encoding="utf-8") == edited
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no temp file left


def test_check_says_not_attempted_then_passes_and_records_progress(capsys, _work_dir):
    lab(capsys, "exercise", "07")
    copy = _work_dir / LESSON07.run_name / TEMPLATE.name
    status, out, err = lab(capsys, "check", "07")
    assert status == 1
    assert "· 07.1 not attempted yet: write `MySigmoid`" in out
    assert "Traceback" not in out + err
    assert progress.load()["exercises"] == {}  # an untouched stub is not an attempt

    wrong = solve(copy.read_text(encoding="utf-8"), "07.1").replace("exp(-x)", "exp(x)")
    copy.write_text(wrong, encoding="utf-8")
    status, out, _ = lab(capsys, "check", "07")
    assert status == 1
    assert "✗ 07.1: forward differs at index 0 (expected 0.04743, got 0.9526)" in out

    copy.write_text(solve(solve(wrong, "07.1"), "07.2"), encoding="utf-8")
    status, out, _ = lab(capsys, "check", "07")
    assert status == 0
    assert "✓ 07.1 passed" in out and "✓ 07.2 passed" in out
    assert "2/2 of exercises 07 passed" in out
    entry = progress.load()["exercises"]["07.1"]
    assert entry["attempts"] == 2 and entry["last"] == "passed" and entry["first_passed"]

    first = entry["first_passed"]
    lab(capsys, "check", "07")
    assert progress.load()["exercises"]["07.1"] == {**entry, "attempts": 3}
    assert progress.load()["exercises"]["07.1"]["first_passed"] == first


def test_a_syntax_error_in_the_copy_is_one_line_per_exercise(capsys, _work_dir):
    lab(capsys, "exercise", "07")
    copy = _work_dir / LESSON07.run_name / TEMPLATE.name
    copy.write_text(copy.read_text(encoding="utf-8").replace("def forward(ctx, x):", "def f("))
    status, out, err = lab(capsys, "check", "07")
    assert status == 1
    assert f"✗ 07.1: {copy.name} line" in out and "SyntaxError" in out
    assert "Traceback" not in out + err


def test_check_without_a_copy_says_how_to_make_one(capsys):
    status, _, err = lab(capsys, "check", "07")
    assert status == 2
    assert err.strip().endswith("`lab exercise 07` makes one")
    assert len(err.strip().splitlines()) == 1


def test_unknown_exercises_are_one_line_errors(capsys):
    status, _, err = lab(capsys, "exercise", "99")
    assert status == 2 and "no exercises for '99'" in err
    status, _, err = lab(capsys, "hint", "07.9")
    assert status == 2 and "no exercise '07.9'" in err


def test_hints_come_one_more_at_a_time(capsys):
    outputs = [lab(capsys, "hint", "07.1")[1] for _ in range(4)]
    assert [out.count("hint ") for out in outputs] == [1, 2, 3, 3]
    assert "hint 1/3 for 07.1: forward:" in outputs[0]
    assert "hint 2/3 for 07.1: The local derivative is s * (1 - s)." in outputs[1]
    assert "--solution" in outputs[2] and "--solution" not in outputs[1]
    assert progress.load()["exercises"]["07.1"]["hints_seen"] == 3


def test_the_solution_is_printed_only_when_asked(capsys, _work_dir):
    _, out, _ = lab(capsys, "exercise", "07")
    copy = (_work_dir / LESSON07.run_name / TEMPLATE.name).read_text(encoding="utf-8")
    assert "save_for_backward" not in copy.split("class MySigmoid", 1)[1].split("# %%")[0]
    assert "grad_output * s * (1 - s)" not in out + copy
    status, out, _ = lab(capsys, "exercise", "07", "--solution")
    assert status == 0
    assert "class MySigmoid(torch.autograd.Function)" in out
    assert "return grad_output * s * (1 - s)" in out


def test_exercise_list_names_every_exercise(capsys):
    _, out, _ = lab(capsys, "exercise", "--list")
    for key in ("01.1", "07.2", "09.1", "13.1", "15.1"):
        assert f"    {key}  " in out


def test_progress_table_has_lessons_run_and_exercises_passed(capsys, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for stamp in ("20261129-101010-000", "20261129-111111-000"):
        (runs / "07_custom_autograd_function" / stamp).mkdir(parents=True)
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs))
    progress.record("07.1", "failed")
    progress.record("07.1", "passed")
    status, out, _ = lab(capsys, "progress")
    assert status == 0
    lesson_row = next(row for row in out.splitlines() if row.startswith("07_custom"))
    assert lesson_row.split()[1] == "2"
    row = next(row for row in out.splitlines() if row.startswith("07.1"))
    assert row.split()[2] == "passed" and row.split()[-1] == "2"
    assert time.strftime("%Y-%m-%d") in row
    assert next(r for r in out.splitlines() if r.startswith("07.2")).split()[2:4] == [
        "not",
        "attempted",
    ]
    assert f"1/{len(all_exercises())} exercises passed" in out


def test_progress_survives_a_process_killed_mid_write(tmp_path, _work_dir):
    progress.record("01.1", "passed")
    before = progress.progress_file().read_text(encoding="utf-8")
    writing = tmp_path / "writing"
    # The child stops inside the write (its temp file written, not yet renamed) and is killed.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from lab.exercises import progress\n"
            "def stuck(fd):\n"
            f"    open({str(writing)!r}, 'w').close()\n"
            "    time.sleep(300)\n"
            "os.fsync = stuck\n"
            "progress.record('07.1', 'passed')\n",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), "LAB_WORK_DIR": str(_work_dir)},
    )
    try:
        deadline = time.monotonic() + 60
        while not writing.exists():
            assert child.poll() is None, "the writer ended before it was killed"
            assert time.monotonic() < deadline, "the writer never reached its write"
            time.sleep(0.05)
        assert any(p.name.startswith(".progress.json.") for p in _work_dir.iterdir())
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert progress.progress_file().read_text(encoding="utf-8") == before
    assert json.loads(before)["exercises"]["01.1"]["first_passed"]
    progress.record("07.1", "passed")  # the lock died with the killed process
    assert set(progress.load()["exercises"]) == {"01.1", "07.1"}


def test_unreadable_progress_is_a_one_line_error(capsys, _work_dir):
    _work_dir.mkdir(parents=True)
    progress.progress_file().write_text("{not json", encoding="utf-8")
    status, _, err = lab(capsys, "progress")
    assert status == 2
    assert "is not readable progress" in err and "move it aside" in err


def test_check_watch_checks_again_on_every_save(_work_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAB_WORK_DIR": str(_work_dir)}
    subprocess.run([sys.executable, "-m", "lab", "exercise", "07"], env=env, check=True)
    copy = _work_dir / LESSON07.run_name / TEMPLATE.name
    watcher = subprocess.Popen(
        [sys.executable, "-m", "lab", "check", "07", "--watch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True).start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 120
        while not any(text in line for line in lines):
            assert watcher.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)

    try:
        wait_for("watching for saves")
        copy.write_text(solve(solve(copy.read_text(), "07.1"), "07.2"), encoding="utf-8")
        wait_for("2/2 of exercises 07 passed")
        assert any("checking again" in line for line in lines)
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 130


def test_copy_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    from lab import files

    def no_links(*_):
        raise PermissionError("hard links not supported here")

    monkeypatch.setattr(files.os, "link", no_links)
    copy = tmp_path / LESSON07.run_name / TEMPLATE.name
    assert files.atomic_write(copy, TEMPLATE.read_bytes(), exclusive=True) is True
    assert copy.read_bytes() == TEMPLATE.read_bytes()
    copy.write_text("mine", encoding="utf-8")
    assert files.atomic_write(copy, TEMPLATE.read_bytes(), exclusive=True) is False
    assert copy.read_text(encoding="utf-8") == "mine"
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]


@pytest.mark.parametrize(
    "argv", [["exercise", "07"], ["exercise", "--list"], ["hint", "07.1"], ["progress"]]
)
def test_host_side_exercise_commands_do_not_import_torch(argv, _work_dir):
    code = (
        "import sys; from lab.cli import main; status = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'imported torch'; sys.exit(status)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAB_WORK_DIR": str(_work_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_the_learners_work_folder_is_ignored_by_git():
    # so a `git pull` of the lab never touches the learner's copies or progress
    done = subprocess.run(
        ["git", "check-ignore", "work/07_custom_autograd_function/exercises.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
