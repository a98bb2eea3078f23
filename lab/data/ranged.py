"""Byte ranges over several connections into a preallocated part file, resumable.

The segments' progress is saved (``Transfer.persist``) a few times a second while a prefix
hasher follows the contiguous written prefix, so when the last segment lands the digest is
nearly done.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from lab.data.connection import BLOCK, Restart, Result, Retries
from lab.data.hashing import PrefixHasher
from lab.data.segments import Board, Segment
from lab.data.transport import Answer, Cancelled, FetchError, describe
from lab.files import O_BINARY

if TYPE_CHECKING:
    from lab.data.fetch import Transfer

PERSIST_EVERY = 0.25  # seconds: what a kill -9 can cost at most (bytes refetched)


def fetch_ranged(job: Transfer, segments: list[Segment], first: Answer | None) -> Result:
    """Fill the part file's missing segments over up to ``jobs`` connections; ``first`` is
    the probe's open answer, for whoever takes segment 0."""
    board = Board(segments)
    resumed = board.present()
    job.progress(resumed)
    errors: list[BaseException] = []
    abort = threading.Event()
    first_seg = board.segments[0]
    handed = {"first": first}  # the probe's open answer goes to whoever takes segment 0

    def worker(fd: int) -> None:
        while not abort.is_set():
            seg = board.take()
            if seg is None:
                if not board.busy():
                    return
                abort.wait(0.1)  # others still working: maybe one turns slow, help it
                continue
            answer = handed.pop("first", None) if seg is first_seg else None
            try:
                _fill(job, fd, board, seg, answer, abort)
            except BaseException as exc:  # noqa: BLE001 - reported by the coordinator
                errors.append(exc)
                abort.set()
            finally:
                board.release(seg)

    fd = os.open(job.part, os.O_RDWR | O_BINARY)
    rfd = os.open(job.part, os.O_RDONLY | O_BINARY)
    hasher = PrefixHasher()
    try:
        count = min(job.t.jobs, max(1, len(board.todo)))
        threads = [threading.Thread(target=worker, args=(fd,), daemon=True) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(PERSIST_EVERY)
                job.persist(board, fd)
                hasher.advance(rfd, board.contiguous(job.size))
        leftover = handed.pop("first", None)
        if leftover is not None:  # aborted before anyone read the probe's answer
            leftover.close()
            job.t.slots.release()
        job.persist(board, fd)
        for preferred in (Restart, Cancelled, FetchError):
            for exc in errors:
                if isinstance(exc, preferred):
                    raise exc
        if errors:
            raise FetchError(job.url, describe(errors[0]))
        job.t.check_cancel()
        hasher.advance(rfd, job.size)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.close(rfd)
    job.state_path.unlink(missing_ok=True)
    return Result(hasher.digests(), job.size, resumed, job.fetched, ranged=True)


def _fill(
    job: Transfer,
    fd: int,
    board: Board,
    seg: Segment,
    answer: Answer | None,
    abort: threading.Event,
) -> None:
    retries = Retries(job.t)
    while board.room(seg) > 0:
        if answer is None:
            if not job.acquire_slot(abort):
                return
            try:
                answer = job.t.open(job.url, seg.pos, seg.end, if_range=job.validator)
            except FetchError as exc:
                job.t.slots.release()
                retries.failed(exc)
                continue
        before, failed = seg.pos, []
        with job.reading(answer, failed):
            if answer.status != 206 or answer.start != seg.pos or answer.total != job.size:
                raise Restart()
            while (room := board.room(seg)) > 0:
                if abort.is_set():
                    return
                job.t.check_cancel()
                data = answer.response.read(min(BLOCK, room))
                if not data:
                    raise FetchError(job.url, "connection closed mid-transfer")
                job.count(board.commit(fd, seg, data))
        answer = None
        if not failed:
            continue
        retries.failed(failed[0], progressed=seg.pos > before)
