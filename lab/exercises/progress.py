"""The learner's progress, ``<work>/progress.json``: attempts, first pass, hints seen.

Written atomically (:func:`lab.files.atomic_write`), so a process killed mid-write leaves the
previous file whole. A lock file serializes the notebook kernel and a terminal's ``lab check``
updating it at the same time. No torch.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path

from lab.errors import LabError
from lab.files import atomic_write, locked
from lab.paths import runs_dir, work_dir

VERSION = 1


class ProgressUnreadable(LabError):
    pass


def progress_file(work: Path | None = None) -> Path:
    return (work or work_dir()) / "progress.json"


def load(work: Path | None = None) -> dict:
    path = progress_file(work)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": VERSION, "exercises": {}}
    except (OSError, ValueError) as exc:
        raise ProgressUnreadable(
            f"{path} is not readable progress ({exc}); move it aside and check again"
        ) from None
    data.setdefault("exercises", {})
    return data


def save(data: dict, work: Path | None = None) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(progress_file(work), text.encode("utf-8"))


@contextlib.contextmanager
def _locked(work: Path | None):
    with locked(progress_file(work).with_name(".progress.lock")):
        yield


def update(change, work: Path | None = None) -> dict:
    """Load, let ``change(data)`` edit it, save; under the lock. On the classroom hub the
    teacher's view then gets the new state (:mod:`lab.classroom`)."""
    with _locked(work):
        data = load(work)
        change(data)
        save(data, work)
    from lab import classroom

    classroom.report_progress()
    return data


def _entry(data: dict, key: str) -> dict:
    return data["exercises"].setdefault(
        key, {"attempts": 0, "first_passed": None, "last": None, "hints_seen": 0}
    )


def record(key: str, status: str, work: Path | None = None) -> dict:
    """One check of an attempted exercise: ``status`` is "passed" or "failed"."""

    def change(data: dict) -> None:
        entry = _entry(data, key)
        entry["attempts"] += 1
        entry["last"] = status
        if status == "passed" and not entry["first_passed"]:
            entry["first_passed"] = datetime.now().isoformat(timespec="seconds")

    return update(change, work)["exercises"][key]


def next_hint(key: str, available: int, work: Path | None = None) -> int:
    """How many hints of ``key`` the learner has now seen (one more, up to ``available``)."""

    def change(data: dict) -> None:
        entry = _entry(data, key)
        entry["hints_seen"] = min(entry.get("hints_seen", 0) + 1, available)

    return update(change, work)["exercises"][key]["hints_seen"]


def lessons_run(runs: Path | None = None) -> dict[str, dict]:
    """``{"07_custom_autograd_function": {"runs": 3, "last": datetime}}`` from the runs
    folder (``<runs>/<NN_name>/<timestamp>``)."""
    root = runs or runs_dir()
    found: dict[str, dict] = {}
    if not root.is_dir():
        return found
    for lesson in sorted(root.iterdir()):
        if not (lesson.is_dir() and lesson.name[:2].isdigit()):
            continue
        runs_of = [run for run in lesson.iterdir() if run.is_dir()]
        if runs_of:
            last = max(run.stat().st_mtime for run in runs_of)
            found[lesson.name] = {"runs": len(runs_of), "last": datetime.fromtimestamp(last)}
    return found
