"""A user-namespaced engine for the e2e tests: rootless dockerd, started as an unprivileged user.

Inside its user namespace uid 0 is that user, so a checkout the user owns looks root-owned
to the lab's entrypoint: the case where it used to chown the learner's files to a subordinate
uid. Needs root (to start it as another user) and what Docker's rootless mode needs:
``dockerd-rootless.sh`` (Debian's docker.io ships it in /usr/share/docker.io/contrib),
rootlesskit, slirp4netns, newuidmap/newgidmap (uidmap) with subordinate ids for the user, and
a /dev/net/tun that user may open (.ci/run installs and sets all of it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

USER = "autograd-rootless"
SCRIPT_DIRS = ("/usr/share/docker.io/contrib", "/usr/bin", "/usr/local/bin")
NEEDS = ("rootlesskit", "slirp4netns", "newuidmap", "newgidmap")


def problem() -> str | None:
    """Why a rootless engine cannot be started here; None when it can."""
    if os.geteuid() != 0:
        return "starting rootless dockerd as another user needs root"
    if not any((Path(folder) / "dockerd-rootless.sh").exists() for folder in SCRIPT_DIRS):
        return "dockerd-rootless.sh is not installed (docker.io / docker-ce-rootless-extras)"
    missing = [tool for tool in NEEDS if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (packages rootlesskit, slirp4netns, uidmap)"
    tun = Path("/dev/net/tun")
    if not tun.exists() or tun.stat().st_mode & 0o6 != 0o6:
        return "/dev/net/tun is not open to other users (chmod 0666 /dev/net/tun)"
    return None


def user() -> pwd.struct_passwd:
    """The unprivileged user (made once, with subordinate uids and gids)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    found = pwd.getpwnam(USER)
    for table, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        if f"{USER}:" not in Path(table).read_text():
            subprocess.run(["usermod", flag, "231072-296607", USER], check=True)
    return found


@dataclass
class RootlessEngine:
    owner: pwd.struct_passwd
    runtime_dir: Path
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.runtime_dir}/docker.sock"}

    def docker(self, *args: str, **options) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], env=os.environ | self.env, **options)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def start(timeout: float = 120) -> RootlessEngine:
    """rootless dockerd as USER, its socket in a runtime dir of its own; the images it keeps
    (in USER's home) outlive it, so a later run need not load them again."""
    owner = user()
    runtime_dir = Path(f"/tmp/autograd-rootless-run-{owner.pw_uid}")
    shutil.rmtree(runtime_dir, ignore_errors=True)
    runtime_dir.mkdir(mode=0o700)
    os.chown(runtime_dir, owner.pw_uid, owner.pw_gid)
    path = ":".join([*SCRIPT_DIRS, "/usr/sbin", "/sbin", "/bin"])
    env = {
        "HOME": owner.pw_dir,
        "USER": USER,
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "PATH": path,
    }
    log = (runtime_dir / "dockerd.log").open("w")
    os.chown(log.name, owner.pw_uid, owner.pw_gid)
    process = subprocess.Popen(
        [
            *("setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups"),
            *("dockerd-rootless.sh", "--data-root", f"{owner.pw_dir}/.local/share/docker"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine = RootlessEngine(owner, runtime_dir, process)
    deadline = time.monotonic() + timeout
    while engine.docker("info", capture_output=True).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            tail = (runtime_dir / "dockerd.log").read_text(errors="replace")[-3000:]
            engine.stop()
            raise RuntimeError(f"rootless dockerd did not come up:\n{tail}")
        time.sleep(0.5)
    return engine


def load_images(engine: RootlessEngine, images: dict[str, str], tags: dict[str, str]) -> None:
    """Give the rootless engine the images the root engine built (``{service: image ID}``),
    under compose.yaml's tags; an image it already holds (same ID) is not copied again."""
    for service, image in images.items():
        held = engine.docker("image", "inspect", "-f", "{{.Id}}", image, capture_output=True)
        if held.returncode != 0:
            carrier = f"autograd-lab/rootless-e2e:{service}"
            subprocess.run(["docker", "tag", image, carrier], check=True)
            try:
                save = subprocess.Popen(["docker", "save", carrier], stdout=subprocess.PIPE)
                engine.docker("load", stdin=save.stdout, capture_output=True, check=True)
                assert save.wait() == 0, f"docker save {carrier} failed"
            finally:
                subprocess.run(["docker", "rmi", carrier], capture_output=True)
        engine.docker("tag", image, tags[service], check=True)
    engine.docker("image", "prune", "--force", capture_output=True)  # what a retag left behind
