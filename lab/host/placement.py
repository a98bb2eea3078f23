"""Placement of a lab command: in the lab container when the stack is up, else on this host.

(``invoke lesson/gpu/download-data`` ask :func:`place`; ``invoke doctor`` always runs here.)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import lab.host
from lab.host import HostProblem, compose

IN_CONTAINER = "running in the lab container"
NOT_UP = "the lab stack is not up"


@dataclass(frozen=True)
class Placement:
    command: list[str]
    message: str  # said before running, so nobody wonders which environment answered
    pty: bool  # the command needs this terminal (a TTY in the container)
    in_container: bool


def local_command(argv: list[str]) -> list[str]:
    """The lab CLI with this interpreter: the one invoke runs in has the host install."""
    return [sys.executable, "-m", "lab", *argv]


def pty_available() -> bool:
    """Can invoke give a command a pseudo-terminal? Not on Windows (no `pty` module)."""
    if lab.host.windows():
        return False
    try:
        import pty  # noqa: F401 - only whether it imports
    except ImportError:
        return False
    return True


def interactive() -> bool:
    """A person at a terminal? Then the container gets a TTY: ``docker exec`` without one
    does not pass Ctrl-C on, which would leave a download or ``--watch`` running inside."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout))


def running_stack(c) -> compose.Stack | None:
    """The stack when its lab container is running; None when it is not, or Docker is absent."""
    try:
        lab_stack = compose.stack(c)
    except HostProblem:
        return None
    return lab_stack if compose.service_states(c, lab_stack).get(compose.LAB) == "running" else None


def place(c, argv: list[str], local_reason: str | None = None) -> Placement:
    """Run in the container when it is up, unless ``local_reason`` says why not."""
    if local_reason is None:
        lab_stack = running_stack(c)
        if lab_stack is not None:
            tty = interactive()
            exec_args = ["exec"] if tty else ["exec", "-T"]
            exec_args += compose.EXEC_AS_LAB_USER
            command = lab_stack.command(*exec_args, compose.LAB, "python", "-m", "lab", *argv)
            return Placement(command, IN_CONTAINER, pty=tty, in_container=True)
        local_reason = NOT_UP
    return Placement(
        local_command(argv), f"running locally ({local_reason})", pty=False, in_container=False
    )
