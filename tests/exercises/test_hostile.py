"""Careless and hostile answers: whatever the learner's code does (loop forever, exit, print
without end, change torch's global state), `lab check` and the notebook's check cell say one
line per exercise, name the exercise, and give the right exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from support.exercises import solution_source, solve

from lab.cli import main
from lab.course import find
from lab.exercises import progress
from lab.exercises.checking import FAILED, PASSED, check_exercise, evaluate

ROOT = Path(__file__).resolve().parents[2]
LESSON07 = find("07")
STUB_07_1 = """class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        raise NotImplementedError("07.1: write forward")
"""


def lab(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def copy_with(work: Path, forward_07_1: str, top_of_cell: str = "") -> Path:
    """Lesson 07's copy: 07.2 solved, 07.1's forward replaced by ``forward_07_1`` (its
    backward the solution's), ``top_of_cell`` above 07.1's class."""
    copy = work / LESSON07.run_name / "exercises.py"
    copy.parent.mkdir(parents=True, exist_ok=True)
    text = solve(solve(LESSON07.exercises_path.read_text(encoding="utf-8"), "07.1"), "07.2")
    body = "\n".join("        " + line for line in forward_07_1.strip().splitlines())
    start = text.index("    def forward(ctx, x):\n") + len("    def forward(ctx, x):\n")
    end = text.index("        return s\n", start) + len("        return s\n")
    text = text[:start] + body + "\n" + text[end:]
    text = text.replace("class MySigmoid", top_of_cell + "class MySigmoid", 1)
    copy.write_text(text, encoding="utf-8")
    return copy


def lines_for(out: str) -> dict[str, str]:
    """The result line of each exercise in `lab check`'s output."""
    found = {}
    for line in out.splitlines():
        for mark in ("✓ ", "✗ ", "· "):
            if line.startswith(mark):
                key = line[2:].split(":")[0].split()[0]
                assert key not in found, f"two lines for {key}:\n{out}"
                found[key] = line
    return found


SIGMOID = "s = torch.sigmoid(x)\nctx.save_for_backward(s)\nreturn s"


@pytest.mark.parametrize(
    ("forward", "expected"),
    [
        ("while True:\n    pass", "07.1: still running after 3 s while checking `MySigmoid`"),
        ("import os\nos._exit(3)", "07.1: the check's process ended while checking `MySigmoid` "),
        ("import sys\nsys.exit(0)", "07.1: MySigmoid.forward called sys.exit(0)"),
        ("raise KeyboardInterrupt", "07.1: MySigmoid.forward raised KeyboardInterrupt"),
    ],
    ids=["endless-loop", "os._exit", "sys.exit", "KeyboardInterrupt"],
)
def test_a_hostile_answer_is_one_line_and_the_next_exercise_is_still_checked(
    capsys, _work_dir, monkeypatch, forward, expected
):
    monkeypatch.setenv("LAB_CHECK_TIME_LIMIT", "3")
    copy_with(_work_dir, forward)
    status, out, err = lab(capsys, "check", "07")
    assert status == 1, out + err
    lines = lines_for(out)
    assert set(lines) == {"07.1", "07.2"}, out
    assert expected in lines["07.1"]
    assert lines["07.2"].startswith("✓ 07.2 passed")
    assert "Traceback" not in out + err
    assert progress.load()["exercises"]["07.1"]["last"] == "failed"


def test_an_exit_in_a_cell_of_the_copy_is_said_at_that_cell(capsys, _work_dir):
    copy = copy_with(_work_dir, SIGMOID, top_of_cell="import os\nos._exit(5)\n\n\n")
    line = 1 + copy.read_text(encoding="utf-8").splitlines().index("import os")
    status, out, _ = lab(capsys, "check", "07")
    assert status == 1
    lines = lines_for(out)
    for key in ("07.1", "07.2"):  # 07.2's cells come after that one: a notebook never gets there
        assert (
            f"ended in the cell at line {line} of exercises.py with exit status 5" in (lines[key])
        )


def test_huge_output_is_cut_short_and_the_verdict_still_comes(capsys, _work_dir):
    flood = 'for i in range(100000):\n    print("x" * 400, i)\n\n\n'
    copy_with(_work_dir, 'print("in forward")\n' + SIGMOID, top_of_cell=flood)
    status, out, _ = lab(capsys, "check", "07")
    assert status == 0, out
    assert len(out.splitlines()) < 2 * 25
    assert "more of your code's output, not shown" in out
    assert max(len(line) for line in out.splitlines()) < 400
    assert lines_for(out)["07.1"].startswith("✓ 07.1 passed")


def test_global_state_the_copy_changes_neither_fails_a_right_answer_nor_leaks(capsys, _work_dir):
    state = (
        "torch.set_grad_enabled(False)\n"
        "torch.set_default_dtype(torch.float64)\n"
        "torch.autograd.set_detect_anomaly(True)\n"
        "INFERENCE = torch.inference_mode()\n"  # kept: the mode lasts as long as the object
        "INFERENCE.__enter__()\n"
        "torch.manual_seed(123)\n"
    )
    # at the top of 07.1's cell, and (but inference mode) inside its forward, which the check
    # calls: inference mode inside forward would make its output untrackable, a real mistake
    inside = state.replace("INFERENCE.__enter__()\n", "") + SIGMOID
    copy_with(_work_dir, inside, top_of_cell=state + "\n\n")
    status, out, _ = lab(capsys, "check", "07")
    assert status == 0, out
    assert set(lines_for(out)) == {"07.1", "07.2"}


def test_global_state_changed_in_this_process_is_ignored_and_put_back():
    namespace = {"torch": torch}
    exec(solution_source("07.2"), namespace)  # noqa: S102 - the learner's code under test
    with torch.inference_mode():
        torch.set_default_dtype(torch.float64)
        torch.autograd.set_detect_anomaly(True)
        try:
            result = evaluate("07.2", namespace["MulAdd"])
            after = (
                torch.is_inference_mode_enabled(),
                torch.get_default_dtype(),
                torch.is_anomaly_enabled(),
            )
        finally:
            torch.set_default_dtype(torch.float32)
            torch.autograd.set_detect_anomaly(False)
    assert result.status == PASSED, result.message
    assert after == (True, torch.float64, True)


def test_an_answer_that_switches_state_off_does_not_fail_the_next_check():
    namespace = {"torch": torch}
    hostile = (
        "class MySigmoid(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        torch.set_grad_enabled(False)\n"
        "        torch.set_default_dtype(torch.float16)\n"
        "        return x\n"
        "    @staticmethod\n"
        "    def backward(ctx, g):\n"
        "        return g\n"
    )
    exec(hostile + solution_source("07.2"), namespace)  # noqa: S102 - the learner's code
    assert evaluate("07.1", namespace["MySigmoid"]).status == FAILED
    assert (torch.is_grad_enabled(), torch.get_default_dtype()) == (True, torch.float32)
    assert evaluate("07.2", namespace["MulAdd"]).status == PASSED


def test_a_copy_that_is_not_utf8_is_one_line(capsys, _work_dir):
    copy = copy_with(_work_dir, SIGMOID)
    copy.write_bytes(copy.read_bytes().replace(b"# %% [markdown]", b"# %% \xff\xfe", 1))
    status, out, err = lab(capsys, "check", "07")
    assert status == 2
    assert err.strip().count("\n") == 0 and "is not UTF-8 text (byte 0xff" in err
    assert "save it as UTF-8" in err and "Traceback" not in out + err


def test_a_folder_where_the_copy_should_be_is_one_line(capsys, _work_dir):
    (_work_dir / LESSON07.run_name / "exercises.py").mkdir(parents=True)
    status, out, err = lab(capsys, "check", "07")
    assert status == 2
    assert err.strip().count("\n") == 0 and "is a folder, not your copy" in err
    assert "Traceback" not in out + err


def test_check_one_exercise_or_an_unknown_one(capsys, _work_dir):
    copy_with(_work_dir, "while True:\n    pass")
    status, out, _ = lab(capsys, "check", "07.2")
    assert status == 0
    assert set(lines_for(out)) == {"07.2"} and "1/1 of exercise 07.2 passed" in out
    status, out, err = lab(capsys, "check", "07.9")
    assert status == 2 and out == ""
    assert "no exercise '07.9'" in err and err.strip().count("\n") == 0


def _wait_for(path: Path, process: subprocess.Popen | None = None) -> int:
    deadline = time.monotonic() + 120
    while not (path.exists() and path.read_text()):
        assert process is None or process.poll() is None, "ended before it got there"
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return int(path.read_text())


def _looping(marker: Path) -> str:
    return f"import os\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\nwhile True:\n    pass"


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_during_lab_check_names_the_exercise_and_stops(tmp_path, _work_dir):
    marker = tmp_path / "looping"
    copy_with(_work_dir, _looping(marker))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAB_WORK_DIR": str(_work_dir)}
    env["LAB_CHECK_TIME_LIMIT"] = "600"  # Ctrl-C, not the limit, on a busy machine too
    checker = subprocess.Popen(
        [sys.executable, "-m", "lab", "check", "07"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: Ctrl-C goes to the whole group, like a terminal's
    )
    try:
        looping = _wait_for(marker, checker)
        os.killpg(checker.pid, signal.SIGINT)
        out, _ = checker.communicate(timeout=60)
    finally:
        if checker.poll() is None:
            checker.kill()
    assert checker.returncode == 130, out
    assert "✗ 07.1: interrupted (Ctrl-C) while checking `MySigmoid`" in out
    assert "not checked: 07.2" in out and "Traceback" not in out
    assert _gone(looping), "the check's process outlived the interrupt"
    assert "07.1" not in progress.load()["exercises"]  # an interrupted check is not an attempt


def test_ctrl_c_in_the_notebooks_check_cell_names_the_exercise(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAB_CHECK_TIME_LIMIT", "600")  # Ctrl-C, not the limit, when busy
    marker = tmp_path / "looping"
    namespace = {"torch": torch}
    source = STUB_07_1.replace(
        'raise NotImplementedError("07.1: write forward")',
        _looping(marker).replace("\n", "\n        "),
    )
    exec(source, namespace)  # noqa: S102 - the learner's code under test

    def interrupt() -> None:
        _wait_for(marker)
        os.kill(os.getpid(), signal.SIGINT)  # the kernel's interrupt button

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        check_exercise("07.1", namespace["MySigmoid"])
    thread.join(timeout=60)
    assert "✗ 07.1: interrupted (Ctrl-C) while checking `MySigmoid`" in capsys.readouterr().out
    assert _gone(int(marker.read_text()))


def test_where_it_cannot_fork_the_check_runs_here_still_under_the_limit(
    monkeypatch, capsys, _work_dir
):
    # a kernel that initialized CUDA (a forked child could not use it), or no os.fork
    from lab.exercises import isolation

    monkeypatch.setattr(isolation, "can_fork", lambda: False)
    monkeypatch.setenv("LAB_CHECK_TIME_LIMIT", "2")
    namespace = {"torch": torch}
    exec(  # noqa: S102 - the learner's code under test
        STUB_07_1.replace('raise NotImplementedError("07.1: write forward")', "while True: pass")
        + solution_source("07.2"),
        namespace,
    )
    check_exercise("07.1", namespace["MySigmoid"])
    check_exercise("07.2", namespace["MulAdd"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("✗ 07.1: still running after 2 s while checking `MySigmoid`")
    assert out[1].startswith("✓ 07.2 passed")


def test_lab_check_in_this_process_keeps_the_limit_and_puts_back_what_it_changed(
    monkeypatch, capsys, _work_dir
):
    from lab.exercises import isolation

    monkeypatch.setattr(isolation, "can_fork", lambda: False)
    monkeypatch.setenv("LAB_CHECK_TIME_LIMIT", "2")
    copy = copy_with(_work_dir, SIGMOID, top_of_cell="while True:\n    pass\n\n\n")
    line = 1 + copy.read_text(encoding="utf-8").splitlines().index("while True:")
    cwd, main_module = os.getcwd(), sys.modules["__main__"]
    status, out, _ = lab(capsys, "check", "07.1")
    assert status == 1
    assert f"07.1: still running after 2 s in the cell at line {line} of exercises.py" in out
    assert (os.getcwd(), sys.modules["__main__"], isolation.COLLECTING) == (cwd, main_module, None)
    monkeypatch.setenv("LAB_CHECK_TIME_LIMIT", "0")  # no limit: where a debugger can run
    copy_with(_work_dir, SIGMOID)
    status, out, _ = lab(capsys, "check", "07")
    assert status == 0, out


def test_checks_first_loaded_under_the_learners_inference_mode_still_pass(_work_dir):
    # a fresh interpreter, so 07's checks (and their constants) are first imported here
    code = (
        "import torch\n"
        "from support.exercises import solution_source\n"
        "from lab.exercises.checking import check_exercise\n"
        "inference = torch.inference_mode()\n"
        "inference.__enter__()\n"
        "torch.set_default_dtype(torch.float64)\n"
        "namespace = {'torch': torch}\n"
        "exec(solution_source('07.1'), namespace)\n"
        "check_exercise('07.1', namespace['MySigmoid'])\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
        "LAB_WORK_DIR": str(_work_dir),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.stdout.startswith("✓ 07.1 passed"), done.stdout + done.stderr


def test_what_the_learners_code_starts_ends_with_its_check(tmp_path, capsys, _work_dir):
    marker = tmp_path / "sleeper"
    start = (
        "import subprocess, sys\n"
        "sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(marker)!r}, 'w').write(str(sleeper.pid))\n"
    )
    copy_with(_work_dir, start + SIGMOID)
    status, out, _ = lab(capsys, "check", "07.1")
    assert status == 0, out
    assert _gone(_wait_for(marker)), "a process the learner's code started outlived the check"
