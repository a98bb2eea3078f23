"""The stack from a user-namespaced engine: rootless dockerd, run by an unprivileged user who
owns the checkout. Inside the namespace that user is uid 0, so the checkout looks root-owned;
the lab must neither stop nor hand the user's files to a subordinate uid (what the old
entrypoint's chown did): lessons saved, work/ and data/ written, host ownership unchanged,
and nothing in the container holds a capability but PID 1.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import pytest
from support import e2e_stack as stack
from support import rootless
from support.ci_skip import skip_unless_ci

pytestmark = pytest.mark.e2e

LESSON07 = "07_custom_autograd_function/lesson.py"


@pytest.fixture(scope="module")
def engine(docker_engine):
    reason = rootless.problem()
    if reason:
        skip_unless_ci(reason)
    started = rootless.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def checkout(engine):
    """A checkout the rootless user owns, where that user can reach it (not under root's
    0700 pytest folder)."""
    base = Path(tempfile.mkdtemp(prefix="autograd-rootless-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield stack.make_checkout(base, engine.owner.pw_uid)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_rootless_engine_keeps_the_users_files_theirs(engine, checkout, images):
    rootless.load_images(engine, images, stack.IMAGES)
    owner = engine.owner.pw_uid
    lab = stack.Stack(
        project=f"labe2e{secrets.token_hex(4)}",
        workdir=checkout,
        token=secrets.token_hex(16),
        images=images,
        engine=engine.env,
    )
    try:
        lab.up()
        said = lab.compose("logs", "--no-color", "lab").stdout

        # a lesson saved from JupyterLab, a file of the learner's own in work/
        status, body = lab.jupyter_api(f"contents/{LESSON07}?type=file", token=lab.token)
        assert status == 200, body[:300]
        status, answer = lab.jupyter_save(
            LESSON07, {"type": "file", "format": "text", "content": "# saved rootless\n"}
        )
        assert status == 200, answer
        status, answer = lab.jupyter_save(
            "mine.py", {"type": "file", "format": "text", "content": "print('mine')\n"}
        )
        assert status in (200, 201), answer
        # a lab command run the way `invoke` runs it (exec, as root: it drops to the learner)
        written = lab.exec("lab", "python", "-m", "lab", "course", "status", check=True).stdout
        # and data/ written as the learner
        data = lab.exec(
            "lab",
            *("python", "-c", "open('/workspace/data/from-the-lab.txt', 'w').write('x')"),
            user="lab",
        )
        processes = lab.processes("lab")
    finally:
        lab.down(volumes=True)

    assert "rootless engine (uid 0 here is host uid" in said and "nothing is re-owned" in said
    assert data.returncode == 0, data.stderr
    assert "07_custom_autograd_function/lesson.py: yours" in written
    assert (checkout / "work" / LESSON07).read_text() == "# saved rootless\n"
    assert (checkout / "work" / "mine.py").read_text() == "print('mine')\n"
    assert (checkout / "data" / "from-the-lab.txt").read_text() == "x"
    # host ownership unchanged: the user's, every file, old and new (no subordinate uid)
    assert {p.stat().st_uid for p in checkout.rglob("*")} == {owner}
    # uid 0 of the namespace (the user), and no capability but tini's
    jupyter = [caps for uid, caps, command in processes.values() if "jupyter" in command]
    assert jupyter == [0]
    assert {uid for uid, _, _ in processes.values()} == {0}
