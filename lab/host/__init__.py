"""Host-side helpers for ``tasks.py``: Docker, Compose and where a lab command runs.

Stdlib only, and never torch: ``invoke --list`` must stay instant on a bare host. Every
question to the machine goes through :func:`ask` with an invoke context, so tests answer
it with ``invoke.MockContext``.
"""

from __future__ import annotations


class HostProblem(Exception):
    """A missing prerequisite, worded as one line: what is wrong and what to do."""


def ask(c, command: str):
    """Run a probe: output hidden, failure is an answer (not an exception), and no stdin,
    so keys typed meanwhile still reach the command that follows."""
    return c.run(command, hide=True, warn=True, in_stream=False)
