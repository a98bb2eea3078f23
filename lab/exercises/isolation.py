"""Run a learner's code where it cannot hurt the verdict: a forked child, under a time limit.

A check runs the learner's code, and that code may loop forever, print a million lines,
call ``sys.exit`` or ``os._exit``, or change torch's global state. So every check (the
notebook's check cell and ``lab check`` alike) runs in a child forked from the process that
prints the verdict: the child reports back through a pipe, its output is captured (the first
lines kept), it is killed at the time limit or on Ctrl-C, and whatever it does to global
state dies with it. The parent only reads what came back.

``LAB_CHECK_TIME_LIMIT`` (seconds, default 30) sets the limit; ``0`` runs the check in this
process with no limit (what a debugger such as ``breakpoint()`` needs). Without ``os.fork``
(Windows), or once this process has initialized CUDA (a forked child could not use it), the
check runs in this process too, with the limit enforced by a timer signal where one is
available. No torch at import time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass

DEFAULT_LIMIT = 30.0
KEEP_BYTES = 64 * 1024  # of the learner's output; the rest is only counted
SHOWN_LINES, SHOWN_WIDTH = 20, 300

# The copy being loaded for `lab check`: check_exercise()/hint() calls in it do not check,
# print or record (the process that loads the copy is not the one that says the verdict).
COLLECTING: str | None = None
IN_CHILD = False  # this process is a check's child: a KeyboardInterrupt here is the code's own


class TimeLimit(BaseException):
    """The time limit ran out while checking in this process (no fork available)."""


def time_limit() -> float:
    """Seconds a check may take (``$LAB_CHECK_TIME_LIMIT``); 0 means no limit, in-process."""
    text = os.environ.get("LAB_CHECK_TIME_LIMIT", "").strip()
    if not text:
        return DEFAULT_LIMIT
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_LIMIT
    return max(value, 0.0)


@dataclass
class Outcome:
    """What came back from running ``job``: ``kind`` is "done" (``value`` is the job's
    result), "timeout", "died" (``status``: exit status, or -signal), "interrupted", or
    "crashed" (the job itself failed; ``value`` says how)."""

    kind: str
    value: object = None
    where: str = ""  # the last place the job reported (report("..."))
    status: int = 0
    output: str = ""  # the first KEEP_BYTES of what the code printed
    output_bytes: int = 0


def can_fork() -> bool:
    if not hasattr(os, "fork"):
        return False
    torch = sys.modules.get("torch")
    # a child of a process that initialized CUDA cannot use CUDA: check here instead
    return not (torch is not None and torch.cuda.is_initialized())


def run(job, limit: float | None = None) -> Outcome:
    """``job(report)`` in a forked child (in this process where that is impossible).
    ``report(text)`` tells where the job is, for the message when it never comes back;
    ``job`` returns something JSON can carry."""
    limit = time_limit() if limit is None else limit
    if limit <= 0 or not can_fork():
        return _run_here(job, limit)
    return _run_forked(job, limit)


# --- in this process ------------------------------------------------------------------------


def _run_here(job, limit: float) -> Outcome:
    where = [""]

    def report(text: str) -> None:
        where[0] = text

    with _alarm(limit):
        try:
            value = job(report)
        except TimeLimit:
            return Outcome("timeout", where=where[0])
        except KeyboardInterrupt:
            return Outcome("interrupted", where=where[0])
        except Exception as exc:  # noqa: BLE001 - the job's own failure, said in one line
            return Outcome("crashed", f"{type(exc).__name__}: {exc}", where[0])
    return Outcome("done", value, where=where[0])


@contextlib.contextmanager
def _alarm(limit: float):
    usable = (
        limit > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def ring(*_):
        raise TimeLimit()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- in a forked child ----------------------------------------------------------------------


def _run_forked(job, limit: float) -> Outcome:
    results_r, results_w = os.pipe()
    output_r, output_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # nothing buffered before the fork is written twice
    with warnings.catch_warnings():  # "multi-threaded, use of fork() may deadlock": a kernel
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(results_r)
        os.close(output_r)
        _child(job, results_w, output_w)
    os.close(results_w)
    os.close(output_w)
    try:
        return _watch(pid, results_r, output_r, limit)
    finally:
        os.close(results_r)
        os.close(output_r)


def _child(job, results_w: int, output_w: int) -> None:
    try:
        global IN_CHILD
        IN_CHILD = True
        os.setpgid(0, 0)  # its own group: killed with everything it started
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output_w, 1)
        os.dup2(output_w, 2)
        sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the child
        sys.stdout = sys.stderr = io.TextIOWrapper(
            io.FileIO(1, "w", closefd=False), errors="backslashreplace", write_through=True
        )
        torch = sys.modules.get("torch")
        if torch is not None:  # OpenMP's threads do not survive a fork: one thread, as
            torch.set_num_threads(1)  # DataLoader's forked workers do

        def report(text: str) -> None:
            os.write(results_w, (json.dumps({"at": text}) + "\n").encode())

        message = {"done": job(report)}
    except BaseException as exc:  # noqa: BLE001 - the child must always report
        message = {"crashed": f"{type(exc).__name__}: {exc}"}
    try:
        os.write(results_w, (json.dumps(message) + "\n").encode())
    finally:
        os._exit(0)


class _Pipes:
    """What the child sends: its reports (JSON lines) and its output (the first KEEP_BYTES)."""

    def __init__(self, results: int, output: int) -> None:
        self.results, self.output = results, output
        self.open = [results, output]  # until their end: a closed pipe is always "ready"
        self.lines: list[dict] = []
        self.pending = b""
        self.kept, self.total = bytearray(), 0

    def read(self, fd: int) -> bool:
        chunk = os.read(fd, 65536)
        if fd == self.output:
            self.total += len(chunk)
            self.kept += chunk[: max(0, KEEP_BYTES - len(self.kept))]
        else:
            *complete, self.pending = (self.pending + chunk).split(b"\n")
            for line in complete:
                with contextlib.suppress(ValueError):
                    self.lines.append(json.loads(line))
        if not chunk and fd in self.open:
            self.open.remove(fd)
        return bool(chunk)

    def wait(self, timeout: float) -> None:
        if not self.open:
            time.sleep(timeout)
        for fd in select.select(self.open, [], [], timeout)[0] if self.open else ():
            self.read(fd)

    def drain(self) -> None:
        for fd in (self.results, self.output):
            while select.select([fd], [], [], 0)[0] and self.read(fd):
                pass

    def final(self) -> dict | None:
        return next((line for line in self.lines if "done" in line or "crashed" in line), None)


def _exited(pid: int) -> bool:
    """Has the child ended? Not reaped yet (WNOWAIT): its process group stays ours to kill."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _watch(pid: int, results_r: int, output_r: int, limit: float) -> Outcome:
    deadline = time.monotonic() + limit
    pipes = _Pipes(results_r, output_r)
    kind = None
    try:
        while not _exited(pid) and pipes.final() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kind = "timeout"
                break
            pipes.wait(min(remaining, 0.2))
    except KeyboardInterrupt:
        kind = "interrupted"
    finally:
        # the child and whatever it started, before it is reaped: its pid and group stay ours
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        status = os.waitpid(pid, 0)[1]
    pipes.drain()  # what arrived just before it ended
    where = next((line["at"] for line in reversed(pipes.lines) if "at" in line), "")
    output, final = pipes.kept.decode("utf-8", errors="replace"), pipes.final()
    if kind is None and final is not None:
        if "crashed" in final:  # the engine's own failure, not the learner's
            return Outcome("crashed", final["crashed"], where, 0, output, pipes.total)
        return Outcome("done", final["done"], where, 0, output, pipes.total)
    if kind is None:
        kind = "died"
        status = os.waitstatus_to_exitcode(status)
    return Outcome(kind, None, where, status, output, pipes.total)


# --- saying it ------------------------------------------------------------------------------


def output_lines(outcome: Outcome) -> list[str]:
    """What the learner's code printed, as at most SHOWN_LINES lines (and how much more)."""
    if not outcome.output_bytes:
        return []
    lines = outcome.output.rstrip("\n").split("\n")
    shown = [
        line if len(line) <= SHOWN_WIDTH else line[:SHOWN_WIDTH] + " …"
        for line in lines[:SHOWN_LINES]
    ]
    if outcome.output_bytes > len(outcome.output.encode("utf-8", errors="replace")):
        rest = outcome.output_bytes - len("\n".join(lines[:SHOWN_LINES]).encode())
        shown.append(f"… {_size(rest)} more of your code's output, not shown")
    elif len(lines) > len(shown):
        shown.append(f"… {len(lines) - len(shown)} more lines of your code's output, not shown")
    return [f"  │ {line}" for line in shown]


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            break
    return f"{count:.1f} {unit}"


def ended(outcome: Outcome, limit: float) -> str:
    """The sentence for a check that never said its verdict."""
    where = f" {outcome.where}" if outcome.where else ""
    if outcome.kind == "timeout":
        return (
            f"still running after {limit:g} s{where}, so it was stopped: an endless loop? "
            "(LAB_CHECK_TIME_LIMIT sets the limit in seconds)"
        )
    if outcome.kind == "interrupted":
        return f"interrupted (Ctrl-C){where}"
    if outcome.status < 0:
        name = signal.Signals(-outcome.status).name if -outcome.status in _SIGNALS else ""
        return f"the check's process was killed by signal {name or -outcome.status}{where}"
    return (
        f"the check's process ended{where} with exit status {outcome.status} before a "
        "verdict: does your code call os._exit()? Return a value instead"
    )


_SIGNALS = {int(s) for s in signal.Signals}
