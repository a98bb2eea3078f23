"""Host-side helpers for ``tasks.py``: Docker, Compose and where a lab command runs.

Stdlib only, and never torch: ``invoke --list`` must stay instant on a bare host. Every
question to the machine goes through :func:`ask` with an invoke context, so tests answer
it with ``invoke.MockContext``.
"""

from __future__ import annotations

import subprocess
from types import SimpleNamespace


class HostProblem(Exception):
    """A missing prerequisite, worded as one line: what is wrong and what to do."""


def ask(c, command: str):
    """Run a probe: output hidden, failure is an answer (not an exception), and no stdin,
    so keys typed meanwhile still reach the command that follows."""
    return c.run(command, hide=True, warn=True, in_stream=False)


class Shell:
    """The smallest invoke-like context, for ``lab doctor`` run without invoke: runs a shell
    command, captures its output, never raises; a command that hangs answers 124."""

    def __init__(self, timeout: float = 15) -> None:
        self.timeout = timeout

    def run(self, command: str, **_options) -> SimpleNamespace:
        try:
            done = subprocess.run(
                command,
                shell=True,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            why = f"`{command}` did not answer within {self.timeout:g} s"
            return SimpleNamespace(exited=124, stdout="", stderr=why)
        return SimpleNamespace(exited=done.returncode, stdout=done.stdout, stderr=done.stderr)
