"""Host-side helpers for ``tasks.py``: Docker, Compose and where a lab command runs.

Stdlib only, and never torch: ``invoke --list`` must stay instant on a bare host. Every
question to the machine goes through :func:`ask` with an invoke context, so tests answer
it with ``invoke.MockContext``.

Commands are argument lists, everywhere. invoke runs a command line through the platform's
shell (bash on POSIX, ``cmd.exe /c`` on Windows), so :func:`command_line` renders the list
once, for that shell: ``shlex.join`` on POSIX; on Windows the quoting ``CommandLineToArgvW``
undoes, with every argument that holds a space or one of cmd.exe's metacharacters in double
quotes (cmd.exe leaves those alone) and no single quotes, which cmd.exe passes on as they are.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from types import SimpleNamespace


class HostProblem(Exception):
    """A missing prerequisite, worded as one line: what is wrong and what to do."""


def version_tuple(text: str | None) -> tuple[int, int, int]:
    """``"29.2.0"``, ``"580.65.06"``, ``"20.10.24+dfsg1"`` as (major, minor, patch)."""
    parts = [int(part) for part in re.findall(r"\d+", str(text or ""))[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def windows() -> bool:
    """Is this host Windows (PowerShell or cmd.exe; not WSL, which is Linux)?"""
    return sys.platform == "win32"


# cmd.exe acts on these outside double quotes; whitespace splits arguments
_CMD_SPECIAL = re.compile(r"[\s&|<>^()!,;=]")


def _cmd_argument(argument: str) -> str:
    if "%" in argument or '"' in argument or "\n" in argument:
        # cmd.exe expands %VARIABLES% even inside quotes and toggles its quoting at every
        # quote: no rendering of these survives it whole
        raise HostProblem(
            f'cannot pass {argument!r} through cmd.exe on Windows (it holds % or "): '
            "rename it or pass a path without those characters"
        )
    if argument and not _CMD_SPECIAL.search(argument):
        return argument
    # Inside quotes a backslash is literal except before a quote: those before the closing
    # quote are doubled (CommandLineToArgvW).
    trailing = len(argument) - len(argument.rstrip("\\"))
    return f'"{argument}{chr(92) * trailing}"'


def command_line(argv: Sequence[str]) -> str:
    """``argv`` as one command line for the shell invoke runs (see the module docstring)."""
    if windows():
        return " ".join(_cmd_argument(str(argument)) for argument in argv)
    return shlex.join(str(argument) for argument in argv)


def run(c, argv: Sequence[str], **options):
    """Run ``argv`` through an invoke context (output shown, failure raises)."""
    return c.run(command_line(argv), **options)


def ask(c, argv: Sequence[str]):
    """Run a probe: output hidden, failure is an answer (not an exception), and no stdin,
    so keys typed meanwhile still reach the command that follows."""
    return c.run(command_line(argv), hide=True, warn=True, in_stream=False)


class Shell:
    """The smallest invoke-like context, for ``lab doctor`` run without invoke: runs a command
    line through the same shell invoke would, captures its output, never raises; a command
    that hangs answers 124."""

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
