"""How a file is cut into byte ranges, and who fetches which.

The plan gives every connection the same number of equal segments. When a connection runs out
of work near the end, it takes the second half of the segment that would otherwise finish
last (work stealing), so one slow connection does not hold the whole file back.
Module-level sizes are read at call time, so tests can shrink them to split small files.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from lab.files import write_at

CHUNK_MIN = 1 << 20  # no range smaller than this
SPLIT_MIN = 4 << 20  # smaller files go in one request
SEGMENTS_PER_JOB = 4  # several segments per connection, so fast connections take more
STEAL_AFTER = 1.0  # seconds: only a segment expected to take longer than this is split
JUDGE_AFTER = 0.3  # seconds a connection runs before its speed is judged


@dataclass
class Segment:
    start: int
    end: int  # exclusive
    pos: int  # bytes [start, pos) are written to the part file


def first_range_end(size_hint: int | None, jobs: int) -> int:
    if size_hint is not None and size_hint <= SPLIT_MIN:
        return max(size_hint, 1)
    if size_hint is None:
        return CHUNK_MIN
    return max(CHUNK_MIN, math.ceil(size_hint / (jobs * SEGMENTS_PER_JOB)))


def plan(size: int, first_end: int, jobs: int) -> list[Segment]:
    first_end = min(first_end, size)
    segments = [Segment(0, first_end, 0)]
    rest = size - first_end
    if rest > 0:
        # the first segment counts too: jobs * SEGMENTS_PER_JOB in all, so rounds come out even
        count = max(1, min(jobs * SEGMENTS_PER_JOB - 1, math.ceil(rest / CHUNK_MIN)))
        step = math.ceil(rest / count)
        segments += [Segment(s, min(s + step, size), s) for s in range(first_end, size, step)]
    return segments


class Board:
    """The segments of one file and who is fetching which. Thread-safe."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = sorted(segments, key=lambda s: s.start)
        self.todo = deque(s for s in self.segments if s.pos < s.end)
        self.active: dict[int, tuple[Segment, float, int]] = {}  # id -> (seg, since, pos then)
        self.lock = threading.Lock()

    def take(self) -> Segment | None:
        """The next segment to fetch; None when nothing is left or worth splitting (yet)."""
        with self.lock:
            seg = self.todo.popleft() if self.todo else self._steal()
            if seg is not None:
                self.active[id(seg)] = (seg, time.monotonic(), seg.pos)
            return seg

    def release(self, seg: Segment) -> None:
        with self.lock:
            self.active.pop(id(seg), None)

    def busy(self) -> bool:
        with self.lock:
            return bool(self.active or self.todo)

    def _steal(self) -> Segment | None:
        now, victim, slowest = time.monotonic(), None, STEAL_AFTER
        for seg, since, pos_then in self.active.values():
            left = seg.end - seg.pos
            if left < 2 * CHUNK_MIN or now - since < JUDGE_AFTER:
                continue
            rate = (seg.pos - pos_then) / (now - since)
            eta = left / rate if rate > 0 else math.inf
            if eta > slowest:
                victim, slowest = seg, eta
        if victim is None:
            return None
        mid = victim.pos + (victim.end - victim.pos) // 2
        stolen = Segment(mid, victim.end, mid)
        victim.end = mid  # its connection stops there and closes
        bisect.insort(self.segments, stolen, key=lambda s: s.start)
        return stolen

    def room(self, seg: Segment) -> int:
        with self.lock:
            return seg.end - seg.pos

    def commit(self, fd: int, seg: Segment, data: bytes) -> int:
        """Write what arrived for ``seg``, minus any tail stolen meanwhile; returns bytes kept."""
        with self.lock:
            data = data[: max(0, seg.end - seg.pos)]
            if data:
                write_at(fd, data, seg.pos)
                seg.pos += len(data)
            return len(data)

    def snapshot(self) -> list[list[int]]:
        with self.lock:
            return [[s.start, s.end, s.pos] for s in self.segments]

    def contiguous(self, size: int) -> int:
        """End of the fully written prefix of the file."""
        with self.lock:
            for seg in self.segments:
                if seg.pos < seg.end:
                    return seg.pos
            return size

    def present(self) -> int:
        with self.lock:
            return sum(s.pos - s.start for s in self.segments)
