"""A server without Range support: the body in one stream, hashed as it arrives."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lab.data.connection import BLOCK, Result, Retries
from lab.data.hashing import PrefixHasher
from lab.data.transport import Answer, FetchError

if TYPE_CHECKING:
    from lab.data.fetch import Transfer


def fetch_stream(job: Transfer, answer: Answer | None) -> Result:
    """The whole body in one stream, hashed as it arrives; on a failure it starts over."""
    retries = Retries(job.t)
    while True:
        if answer is None:
            answer = job.open_with_retries(None, None)
        hasher, got, failed = PrefixHasher(), 0, []
        with job.reading(answer, failed):
            job.check_size(answer.total)
            with open(job.part, "wb") as out:
                while data := answer.response.read(BLOCK):
                    job.t.check_cancel()
                    out.write(data)
                    hasher.update(data)
                    got += len(data)
                    job.count(len(data))
                out.flush()
                os.fsync(out.fileno())
            if answer.total is not None and got != answer.total:
                raise FetchError(job.url, f"connection closed after {got} of {answer.total} bytes")
            job.check_size(got)
        answer = None
        if not failed:
            return Result(hasher.digests(), got, 0, job.fetched, ranged=False)
        job.progress(-got)  # without Range whatever arrived must be fetched again
        try:
            retries.failed(failed[0])  # no progress kept: each try starts from zero
        except FetchError:
            job.discard()
            raise
