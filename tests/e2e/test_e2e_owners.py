"""Any host user: from a checkout owned by root (a cloud VM's default login) or by uid 1001,
plain `docker compose up` gives a lab where the learner saves lessons, downloads data and runs
a lesson, with no chown by hand, and no process but PID 1 (tini) runs as root. From a share
whose files all look root-owned (Docker Desktop's virtiofs on a Mac, a Windows drive), the
lab starts, the learner saves, and the files stay the host user's. (A rootless engine:
test_e2e_rootless.py.)

The synthetic-data server runs on this host, bound to the gateway address of the stack's own
compose network: the lab container reaches it there, and nothing outside this host can.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess

import pytest
from support import e2e_stack as stack
from support.ci_skip import skip_unless_ci
from support.dl_server import FileServer
from support.dl_support import SYNTHETIC, write_registry

pytestmark = pytest.mark.e2e

LESSON07 = "07_custom_autograd_function/lesson.py"  # the learner's copy, in work/
MARK = "Saved through the Jupyter contents API"


def _save_lesson_as_jupyterlab_does(lab: stack.Stack, note: str) -> None:
    status, body = lab.jupyter_api(f"contents/{LESSON07}?type=notebook", token=lab.token)
    assert status == 200, body[:300]
    notebook = json.loads(body)["content"]
    notebook["cells"].append(
        {"cell_type": "markdown", "id": "e2e-saved", "metadata": {}, "source": note}
    )
    status, answer = lab.jupyter_save(
        LESSON07, {"type": "notebook", "format": "json", "content": notebook}
    )
    assert status == 200, answer


@pytest.mark.parametrize("owner", [0, 1001], ids=["root-checkout", "uid1001-checkout"])
def test_a_checkout_of_any_owner_gives_a_writable_lab_without_root(fresh_stack, owner):
    if os.geteuid() != 0:
        skip_unless_ci("checkouts owned by other users can only be made as root")
    lab = fresh_stack(owner)
    # A root-owned checkout gets the image's user: Jupyter never runs as root.
    learner = stack.LAB_UID if owner == 0 else owner
    lab.up()

    # 1. A lesson saved from JupyterLab lands in the checkout, written by the learner.
    note = f"{MARK} (checkout owner {owner})."
    _save_lesson_as_jupyterlab_does(lab, note)
    saved = lab.workdir / "work" / LESSON07
    assert note in saved.read_text()
    assert saved.stat().st_uid == learner
    status, answer = lab.jupyter_save(
        "mine.py", {"type": "file", "format": "text", "content": "print('mine')\n"}
    )
    assert status in (200, 201), answer
    assert (lab.workdir / "work" / "mine.py").stat().st_uid == learner

    # 2. `invoke download-data --registry` inside the container, from a local mirror.
    with FileServer(SYNTHETIC, host=lab.gateway()) as server:
        write_registry(lab.workdir / "data" / "e2e-registry.toml", [server.url("a")])
        result = lab.invoke("download-data", "--registry", "data/e2e-registry.toml")
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert server.stats.requests > 0
    assert "running in the lab container" in output
    mnist = lab.workdir / "data" / "MNIST" / "raw"
    assert sorted(path.name for path in mnist.iterdir()), output
    assert {path.stat().st_uid for path in mnist.iterdir()} == {learner}

    # 3. `invoke lesson 07` in the container, the saved lesson included.
    result = lab.invoke("lesson", "07")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "running in the lab container" in output
    assert "[07_custom_autograd_function] done:" in output
    assert "running your edited copy /workspace/work/07_custom_autograd_function" in output

    # The checkout's lab/ (mounted read-only) is exactly as it was: owner unchanged.
    assert {p.stat().st_uid for p in (lab.workdir / "lab").rglob("*")} == {owner}

    # 4. Nothing but tini runs as root; everything else is the learner.
    uids = lab.process_uids("lab")
    assert uids[1] == 0
    assert {pid: uid for pid, uid in uids.items() if pid != 1} == {
        pid: learner for pid in uids if pid != 1
    }


def _save_lesson_and_a_file(lab: stack.Stack) -> str:
    """What a learner does in JupyterLab: edit and save their copy of lesson 07, make a
    file of their own in work/. Returns the note saved into the lesson."""
    note = f"{MARK} ({lab.project})."
    _save_lesson_as_jupyterlab_does(lab, note)
    status, answer = lab.jupyter_save(
        "mine.py", {"type": "file", "format": "text", "content": "print('mine')\n"}
    )
    assert status in (200, 201), answer
    return note


# Shares whose files all show as root's, as the lab container sees them. bindfs plays them
# over a checkout owned by uid 1001 (the user on the "host"), and makes what is created
# through them that user's, as Docker Desktop does.
SHARES = {
    # Docker Desktop on macOS (virtiofs): chown is ignored and the files' modes stay, so only
    # root may write (docker/for-mac#6243, #6459)
    "virtiofs": ("--chown-ignore", "--chgrp-ignore"),
    # Docker Desktop on Windows, a C:\\ path: open to everyone, chown refused
    "windows-drive": ("--perms=a+rwX", "--chmod-ignore", "--chown-deny", "--chgrp-deny"),
}
HOST_USER = 1001


@pytest.fixture
def share(request, tmp_path_factory):
    """(the checkout as the host has it, the mount the lab is started from)."""
    if os.geteuid() != 0:
        skip_unless_ci("mounting a bindfs share needs root")
    if shutil.which("bindfs") is None:
        skip_unless_ci("bindfs is not installed (apt-get install bindfs)")
    base = tmp_path_factory.mktemp("share")
    source, mount = base / "source", base / "mount"
    source.mkdir()
    mount.mkdir()
    stack.make_checkout(source, HOST_USER)
    subprocess.run(
        [
            *("bindfs", "--force-user=0", "--force-group=0"),
            *(f"--create-for-user={HOST_USER}", f"--create-for-group={HOST_USER}"),
            *SHARES[request.param],
            *(str(source), str(mount)),
        ],
        check=True,
    )
    try:
        yield source, mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


@pytest.mark.parametrize(
    ("share", "learner"),
    [("virtiofs", 0), ("windows-drive", stack.LAB_UID)],
    indirect=["share"],
)
def test_a_share_showing_every_file_as_roots_still_gives_a_writable_lab(images, share, learner):
    """The entrypoint never stops on a share that refuses or ignores chown, and never gives
    the user's files away: it runs as uid 1000 where that can write, else as uid 0 without
    capabilities; what the learner saves belongs to the user on the host."""
    source, mount = share
    assert {p.stat().st_uid for p in mount.rglob("*")} == {0}  # as the lab sees them
    lab = stack.Stack(
        project=f"labe2e{secrets.token_hex(4)}",
        workdir=mount,
        token=secrets.token_hex(16),
        images=images,
    )
    try:
        lab.up()
        said = lab.compose("logs", "--no-color", "lab").stdout
        note = _save_lesson_and_a_file(lab)
        jupyter = [p for p in lab.processes("lab").values() if "jupyter" in p[2]]
    finally:
        lab.down(volumes=True)
    assert jupyter and {(uid, caps) for uid, caps, _ in jupyter} == {(learner, 0)}, said
    if learner == 0:
        assert "running as uid 0 without capabilities" in said
    else:
        assert "running as uid 1000" in said
    assert note in (source / "work" / LESSON07).read_text()
    assert (source / "work" / "mine.py").read_text() == "print('mine')\n"
    # host ownership unchanged: everything the user had, and everything new, is theirs
    assert {p.stat().st_uid for p in source.rglob("*")} == {HOST_USER}
    assert {p.stat().st_gid for p in source.rglob("*")} == {HOST_USER}
