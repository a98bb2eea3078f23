"""A learner's lab on the classroom hub talks to the teacher's view (the hub's ``course``
service, :mod:`lab.classroom.service`): it reports the learner's progress after each check,
hint and lesson run, and fetches a lesson's reference solutions once the teacher released them.

Only on the hub: the hub sets ``LAB_CLASSROOM_URL`` and JupyterHub the server's own
``JUPYTERHUB_API_TOKEN``, which says who the learner is. Elsewhere (self-study) nothing here
does anything. A report that cannot be delivered never gets in the learner's way: the next
one carries everything again. Stdlib only.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

from lab.errors import LabError

TIMEOUT_S = 3.0


class ClassroomError(LabError):
    pass


def url() -> str | None:
    """The course service's base URL when this lab is a learner's server on the hub."""
    base = os.environ.get("LAB_CLASSROOM_URL", "").strip()
    if not base or not os.environ.get("JUPYTERHUB_API_TOKEN"):
        return None
    return base if base.endswith("/") else base + "/"


def _request(path: str, body: dict | None = None) -> urllib.request.Request:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url() + path, data=data, method="POST" if data else "GET")
    request.add_header("Authorization", f"token {os.environ['JUPYTERHUB_API_TOKEN']}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    return request


def report_progress() -> bool:
    """Send the learner's progress (exercises, lessons run) to the teacher's view; True when
    it arrived. Silent when not on the hub; one line on stderr when the hub did not take it."""
    if url() is None:
        return False
    from lab.exercises import progress

    try:
        exercises = {
            key: {k: entry.get(k) for k in ("attempts", "first_passed", "last")}
            for key, entry in progress.load()["exercises"].items()
            if entry.get("attempts")
        }
        lessons = {
            name: {"runs": seen["runs"], "last": seen["last"].isoformat(timespec="seconds")}
            for name, seen in progress.lessons_run().items()
        }
        with urllib.request.urlopen(
            _request("api/progress", {"exercises": exercises, "lessons": lessons}),
            timeout=TIMEOUT_S,
        ):
            return True
    except (OSError, LabError, ValueError) as exc:
        print(f"(progress not sent to the teacher's view: {exc})", file=sys.stderr)
        return False


def released_solutions(number: str) -> str:
    """The reference solutions of lesson ``number`` from the hub, once the teacher released
    them; otherwise the hub's one-line reason as a ClassroomError."""
    try:
        with urllib.request.urlopen(_request(f"api/solutions/{number}"), timeout=10) as answer:
            return answer.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read().decode("utf-8"))["message"]
        except (ValueError, KeyError):
            reason = f"the hub answered {exc.code}"
        raise ClassroomError(reason) from None
    except OSError as exc:
        raise ClassroomError(
            f"cannot reach the teacher's course service ({exc}); try again, or ask your teacher"
        ) from None
