"""In the lab container, ``python -m lab`` runs as the learner, never as a privileged user.

compose starts the lab container as root so that its entrypoint can pick the learner's uid
(docker/lab/lab-entrypoint), and ``docker compose exec`` (how ``invoke lesson`` reaches the
container) starts commands as that same root. Such a command is re-executed here as the lab
user, so lessons and downloads write files the learner owns. Where the entrypoint made the
learner uid 0 (root of a rootless engine's user namespace, or of a root-owned share), the
command stays uid 0 but gives up every capability, as the entrypoint's own processes do.
On the host (no ``LAB_CONTAINER_USER``, which only the lab image sets) nothing changes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

USER_VARIABLE = "LAB_CONTAINER_USER"
NO_CAPABILITIES = ("--inh-caps=-all", "--bounding-set=-all", "--no-new-privs")


def setpriv_command(uid: int, gid: int, argv: list[str]) -> list[str]:
    drop = NO_CAPABILITIES if uid == 0 else ()
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *drop, "--", *argv]


def bounding_capabilities(status: Path = Path("/proc/self/status")) -> int:
    """This process's capability bounding set (0: it can never gain one)."""
    for line in status.read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return 0


def run_as_lab_user() -> None:
    """Re-exec this ``python -m lab`` as the lab user when it was started as root in the
    lab container; return (and carry on) otherwise."""
    name = os.environ.get(USER_VARIABLE)
    if not name or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    import pwd  # only in the container, which is Linux: never imported on a Windows host

    user = pwd.getpwnam(name)
    if user.pw_uid == 0 and bounding_capabilities() == 0:
        return  # already what the entrypoint makes of uid 0: no capability left
    os.environ.update(HOME=user.pw_dir, USER=name, LOGNAME=name)
    argv = [sys.executable, "-m", "lab", *sys.argv[1:]]
    os.execvp("setpriv", setpriv_command(user.pw_uid, user.pw_gid, argv))
