"""One file from one URL into a part file: byte ranges over several connections, resumable.

The first request asks for the first range. A 206 answer proves the server honours Range and
gives the total size: the file is preallocated, cut into segments, and the segments are
fetched by up to ``jobs`` connections at once. A 200 answer means no Range support: the body
is streamed once, hashed as it arrives.

Resume: ``<part>.json`` records every segment's progress. It is rewritten (after fsync of the
part file, so it never claims bytes that are not on disk) a few times a second; after Ctrl-C,
kill -9 or a dropped connection a rerun asks only for the missing ranges.

Hashing: a prefix hasher follows the contiguous written prefix while the download runs, so
when the last segment lands the digest is nearly done; a resumed file is read back once.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.data import segments as seg_plan
from lab.data.hashing import PrefixHasher
from lab.data.segments import Board, Segment
from lab.data.store import read_json, write_json_atomic
from lab.data.transport import Answer, Cancelled, FetchError, Transport, describe

BLOCK = 1 << 16  # read size; also how often a connection notices cancel/abort
# A connection that made progress before it failed earns a fresh run of retries, but a
# segment gets at most this many times `retries` reconnects in all: a mirror that cuts every
# answer after a few KB then falls through to the next mirror instead of trickling forever.
RECONNECTS_PER_RETRY = 4
PERSIST_EVERY = 0.25  # seconds: what a kill -9 can cost at most (bytes refetched)


class Retries:
    """The retry budget of one fetch loop: ``retries`` failures in a row, then give up. A
    failure after progress starts a fresh run, but never more than RECONNECTS_PER_RETRY times
    ``retries`` failures in all. Waits the transport's backoff between tries."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.limit = transport.settings.retries
        self.budget = RECONNECTS_PER_RETRY * max(1, self.limit)
        self.streak = self.total = 0

    def failed(self, exc: FetchError, progressed: bool = False) -> None:
        """Raise ``exc`` when it is permanent or the budget is spent; else wait, return."""
        if exc.permanent:
            raise exc
        self.streak = 1 if progressed else self.streak + 1
        self.total += 1
        if self.streak > self.limit or self.total > self.budget:
            raise exc
        self.t.backoff(self.streak)


class Restart(Exception):
    """The server stopped honouring Range, or the file changed between requests."""


@dataclass
class Result:
    sums: dict[str, str]  # every hashing.ALGORITHMS digest of the whole file
    size: int
    resumed: int  # bytes that were already there when this run started
    fetched: int  # bytes received in this run
    ranged: bool


class Transfer:
    def __init__(
        self,
        transport: Transport,
        url: str,
        part: Path,
        size_hint: int | None,
        progress: Callable[[int], None],
        resume_from_other_url: bool,
    ) -> None:
        self.t = transport
        self.url = url
        self.part = part
        self.state_path = part.with_name(part.name + ".json")
        self.size_hint = size_hint
        self.progress = progress
        self.resume_from_other_url = resume_from_other_url
        self.validator: str | None = None
        self.fetched = 0
        self._count_lock = threading.Lock()

    def run(self) -> Result:
        try:
            return self._run_once(fresh=False)
        except Restart:
            self.discard()
        try:
            return self._run_once(fresh=True)
        except Restart:
            self.discard()
            raise FetchError(
                self.url,
                "the file changed or Range stopped working mid-download twice",
                permanent=True,
            ) from None

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)

    # --- setup ---------------------------------------------------------------------------
    def _load_state(self) -> list[Segment] | None:
        state = read_json(self.state_path)
        try:
            size = int(state["size"])
            same_source = state["url"] == self.url or self.resume_from_other_url
            if not same_source or self.part.stat().st_size != size:
                return None
            if self.size_hint is not None and size != self.size_hint:
                return None
            segments = [Segment(int(a), int(b), int(p)) for a, b, p in state["segments"]]
            bounds = (
                [0]
                + [b for s in sorted(segments, key=lambda s: s.start) for b in (s.start, s.end)]
                + [size]
            )
            # the segments must tile the file exactly, each with its progress inside it
            if bounds[0::2] != bounds[1::2] or not all(s.start <= s.pos <= s.end for s in segments):
                return None
        except (TypeError, KeyError, ValueError, OSError):
            return None
        self.size, self.validator = size, state.get("validator")
        return segments

    def _open_with_retries(self, start: int | None, end: int | None) -> Answer:
        """Open a request holding a slot (the caller releases it when the answer is done)."""
        retries = Retries(self.t)
        while True:
            self._acquire_slot(None)
            try:
                return self.t.open(self.url, start, end)
            except FetchError as exc:
                self.t.slots.release()
                retries.failed(exc)

    def _probe(self) -> Answer:
        try:
            return self._open_with_retries(0, self._first_end())
        except FetchError as exc:
            if not exc.cause.startswith("HTTP 416"):
                raise
            return self._open_with_retries(None, None)  # e.g. an empty file: ask without Range

    def _check_size(self, total: int | None) -> None:
        if self.size_hint is not None and total is not None and total != self.size_hint:
            raise FetchError(
                self.url,
                f"serves {total} bytes but the registry says {self.size_hint}",
                permanent=True,
            )

    def _run_once(self, fresh: bool) -> Result:
        segments = None if fresh else self._load_state()
        first = None
        if segments is None:
            self.discard()
            first = self._probe()
            try:
                self._check_size(first.total)
            except FetchError:
                first.close()
                self.t.slots.release()
                raise
            if first.status != 206:
                return self._stream(first)
            if first.total is None or first.start != 0:  # a range answer we cannot build on
                first.close()
                self.t.slots.release()
                return self._stream(None)
            self.size, self.validator = first.total, first.validator
            segments = seg_plan.plan(self.size, self._first_end(), self.t.jobs)
            with open(self.part, "wb") as handle:
                handle.truncate(self.size)  # sparse preallocation; segments fill it in place
            self._persist(Board(segments), fd=None)
        return self._ranged(segments, first)

    # --- no Range: one stream, hashed as it arrives ----------------------------------------
    def _stream(self, answer: Answer | None) -> Result:
        retries = Retries(self.t)
        while True:
            if answer is None:
                answer = self._open_with_retries(None, None)
            hasher, got, failed = PrefixHasher(), 0, []
            with self._transfer(answer, failed):
                self._check_size(answer.total)
                with open(self.part, "wb") as out:
                    while data := answer.response.read(BLOCK):
                        self.t.check_cancel()
                        out.write(data)
                        hasher.update(data)
                        got += len(data)
                        self._count(len(data))
                    out.flush()
                    os.fsync(out.fileno())
                if answer.total is not None and got != answer.total:
                    raise FetchError(
                        self.url, f"connection closed after {got} of {answer.total} bytes"
                    )
                self._check_size(got)
            answer = None
            if not failed:
                return Result(hasher.digests(), got, 0, self.fetched, ranged=False)
            self.progress(-got)  # without Range whatever arrived must be fetched again
            try:
                retries.failed(failed[0])  # no progress kept: each try starts from zero
            except FetchError:
                self.discard()
                raise

    # --- Range: segments over several connections ---------------------------------------
    def _ranged(self, segments: list[Segment], first: Answer | None) -> Result:
        board = Board(segments)
        resumed = board.present()
        self.progress(resumed)
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
                    self._fill(fd, board, seg, answer, abort)
                except BaseException as exc:  # noqa: BLE001 - reported by the coordinator
                    errors.append(exc)
                    abort.set()
                finally:
                    board.release(seg)

        fd = os.open(self.part, os.O_RDWR)
        rfd = os.open(self.part, os.O_RDONLY)
        hasher = PrefixHasher()
        try:
            count = min(self.t.jobs, max(1, len(board.todo)))
            threads = [
                threading.Thread(target=worker, args=(fd,), daemon=True) for _ in range(count)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(PERSIST_EVERY)
                    self._persist(board, fd)
                    hasher.advance(rfd, board.contiguous(self.size))
            leftover = handed.pop("first", None)
            if leftover is not None:  # aborted before anyone read the probe's answer
                leftover.close()
                self.t.slots.release()
            self._persist(board, fd)
            for preferred in (Restart, Cancelled, FetchError):
                for exc in errors:
                    if isinstance(exc, preferred):
                        raise exc
            if errors:
                raise FetchError(self.url, describe(errors[0]))
            self.t.check_cancel()
            hasher.advance(rfd, self.size)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.close(rfd)
        self.state_path.unlink(missing_ok=True)
        return Result(hasher.digests(), self.size, resumed, self.fetched, ranged=True)

    def _fill(
        self, fd: int, board: Board, seg: Segment, answer: Answer | None, abort: threading.Event
    ) -> None:
        retries = Retries(self.t)
        while board.room(seg) > 0:
            if answer is None:
                if not self._acquire_slot(abort):
                    return
                try:
                    answer = self.t.open(self.url, seg.pos, seg.end, if_range=self.validator)
                except FetchError as exc:
                    self.t.slots.release()
                    retries.failed(exc)
                    continue
            before, failed = seg.pos, []
            with self._transfer(answer, failed):
                if answer.status != 206 or answer.start != seg.pos or answer.total != self.size:
                    raise Restart()
                while (room := board.room(seg)) > 0:
                    if abort.is_set():
                        return
                    self.t.check_cancel()
                    data = answer.response.read(min(BLOCK, room))
                    if not data:
                        raise FetchError(self.url, "connection closed mid-transfer")
                    self._count(board.commit(fd, seg, data))
            answer = None
            if not failed:
                continue
            retries.failed(failed[0], progressed=seg.pos > before)

    # --- helpers ---------------------------------------------------------------------------
    @contextmanager
    def _transfer(self, answer: Answer, failed: list[FetchError]) -> Iterator[None]:
        """Read one answer: a network or fetch error lands in ``failed`` (the caller decides
        whether to retry); the answer is closed and its connection slot freed either way."""
        try:
            yield
        except (OSError, http.client.HTTPException) as exc:
            failed.append(FetchError(self.url, describe(exc)))
        except FetchError as exc:
            failed.append(exc)
        finally:
            answer.close()
            self.t.slots.release()

    def _first_end(self) -> int:
        return seg_plan.first_range_end(self.size_hint, self.t.jobs)

    def _acquire_slot(self, abort: threading.Event | None) -> bool:
        while not self.t.slots.acquire(timeout=0.2):
            self.t.check_cancel()
            if abort is not None and abort.is_set():
                return False
        return True

    def _count(self, n: int) -> None:
        with self._count_lock:
            self.fetched += n
        self.t.count_bytes(n)
        self.progress(n)

    def _persist(self, board: Board, fd: int | None) -> None:
        snapshot = board.snapshot()  # taken before the fsync: never claims unwritten bytes
        if fd is not None:
            if snapshot == getattr(self, "_saved", None):
                return
            os.fsync(fd)
        write_json_atomic(
            self.state_path,
            {"url": self.url, "size": self.size, "validator": self.validator, "segments": snapshot},
        )
        self._saved = snapshot
