"""Hint ladders: each call reveals one more hint of an exercise (remembered in progress)."""

from __future__ import annotations

from lab.course import exercise
from lab.exercises import isolation, progress


def hint(key: str) -> None:
    """Print the hints seen so far of ``key`` (``"07.1"``), one more than last time."""
    spec = exercise(key)
    if isolation.COLLECTING is not None:  # `lab check` running the copy: not the learner asking
        return
    seen = progress.next_hint(spec.key, len(spec.hints))
    for number, text in enumerate(spec.hints[:seen], start=1):
        print(f"hint {number}/{len(spec.hints)} for {spec.key}: {text}")
    if seen == len(spec.hints):
        print(f"(no more hints; `lab exercise {spec.key[:2]} --solution` shows a solution)")
