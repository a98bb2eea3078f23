"""The one rule for a missing prerequisite (Docker, Chromium, a lint binary) in a test."""

from __future__ import annotations

import os

import pytest


def skip_unless_ci(reason: str) -> None:
    """Skip on a developer's machine; in CI (``CI=true``) the test must run, so fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: this test must run in CI")
    pytest.skip(reason)
