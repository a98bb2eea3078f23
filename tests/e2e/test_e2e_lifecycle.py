"""The `runs` volume outlives `down` and goes away with `down -v`."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_down_keeps_runs_and_down_v_removes_them(fresh_stack):
    stack = fresh_stack()
    stack.up()
    # A fresh named volume must be writable by the lab user (the image owns its mount point).
    stack.exec("lab", "python", "-m", "lab", "lesson", "01", check=True)
    runs_before = stack.tensorboard_runs(
        until=lambda runs: any(run.startswith("01_manual_gradient/") for run in runs)
    )

    stack.down(volumes=False)
    assert stack.volume_exists()
    stack.up()
    assert stack.tensorboard_runs(until=lambda runs: runs >= runs_before) == runs_before

    stack.down(volumes=True)
    assert not stack.volume_exists()
