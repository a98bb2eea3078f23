"""One file from one URL into a part file, resumable: ``Transfer`` resumes or probes, then
hands the body to one of two jobs.

The first request asks for the first range. A 206 answer proves the server honours Range and
gives the total size: the file is preallocated, cut into segments, and ranged.py fetches them
over up to ``jobs`` connections at once. A 200 answer means no Range support: stream.py takes
the body in one stream, hashed as it arrives. connection.py holds what both share (slots,
reading an answer, the retry budget).

Resume: ``<part>.json`` records every segment's progress. It is rewritten (after fsync of the
part file, so it never claims bytes that are not on disk) a few times a second; after Ctrl-C,
kill -9 or a dropped connection a rerun asks only for the missing ranges.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lab.data import segments as seg_plan
from lab.data.connection import Connection, Restart, Result
from lab.data.ranged import fetch_ranged
from lab.data.segments import Board, Segment
from lab.data.store import read_json, write_json_atomic
from lab.data.stream import fetch_stream
from lab.data.transport import Answer, FetchError, Transport


class Transfer(Connection):
    """One file from one URL into its part file: resume or probe, then stream or ranges."""

    def __init__(
        self,
        transport: Transport,
        url: str,
        part: Path,
        size_hint: int | None,
        progress: Callable[[int], None],
        resume_from_other_url: bool,
    ) -> None:
        super().__init__(transport, url, size_hint, progress)
        self.part = part
        self.state_path = part.with_name(part.name + ".json")
        self.resume_from_other_url = resume_from_other_url
        self.validator: str | None = None

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

    def _probe(self) -> Answer:
        try:
            return self.open_with_retries(0, self._first_end())
        except FetchError as exc:
            if not exc.cause.startswith("HTTP 416"):
                raise
            return self.open_with_retries(None, None)  # e.g. an empty file: ask without Range

    def _run_once(self, fresh: bool) -> Result:
        segments = None if fresh else self._load_state()
        first = None
        if segments is None:
            self.discard()
            first = self._probe()
            try:
                self.check_size(first.total)
            except FetchError:
                first.close()
                self.t.slots.release()
                raise
            if first.status != 206:
                return fetch_stream(self, first)
            if first.total is None or first.start != 0:  # a range answer we cannot build on
                first.close()
                self.t.slots.release()
                return fetch_stream(self, None)
            self.size, self.validator = first.total, first.validator
            segments = seg_plan.plan(self.size, self._first_end(), self.t.jobs)
            with open(self.part, "wb") as handle:
                handle.truncate(self.size)  # sparse preallocation; segments fill it in place
            self.persist(Board(segments), fd=None)
        return fetch_ranged(self, segments, first)

    # --- the resume record: <part>.json ---------------------------------------------------
    def persist(self, board: Board, fd: int | None) -> None:
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

    def _first_end(self) -> int:
        return seg_plan.first_range_end(self.size_hint, self.t.jobs)
