"""Print the README's test command: the fenced block right after ``<!-- test-command -->``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = "<!-- test-command -->"


def test_command(readme: str) -> str:
    _, found, after = readme.partition(MARKER)
    block = re.match(r"\s*```[^\n]*\n(.*?)^```", after, re.DOTALL | re.MULTILINE)
    if not found or not block or not block.group(1).strip():
        raise SystemExit(f"README has no fenced code block right after {MARKER}")
    return block.group(1).strip()


if __name__ == "__main__":
    print(test_command(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md").read_text()))
