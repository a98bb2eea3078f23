"""The running stack, seen from outside: token, notebooks, lessons → TensorBoard, users, mounts."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from support import e2e_stack as stack

pytestmark = pytest.mark.e2e

LESSON07 = "07_custom_autograd_function/lesson.py"  # the learner's copy, in work/


def test_jupyter_refuses_requests_without_the_token(lab_stack):
    assert lab_stack.jupyter_api("contents")[0] in (401, 403)
    assert lab_stack.jupyter_api("contents", token="not-" + lab_stack.token)[0] in (401, 403)
    status, body = lab_stack.jupyter_api("contents", token=lab_stack.token)
    assert status == 200
    # JupyterLab opens on the learner's copies of the course, not the engine or the solutions
    listed = {entry["name"] for entry in json.loads(body)["content"]}
    assert {"00_interactive_playground", "07_custom_autograd_function"} <= listed, listed
    assert not listed & {"lab", "course", "lessons", "exercises"}, listed


def test_server_list_shows_the_token_to_the_container_user(lab_stack):
    # `invoke up` prints the tokenized URL from exactly this command.
    result = lab_stack.exec("lab", "jupyter", "server", "list", "--json", check=True)
    servers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [server["token"] for server in servers] == [lab_stack.token]
    logs = lab_stack.compose("logs", "--no-color", "lab").stdout
    assert f"http://127.0.0.1:{lab_stack.jupyter_port}/lab?token={lab_stack.token}" in logs


def test_contents_api_serves_lesson_07_as_a_notebook(lab_stack):
    status, body = lab_stack.jupyter_api(
        f"contents/{LESSON07}?type=notebook", token=lab_stack.token
    )
    assert status == 200, body[:300]
    model = json.loads(body)
    assert model["type"] == "notebook"
    cells = model["content"]["cells"]
    kinds = {cell["cell_type"] for cell in cells}
    assert kinds == {"markdown", "code"}, kinds
    assert cells[0]["cell_type"] == "markdown" and cells[0]["source"].startswith("# 07")
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", []), "the settings cell comes first"
    assert code[-1]["source"].strip() == "lesson.done()"


def test_a_course_edit_reaches_the_learners_copy_without_a_rebuild(lab_stack):
    # The course is bind-mounted: a new lesson folder on the host (a teacher's `git pull`)
    # becomes the learner's copy at the next `lab course sync` (every start runs one).
    folder = lab_stack.workdir / "lab" / "course" / "99_scratch_edit"
    folder.mkdir()
    (folder / "lesson.py").write_text(
        "# %% [markdown]\n# # 99 · Scratch\n\n# %%\nprint('edited on the host')\n"
    )
    try:
        lab_stack.exec("lab", "python", "-m", "lab", "course", "sync", user="lab", check=True)
        status, body = lab_stack.jupyter_api(
            "contents/99_scratch_edit/lesson.py?type=notebook", token=lab_stack.token
        )
        assert status == 200
        assert json.loads(body)["content"]["cells"][1]["source"] == "print('edited on the host')"
    finally:
        (folder / "lesson.py").unlink()
        folder.rmdir()


def test_lesson_run_in_the_container_shows_up_in_tensorboard(lab_stack, lesson07_in_container):
    seen = lesson07_in_container
    print(
        f"\nlesson 07 run {seen['run']} visible in TensorBoard {seen['latency_s']:.2f} s "
        f"after the lesson ended (target <= 5 s, see benchmarks/containers.py)"
    )
    assert "running in the lab container" in seen["output"]
    assert seen["run"].startswith("07_custom_autograd_function/")
    assert any(tag.endswith("/loss") for tag in seen["tags"]), seen["tags"]
    # The run lives in the named volume, written by the container user.
    listing = lab_stack.exec(
        "lab", "stat", "-c", "%u %n", f"/workspace/runs/{seen['run']}", check=True
    ).stdout.split()
    assert listing[0] == "1000"


@pytest.mark.parametrize("service", ["lab", "tensorboard"])
def test_no_process_but_pid_1_runs_as_root(lab_stack, service):
    # The lab starts as root only for its entrypoint, which drops to the checkout's owner
    # (uid 1000 here); TensorBoard never starts as root. tini, PID 1, stays root in the lab.
    uids = lab_stack.process_uids(service)
    assert 1 in uids and len(uids) >= 3, uids  # tini, the server, and our probe at least
    assert {pid: uid for pid, uid in uids.items() if uid == 0 and pid != 1} == {}
    assert set(uids.values()) - {0} == {stack.LAB_UID}
    comm = lab_stack.exec(service, "cat", "/proc/1/comm", check=True).stdout.strip()
    assert comm == "tini"


def test_tensorboard_cannot_write_the_runs_volume(lab_stack):
    # Even root inside the container cannot: the volume itself is mounted read-only.
    for user in (None, "0"):
        result = lab_stack.exec("tensorboard", "touch", "/runs/should-not-exist", user=user)
        assert result.returncode != 0
        assert "Read-only file system" in result.stderr
    listing = lab_stack.exec("lab", "ls", "/workspace/runs", check=True).stdout.split()
    assert "should-not-exist" not in listing


def test_lab_can_write_the_bind_mounted_data_folder(lab_stack):
    lab_stack.exec("lab", "touch", "/workspace/data/.written-by-lab", user="lab", check=True)
    assert (lab_stack.workdir / "data" / ".written-by-lab").exists()


def test_an_empty_token_still_starts_jupyter_with_a_random_one(images):
    """compose passes JUPYTER_TOKEN="" when .env has none: the lab must still demand one."""
    name = f"labe2e-notoken-{time.monotonic_ns()}"
    course = f"{stack.ROOT / 'lab'}:/opt/autograd-lab/lab:ro"  # without it start-lab stops
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "-e",
            "JUPYTER_TOKEN=",
            "-v",
            course,
            images["lab"],
        ],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 120
        servers = []
        while not servers and time.monotonic() < deadline:
            time.sleep(1)
            listed = subprocess.run(
                ["docker", "exec", name, "jupyter", "server", "list", "--json"],
                capture_output=True,
                text=True,
            )
            servers = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        assert len(servers) == 1, "jupyter did not start"
        token = servers[0]["token"]
        assert re.fullmatch(r"[0-9a-f]{48}", token), token
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
        assert f"/lab?token={token}" in logs
        probe = (
            "import urllib.request, urllib.error\n"
            "try: urllib.request.urlopen('http://127.0.0.1:8888/api/contents')\n"
            "except urllib.error.HTTPError as e: print(e.code)\n"
        )
        answer = subprocess.run(
            ["docker", "exec", name, "python", "-c", probe],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert answer in ("401", "403")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
