"""In the lab container, ``python -m lab`` never runs as root.

compose starts the lab container as root so that its entrypoint can give the image's user the
uid that owns the checkout (docker/lab/lab-entrypoint), and ``docker compose exec`` (how
``invoke lesson`` reaches the container) starts commands as that same root. Such a command is
re-executed here as the lab user, so lessons and downloads write files the learner owns.
On the host (no ``LAB_CONTAINER_USER``, which only the lab image sets) nothing changes.
"""

from __future__ import annotations

import os
import pwd
import sys

USER_VARIABLE = "LAB_CONTAINER_USER"


def setpriv_command(user: pwd.struct_passwd, argv: list[str]) -> list[str]:
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--",
        *argv,
    ]


def run_as_lab_user() -> None:
    """Re-exec this ``python -m lab`` as the lab user when it was started as root in the
    lab container; return (and carry on) otherwise."""
    name = os.environ.get(USER_VARIABLE)
    if not name or os.geteuid() != 0:
        return
    user = pwd.getpwnam(name)
    if user.pw_uid == 0:
        return  # a misconfigured image; the entrypoint never makes the user root
    os.environ.update(HOME=user.pw_dir, USER=name, LOGNAME=name)
    argv = [sys.executable, "-m", "lab", *sys.argv[1:]]
    os.execvp("setpriv", setpriv_command(user, argv))
