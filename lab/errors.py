"""The lab's one kind of user-facing failure: a single line that says what was wrong and what
to do, then exit status 2. A SystemExit, so a lesson or command run from a terminal ends with
that line instead of a traceback; ``lab.cli`` prints it once, prefixed by the command."""

from __future__ import annotations


class LabError(SystemExit):
    """A one-line, user-facing error (exit status ``status``, 2 unless a subclass says)."""

    status = 2

    def __init__(self, message: str) -> None:
        super().__init__(self.status)
        self.message = message

    def __str__(self) -> str:
        return self.message
