"""Exercises: each lesson's notebook of stubs to fill in, and checks that say what is wrong.

The exercises themselves are course content (``lab/course/NN_name/``: ``exercises.py``,
``exercises.toml``, ``checks.py``, ``solutions.py``); this package is the engine around them.
The learner's copy is ``<work>/NN_name/exercises.py`` (``lab course sync`` or ``lab exercise
NN`` makes it; never overwritten once edited, see :mod:`lab.copies`) and ``lab check NN``
(or ``NN.N``) checks it, running it as the notebook does. Every check runs in a forked child
under a time limit (:mod:`lab.exercises.isolation`). ``lab grade`` (:mod:`.grade`) checks
every copy in a work folder the same way, records nothing, and with a seed checks again on
inputs the learner has not seen: what a teacher's grader runs. This module reads files only
(no torch); ``check_exercise`` and ``hint`` (what the notebook cells call) load on first use.
"""

from __future__ import annotations

from pathlib import Path

from lab.copies import Copy
from lab.course import Lesson
from lab.paths import work_dir


def copy_of(lesson: Lesson, work: Path | None = None) -> Copy:
    """The learner's copy of a lesson's exercises (``copy_of(l).path`` may not exist yet)."""
    return Copy(lesson, lesson.exercises_path.name, Path(work or work_dir()))


def __getattr__(name: str):
    # The notebook's `from lab.exercises import check_exercise, hint` loads torch only then.
    if name == "check_exercise":
        from lab.exercises.checking import check_exercise

        return check_exercise
    if name == "hint":
        from lab.exercises.hints import hint

        return hint
    raise AttributeError(name)
