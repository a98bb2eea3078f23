"""Run an exercise's check and say the result: in a notebook cell or for ``lab check``.

Each check lives in the lesson's ``checks.py`` (``CHECKS[target]``) and returns the sentence
that says what was verified. :func:`evaluate` runs one on an answer, under torch's default
state. The notebook's check cell (:func:`check_exercise`) and ``lab check``
(:func:`check_copy`) run it in a forked child under a time limit (:mod:`.isolation`), so
an endless loop, ``sys.exit``, ``os._exit`` or a changed global in the learner's code cannot
take the verdict with it.

``lab check`` reads the copy the way the notebook runs it: its code cells in order, in a fresh
``__main__``, with the check cells' ``check_exercise``/``hint`` calls doing nothing, up to the
check cell of the exercise being checked, whose argument is the answer (so a helper defined at
the top of a cell, or a name changed in the check cell, is what the notebook would see too).
A cell that raises is passed over, as a learner running cells one by one would; when the
exercise then does not pass, that error is what the line says.
"""

from __future__ import annotations

import ast
import os
import sys
import traceback
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.course import Exercise, Lesson, exercise
from lab.exercises import isolation, progress, stubs
from lab.exercises.feedback import NotAttempted, Problem, check_state, checking, unseen_inputs

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Result:
    key: str
    status: str
    message: str

    def line(self) -> str:
        if self.status == PASSED:
            return f"✓ {self.key} passed: {self.message}"
        if self.status == NOT_ATTEMPTED:
            return f"· {self.key} not attempted yet: {self.message}"
        if self.status == INTERRUPTED:
            return f"✗ {self.key}: {self.message}"
        return f'✗ {self.key}: {self.message}  (hint("{self.key}") or `lab hint {self.key}`)'


def evaluate(key: str, answer, seed: int | None = None) -> Result:
    """Check one answer, in this process; no progress recorded. With a ``seed`` (``lab
    grade``), a pass counts only when the check passes again on the inputs the seed derives
    (:func:`~lab.exercises.feedback.unseen`); a check with no inputs to change (a quiz) says
    so."""
    spec = exercise(key)
    check = _checks(spec.lesson).CHECKS[spec.target]
    if answer is None:
        return Result(spec.key, FAILED, f"there is no `{spec.target}` in your copy")
    if stubs.untouched(spec, answer):
        return Result(spec.key, NOT_ATTEMPTED, f"write `{spec.target}`, then check again")
    result = _run_check(spec, check, answer)
    if seed is None or result.status != PASSED:
        return result
    with unseen_inputs(seed) as unseen:
        again = _run_check(spec, check, answer)
    if again.status != PASSED:
        return Result(
            spec.key,
            FAILED,
            f"on inputs not seen before (the check's own, changed): {again.message}",
        )
    if not unseen.drawn:  # a quiz: nothing to change, the same check passed twice
        return Result(spec.key, PASSED, f"{result.message} (its inputs are fixed: none to change)")
    return Result(spec.key, PASSED, f"{result.message} (and again on inputs not seen before)")


def _run_check(spec: Exercise, check, answer) -> Result:
    with check_state(), checking(spec.key):
        try:
            verified = check(answer)
        except NotAttempted as unfinished:
            message = unfinished.message or f"a part of `{spec.target}` is not written yet"
            return Result(spec.key, FAILED, message)
        except Problem as problem:
            return Result(spec.key, FAILED, problem.message)
        except SystemExit as exc:  # the learner's code, called by the check itself
            return Result(spec.key, FAILED, f"your code called sys.exit({exc.code!r})")
        except KeyboardInterrupt:
            if not isolation.IN_CHILD:
                raise  # Ctrl-C
            return Result(spec.key, FAILED, "your code raised KeyboardInterrupt")
        except Exception as exc:  # an answer of a shape no check foresaw: still one line
            return Result(
                spec.key, FAILED, f"checking `{spec.target}` failed: {type(exc).__name__}: {exc}"
            )
    return Result(spec.key, PASSED, verified)


def _checks(lesson: Lesson):
    # imported under torch's defaults: its constants must not be made in the learner's
    # inference mode or default dtype
    with check_state():
        return lesson.checks()


def record(result: Result) -> None:
    if result.status in (PASSED, FAILED):
        progress.record(result.key, result.status)


def _said(spec: Exercise, outcome: isolation.Outcome, limit: float) -> Result:
    if outcome.kind == "done":
        return Result(**outcome.value)
    if outcome.kind == "crashed":
        return Result(spec.key, FAILED, f"checking `{spec.target}` failed: {outcome.value}")
    status = INTERRUPTED if outcome.kind == "interrupted" else FAILED
    return Result(spec.key, status, isolation.ended(outcome, limit))


def _print_outcome(result: Result, outcome: isolation.Outcome) -> None:
    for line in isolation.output_lines(outcome):
        print(line)
    print(result.line(), flush=True)


# --- the notebook's check cell ----------------------------------------------------------------


class _Reached(BaseException):
    """The copy being loaded reached the check cell of the exercise being checked."""

    def __init__(self, answer) -> None:
        super().__init__()
        self.answer = answer


_SINCE_LAST_CHECK: list[str] = []  # errors of the cells run since the last check cell


def check_exercise(key: str, answer) -> None:
    """The check cell under a stub: says what is right or the first thing wrong."""
    spec = exercise(key)
    if isolation.COLLECTING is not None:  # `lab check` loading the copy: no check here
        if spec.key == isolation.COLLECTING:
            raise _Reached(answer)
        return
    limit = isolation.time_limit()
    _checks(spec.lesson)  # here, once: not again in every check's child

    def job(report):
        report(f"while checking `{spec.target}`")
        return asdict(evaluate(spec.key, answer))

    outcome = isolation.run(job, limit)
    result = _said(spec, outcome, limit)
    record(result)
    _print_outcome(result, outcome)
    if result.status == INTERRUPTED:
        raise KeyboardInterrupt(f"{spec.key}: check interrupted") from None


# --- lab check: the learner's copy, run as the notebook runs it ---------------------------------


def _run_cells(path: Path, text: str, namespace: dict, report=None, key: str = "") -> object:
    """Run the copy's code cells in order into ``namespace``, each cell's errors kept in
    ``_SINCE_LAST_CHECK``. With a ``key``: stop at that exercise's check cell and return its
    answer (None when that cell failed first), the errors kept being those since the check
    cell before it."""
    from lab.lessons.runner import cells

    for cell in cells(text):
        if cell.kind != "code" or not cell.source.strip():
            continue
        if report is not None:
            report(f"in the cell at line {cell.first_line} of {path.name}")
        checked = _checked_in(cell.source)
        try:
            code = compile("\n" * (cell.first_line - 1) + cell.source + "\n", str(path), "exec")
            exec(code, namespace)  # noqa: S102 - the learner's own code, as the notebook runs it
        except _Reached as reached:
            return reached.answer
        except SyntaxError as exc:
            _SINCE_LAST_CHECK.append(f"{path.name} line {exc.lineno}: SyntaxError: {exc.msg}")
        except isolation.TimeLimit:
            raise
        except KeyboardInterrupt as exc:
            if not isolation.IN_CHILD:
                raise  # Ctrl-C, when the copy runs in this process
            _SINCE_LAST_CHECK.append(_cell_error(path, cell.first_line, exc))
        except BaseException as exc:  # noqa: BLE001 - a learner's cell may raise anything
            _SINCE_LAST_CHECK.append(_cell_error(path, cell.first_line, exc))
        if key and key in checked:  # its check cell failed before checking anything
            return None
        if key and checked:
            _SINCE_LAST_CHECK.clear()
    return namespace.get(exercise(key).target) if key else None


def _checked_in(source: str) -> set[str]:
    """The exercises a cell's ``check_exercise("NN.N", …)`` calls name."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check_exercise"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            try:
                found.add(exercise(node.args[0].value).key)
            except LookupError:
                continue
    return found


def _cell_error(path: Path, first_line: int, exc: BaseException) -> str:
    line = first_line
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == str(path):
            line = lineno
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{path.name} line {line} raised {type(exc).__name__}{': ' + text if text else ''}"


def _fresh_main() -> dict:
    # a notebook's names live in __main__: a class defined there is __main__.Name
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    return module.__dict__


def _check_in_copy(spec: Exercise, path: Path, text: str, report, seed: int | None) -> dict:
    """In the child: run the copy's cells up to this exercise's check cell, then check."""
    isolation.COLLECTING = spec.key
    _SINCE_LAST_CHECK.clear()
    cwd, main = os.getcwd(), sys.modules["__main__"]  # put back when run in this process
    try:
        os.chdir(path.parent)  # where the notebook's kernel runs
        answer = _run_cells(path, text, _fresh_main(), report, spec.key)
    finally:
        isolation.COLLECTING = None
        os.chdir(cwd)
        sys.modules["__main__"] = main
    errors = list(_SINCE_LAST_CHECK)
    report(f"while checking `{spec.target}`")
    result = evaluate(spec.key, answer, seed)
    if result.status == FAILED and errors:  # the first cell that raised comes first
        result = Result(spec.key, FAILED, errors[0])
    return asdict(result)


@dataclass(frozen=True)
class Checked:
    result: Result
    output: list[str]  # what the learner's code printed, shortened

    @property
    def interrupted(self) -> bool:
        return self.result.status == INTERRUPTED


def check_copy(
    lesson: Lesson,
    path: Path,
    keys: list[str] | None = None,
    text: str | None = None,
    *,
    seed: int | None = None,
    recording: bool = True,
) -> Iterator[Checked]:
    """Each exercise of the lesson (or those of ``keys``) in the learner's copy, one forked
    child each, recorded as they come (unless not ``recording``: ``lab grade``); stops after
    an interrupted one. With a ``seed``, each check runs twice in its child (:func:`evaluate`),
    so the time limit is twice as long."""
    text = path.read_text(encoding="utf-8") if text is None else text
    _checks(lesson)  # torch and the checks, imported once here: every child has them
    limit = isolation.time_limit() * (1 if seed is None else 2)
    for spec in lesson.exercises:
        if keys is not None and spec.key not in keys:
            continue
        outcome = isolation.run(
            lambda report, spec=spec: _check_in_copy(spec, path, text, report, seed), limit
        )
        result = _said(spec, outcome, limit)
        if recording:
            record(result)
        yield Checked(result, isolation.output_lines(outcome))
        if result.status == INTERRUPTED:
            return


def check_file(lesson: Lesson, path: Path) -> list[Result]:
    """Every exercise of the lesson in the learner's copy, each recorded."""
    return [checked.result for checked in check_copy(lesson, path)]


def load_copy(path: Path) -> types.ModuleType:
    """The copy's cells run in order as the notebook runs them, check cells doing nothing;
    a cell that raises is a Problem naming its line, never a traceback."""
    module = types.ModuleType(f"exercise_copy_{path.parent.name}")
    previous, isolation.COLLECTING = isolation.COLLECTING, ""
    _SINCE_LAST_CHECK.clear()
    try:
        _run_cells(path, path.read_text(encoding="utf-8"), module.__dict__)
    finally:
        isolation.COLLECTING = previous
    if _SINCE_LAST_CHECK:
        raise Problem(_SINCE_LAST_CHECK[0])
    return module
