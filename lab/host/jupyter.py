"""The JupyterLab URL with its token, read from the running lab container."""

from __future__ import annotations

import json
from urllib.parse import quote

from lab.host import ask, compose

# Runs as the image's user, who owns the server's runtime files, so it sees the token.
SERVER_LIST = (
    "exec",
    "-T",
    *compose.EXEC_AS_LAB_USER,
    compose.LAB,
    "jupyter",
    "server",
    "list",
    "--json",
)


def lab_url(c, lab_stack: compose.Stack) -> str | None:
    """``http://127.0.0.1:8888/lab?token=...``, or None when no server answers yet."""
    result = ask(c, lab_stack.command(*SERVER_LIST))
    if result.exited != 0:
        return None
    address = compose.published_address(c, lab_stack, *compose.JUPYTER)
    for line in result.stdout.splitlines():
        try:
            server = json.loads(line)
        except ValueError:
            continue
        if isinstance(server, dict) and server.get("token"):
            base_url = server.get("base_url") or "/"
            return f"http://{address}{base_url}lab?token={quote(server['token'], safe='')}"
    return None
