"""``lab grade``: every exercise of the course checked in a learner's work folder, as one
report. What a teacher's grader runs (``invoke class-grade``: a fresh, network-less, read-only
container per learner, over their work volume) and what it stores.

    python -m lab grade [--work DIR] [--json]

The contract:

- **What is checked.** ``DIR/NN_name/exercises.py`` of every lesson with exercises (DIR: the
  work folder, ``$LAB_WORK_DIR`` unless ``--work`` says), each exercise exactly as ``lab
  check`` checks it: the copy's code cells in order, one forked child per exercise, under the
  time limit (``LAB_CHECK_TIME_LIMIT``, default 30 s). ``progress.json`` is not read: what a
  learner wrote there counts for nothing here.
- **Inputs the learner has not seen.** With ``LAB_GRADE_SEED`` set (a whole number; the
  grader draws a fresh one per run and never shows it), every check runs a second time on
  inputs that seed derives (:func:`lab.exercises.feedback.unseen`); a pass needs both, and
  the time limit doubles. A check with no inputs to change (21.2, a quiz) passes as it
  would without a seed, its message says so. The seed leaves the environment before any
  learner code runs.
- **Nothing written.** No progress, no report to the hub, nothing in DIR: it works on a
  read-only work folder with a read-only HOME and TMPDIR (only the checks' own scratch
  files need a writable temp folder, /tmp).
- **The report** (``--json``: one JSON document on stdout; without it, the same as a table)::

      {"graded_at": "2026-12-06T11:00:00+00:00",
       "unseen_inputs": true,
       "exercises": {"07.1": {"status": "passed", "message": "…"}, …},
       "copies": {"07_custom_autograd_function":
                  {"path": "07_custom_autograd_function/exercises.py", "sha256": "…"}},
       "suspicious": {"07_custom_autograd_function": ["line 12: uses sys.modules, …"]}}

  ``exercises`` has every exercise of the course; ``status`` is "passed", "failed" or "not
  attempted" (no copy, or the stub untouched). A copy that cannot be read (not UTF-8, a
  folder, a link out of DIR) fails each of its exercises, the message says why. ``copies``:
  the sha256 of each copy as graded. ``suspicious`` (:mod:`lab.exercises.scan`): copies with
  reasons a teacher should look at them, a static scan that never changes a verdict.
- **Exit status** 0 whatever the verdicts (it is a report); 2 on a usage error (no such DIR,
  a LAB_GRADE_SEED that is not a whole number); 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from lab.course import Lesson, with_exercises
from lab.errors import LabError
from lab.exercises import copy_of
from lab.paths import work_dir

SEED_VARIABLE = "LAB_GRADE_SEED"
PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"  # as lab.exercises.checking


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work", type=Path, help="the learner's work folder (default: $LAB_WORK_DIR or work/)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    work = Path(args.work) if args.work else work_dir()
    if not work.is_dir():
        raise LabError(f"no work folder at {work}: pass the learner's work folder with --work")
    seed = take_seed()
    with contextlib.redirect_stdout(sys.stderr):  # learner code checked in this process
        report = grade(work, seed)
    print(json.dumps(report, indent=1) if args.json else table(report, work))
    return 0


def take_seed() -> int | None:
    """``$LAB_GRADE_SEED``, taken out of the environment (learner code can read that)."""
    text = os.environ.pop(SEED_VARIABLE, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise LabError(f"{SEED_VARIABLE} must be a whole number, got {text!r}") from None


def grade(work: Path, seed: int | None = None) -> dict:
    """The report on every exercise of the course in ``work`` (see the module's docstring)."""
    report: dict = {
        "graded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "unseen_inputs": seed is not None,
        "exercises": {},
        "copies": {},
        "suspicious": {},
    }
    for lesson in with_exercises():
        report["exercises"].update(_lesson(lesson, Path(work), seed, report))
    return report


def _lesson(lesson: Lesson, work: Path, seed: int | None, report: dict) -> dict:
    from lab.exercises.checking import INTERRUPTED, check_copy
    from lab.exercises.scan import suspicious

    path = copy_of(lesson, work).path
    read = _read(path, work)
    if isinstance(read, tuple):
        status, message = read
        return {spec.key: {"status": status, "message": message} for spec in lesson.exercises}
    text = read.decode("utf-8")
    report["copies"][lesson.run_name] = {
        "path": path.relative_to(work).as_posix(),
        "sha256": hashlib.sha256(read).hexdigest(),
    }
    reasons = suspicious(text)
    if reasons:
        report["suspicious"][lesson.run_name] = reasons
    verdicts = {}
    for checked in check_copy(lesson, path, text=text, seed=seed, recording=False):
        if checked.result.status == INTERRUPTED:
            raise KeyboardInterrupt
        verdicts[checked.result.key] = {
            "status": checked.result.status,
            "message": checked.result.message,
        }
    return verdicts


def _read(path: Path, work: Path) -> bytes | tuple[str, str]:
    """The copy's bytes, or (status, why) for all of its exercises."""
    shown = path.relative_to(work).as_posix()
    if not path.exists() and not path.is_symlink():
        return NOT_ATTEMPTED, f"no copy of these exercises ({shown}) in the work folder"
    if not path.resolve().is_relative_to(work.resolve()):
        return FAILED, f"{shown} is a link to a file outside the work folder: not graded"
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except IsADirectoryError:
        return FAILED, f"{shown} is a folder, not a copy of the exercises"
    except UnicodeDecodeError as exc:
        return FAILED, f"{shown} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
    except OSError as exc:
        return FAILED, f"cannot read {shown}: {exc.strerror or exc}"
    return data


def table(report: dict, work: Path) -> str:
    """The report for a person: one line per exercise, then the copies and what to look at."""
    marks = {PASSED: "✓", FAILED: "✗", NOT_ATTEMPTED: "·"}
    lines = [f"{'exercise':<9}{'status':<16}message"]
    for key, verdict in report["exercises"].items():
        status = f"{marks.get(verdict['status'], '?')} {verdict['status']}"
        lines.append(f"{key:<9}{status:<16}{verdict['message']}")
    passed = sum(v["status"] == PASSED for v in report["exercises"].values())
    unseen = "yes" if report["unseen_inputs"] else f"no ({SEED_VARIABLE} not set)"
    lines.append(
        f"\n{passed}/{len(report['exercises'])} passed · unseen inputs: {unseen} · {work} · "
        f"graded at {report['graded_at']}"
    )
    if report["copies"]:
        lines.append("\ncopies graded (sha256):")
        lines += [f"  {c['sha256'][:16]}  {c['path']}" for c in report["copies"].values()]
    if report["suspicious"]:
        lines.append("\nto look at (a static scan; the verdicts above stand):")
        for name, reasons in report["suspicious"].items():
            lines.append(f"  {report['copies'][name]['path']}")
            lines += [f"    {reason}" for reason in reasons]
    return "\n".join(lines)
