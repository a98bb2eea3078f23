"""The teacher's view of the class: a JupyterHub service at ``/services/course/``.

- Each learner's lab reports their progress here (``lab.classroom``, after every check, hint
  and lesson run), authenticated by their server's API token: a learner can only ever write
  their own record, and read only their own.
- Admins (the hub's teachers) see the class table — per learner: lessons run, each exercise
  attempted / passed, attempts, first pass, last activity — live, without opening anyone's
  server (``/services/course/``), download it as CSV (``class.csv``; on the hub host
  ``invoke class-progress --csv FILE``), and release each lesson's reference solutions.
- What a learner reports is their own word (their progress file is theirs to edit). The grade
  is not: ``invoke class-grade`` re-runs every learner's exercise copies through the checks in
  a fresh, network-less container (``grade.py``) and its verdicts are stored here, beside the
  reports; the table shows both, and only the grade counts as passed.

Records live in ``$HUB_STATE_DIR/course/`` (the hub's state volume), one JSON file per learner
named by the sha256 of their name, written atomically. Nothing here trusts a name in a request
body: who writes is who the hub says the token belongs to.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tornado import web

from lab.files import atomic_write

MAX_REPORT_BYTES = 256 * 1024  # a whole course's progress is a few KiB
_STAMP = re.compile(r"^[0-9T:.+\- ]{10,32}$")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- storage ----------------------------------------------------------------------------------


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


class Store:
    """Reports, grades and released lessons, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, kind: str, user: str) -> Path:
        return self.root / kind / (hashlib.sha256(user.encode("utf-8")).hexdigest() + ".json")

    def save_report(self, user: str, report: dict) -> None:
        _write_json(self._file("reports", user), {"user": user, "received": _now(), **report})

    def report(self, user: str) -> dict | None:
        return _read_json(self._file("reports", user))

    def save_grade(self, user: str, grade: dict) -> None:
        _write_json(self._file("grades", user), {"user": user, **grade})

    def grade(self, user: str) -> dict | None:
        return _read_json(self._file("grades", user))

    def records(self) -> dict[str, tuple[dict | None, dict | None]]:
        """Every learner with a report or a grade: ``{name: (report, grade)}``, each file
        read once."""
        found: dict[str, list] = {}
        for slot, kind in enumerate(("reports", "grades")):
            for path in (self.root / kind).glob("*.json"):
                data = _read_json(path)
                if data and isinstance(data.get("user"), str):
                    found.setdefault(data["user"], [None, None])[slot] = data
        return {name: tuple(found[name]) for name in sorted(found)}

    def released(self) -> set[str]:
        return set((_read_json(self.root / "released.json") or {}).get("lessons", []))

    def release(self, lesson: str, released: bool) -> None:
        lessons = self.released()
        lessons = lessons | {lesson} if released else lessons - {lesson}
        _write_json(self.root / "released.json", {"lessons": sorted(lessons)})


# --- what a learner may report ------------------------------------------------------------------


class BadReport(ValueError):
    pass


def clean_report(raw: object, exercises: list[str], lessons: list[str]) -> dict:
    """The parts of a learner's report the table shows, each checked: known exercises and
    lessons only, counts as small whole numbers, dates as ISO stamps. Anything else: BadReport."""
    if not isinstance(raw, dict):
        raise BadReport("a report is a JSON object")
    report: dict = {"exercises": {}, "lessons": {}}
    for key, entry in (raw.get("exercises") or {}).items():
        if key not in exercises or not isinstance(entry, dict):
            raise BadReport(f"unknown exercise {key!r}")
        attempts = entry.get("attempts", 0)
        if not isinstance(attempts, int) or not 0 <= attempts < 10**6:
            raise BadReport(f"attempts of {key} must be a whole number")
        first = entry.get("first_passed")
        if first is not None and not (isinstance(first, str) and _STAMP.match(first)):
            raise BadReport(f"first_passed of {key} must be a date")
        last = entry.get("last")
        if last not in (None, "passed", "failed"):
            raise BadReport(f"last of {key} must be passed or failed")
        report["exercises"][key] = {"attempts": attempts, "first_passed": first, "last": last}
    for name, entry in (raw.get("lessons") or {}).items():
        if name not in lessons or not isinstance(entry, dict):
            raise BadReport(f"unknown lesson {name!r}")
        runs, last = entry.get("runs", 0), entry.get("last")
        if not isinstance(runs, int) or not 0 <= runs < 10**6:
            raise BadReport(f"runs of {name} must be a whole number")
        if last is not None and not (isinstance(last, str) and _STAMP.match(last)):
            raise BadReport(f"last run of {name} must be a date")
        report["lessons"][name] = {"runs": runs, "last": last}
    return report


# --- the class table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    reported: str | None  # "passed" | "failed" | None (never checked)
    attempts: int
    first_passed: str | None
    graded: str | None  # the grader's: "passed", "failed", "not attempted"; None: not graded


@dataclass(frozen=True)
class Row:
    learner: str
    lessons_run: int
    last_activity: str | None
    cells: dict[str, Cell]
    graded_at: str | None

    @property
    def passed(self) -> int:
        return sum(cell.graded == "passed" for cell in self.cells.values())


def class_table(store: Store, exercises: list[str]) -> list[Row]:
    rows = []
    for learner, (report, grade) in store.records().items():
        report, grade = report or {}, grade or {}
        verdicts = grade.get("exercises", {})
        cells = {}
        for key in exercises:
            entry = report.get("exercises", {}).get(key, {})
            verdict = verdicts.get(key)
            cells[key] = Cell(
                entry.get("last"),
                entry.get("attempts", 0),
                entry.get("first_passed"),
                None if verdict is None else str(verdict.get("status")),
            )
        lessons = report.get("lessons", {})
        stamps = [report.get("received")] + [each.get("last") for each in lessons.values()]
        rows.append(
            Row(
                learner,
                sum(1 for each in lessons.values() if each.get("runs")),
                max((s for s in stamps if s), default=None),
                cells,
                grade.get("graded_at"),
            )
        )
    return rows


CSV_COLUMNS = (
    "learner",
    "exercise",
    "graded",
    "reported",
    "attempts",
    "first_passed",
    "lessons_run",
    "last_activity",
    "graded_at",
)


def to_csv(rows: list[Row]) -> str:
    """One line per learner and exercise: what a spreadsheet pivots best."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        for key, cell in row.cells.items():
            writer.writerow(
                (
                    row.learner,
                    key,
                    cell.graded or "",
                    cell.reported or "",
                    cell.attempts,
                    cell.first_passed or "",
                    row.lessons_run,
                    row.last_activity or "",
                    row.graded_at or "",
                )
            )
    return out.getvalue()


def _cell_html(cell: Cell) -> str:
    if cell.graded == "passed":
        mark, kind = "✓", "graded-pass"
    elif cell.graded == "failed" or (cell.graded and cell.reported):
        # failed, or reported but the grader found the stub: the report is not what is there
        mark, kind = "✗", "graded-fail"
    elif cell.graded:
        return '<td class="none" title="not attempted (graded)">·</td>'
    elif cell.reported == "passed":
        mark, kind = "✓?", "reported-pass"  # their word, not yet graded
    elif cell.reported == "failed":
        mark, kind = "…", "trying"
    else:
        return '<td class="none">·</td>'
    title = f"{cell.attempts} attempts" + (
        f", first passed {cell.first_passed}" if cell.first_passed else ""
    )
    return f'<td class="{kind}" title="{html.escape(title)}">{mark} {cell.attempts}</td>'


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Class progress</title>
<style>
body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25em .5em;text-align:center}} th.l,td.l{{text-align:left}}
.graded-pass{{background:#c8f0c8}} .graded-fail{{background:#f6c6c6}}
.reported-pass{{background:#fff1b8}} .trying{{background:#f3f3f3}} .none{{color:#aaa}}
</style></head><body>
<h1>Class progress</h1>
<p>{summary} · <a href="class.csv">CSV</a>. ✓/✗: graded by <code>invoke class-grade</code>
(last run per learner in the last column; ✗ too where the report claims an answer the grader
did not find); ✓?: passed by the learner's own report, not yet graded; …: attempted; ·: not
attempted; the number is the attempts they reported.</p>
<table><thead><tr><th class="l">learner</th><th>lessons run</th><th>last activity</th>
{headers}<th>graded passes</th><th>graded at</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Solutions</h2>
<p>Learners see a lesson's reference solutions (<code>lab exercise NN --solution</code>) once
you release them.</p>
<table><tbody>{releases}</tbody></table>
</body></html>
"""


def render_html(rows: list[Row], exercises: list[str], lessons: dict[str, str], released, xsrf):
    headers = "".join(f"<th>{html.escape(key)}</th>" for key in exercises)
    body = "".join(
        "<tr>"
        f'<td class="l">{html.escape(row.learner)}</td><td>{row.lessons_run}</td>'
        f"<td>{html.escape(row.last_activity or '-')}</td>"
        + "".join(_cell_html(row.cells[key]) for key in exercises)
        + f"<td>{row.passed}/{len(exercises)}</td><td>{html.escape(row.graded_at or '-')}</td>"
        "</tr>"
        for row in rows
    )
    releases = "".join(
        f"<tr><td class='l'>{html.escape(title)}</td><td>"  # the title starts with its number
        f"{'released' if number in released else 'not released'}</td><td>"
        f'<form method="post" action="release">{xsrf}'
        f'<input type="hidden" name="lesson" value="{html.escape(number)}">'
        f'<input type="hidden" name="released" value="{"0" if number in released else "1"}">'
        f'<button type="submit">{"withdraw" if number in released else "release"}</button>'
        "</form></td></tr>"
        for number, title in lessons.items()
    )
    summary = f"{len(rows)} learners, {len(exercises)} exercises"
    return PAGE.format(summary=summary, headers=headers, rows=body, releases=releases)


# --- the web service ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Course:
    """What the service needs to know of the course (read from the checkout's lab/course)."""

    exercises: list[str]  # ["01.1", …]
    lessons: list[str]  # ["00_interactive_playground", …]
    with_solutions: dict[str, tuple[str, Path]]  # "07" -> (title, solutions.py)

    @classmethod
    def from_checkout(cls) -> Course:
        from lab.course import all_lessons

        lessons = all_lessons()
        return cls(
            [e.key for lesson in lessons for e in lesson.exercises],
            [lesson.run_name for lesson in lessons],
            {
                lesson.number: (lesson.exercises_title, lesson.solutions_path)
                for lesson in lessons
                if lesson.exercises and lesson.solutions_path.is_file()
            },
        )


class _Handler(web.RequestHandler):
    @property
    def store(self) -> Store:
        return self.settings["store"]

    @property
    def course(self) -> Course:
        return self.settings["course"]

    def me(self) -> dict:
        user = self.current_user
        if not user:
            raise web.HTTPError(403, "not signed in to the hub")
        return user

    def admin(self) -> dict:
        user = self.me()
        if not user.get("admin"):
            raise web.HTTPError(403, "the class table is for the hub's admins")
        return user

    def write_error(self, status_code: int, **kwargs) -> None:
        reason = self._reason
        if "exc_info" in kwargs and isinstance(kwargs["exc_info"][1], web.HTTPError):
            reason = kwargs["exc_info"][1].log_message or reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": reason}))


class TableHandler(_Handler):
    @web.authenticated
    def get(self) -> None:
        self.admin()
        course = self.course
        lessons = {number: title for number, (title, _) in course.with_solutions.items()}
        rows = class_table(self.store, course.exercises)
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.finish(
            render_html(
                rows, course.exercises, lessons, self.store.released(), self.xsrf_form_html()
            )
        )


class CsvHandler(_Handler):
    @web.authenticated
    def get(self) -> None:
        self.admin()
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="class-progress.csv"')
        self.finish(to_csv(class_table(self.store, self.course.exercises)))


class ReleaseHandler(_Handler):
    @web.authenticated
    def post(self) -> None:
        self.admin()
        lesson = self.get_body_argument("lesson", "")
        if lesson not in self.course.with_solutions:
            raise web.HTTPError(400, f"no solutions for lesson {lesson!r}")
        self.store.release(lesson, self.get_body_argument("released", "1") == "1")
        self.redirect(self.request.path.rsplit("/", 1)[0] + "/")


class ProgressHandler(_Handler):
    """POST: the signed-in learner's own report; the body names nobody."""

    def post(self) -> None:
        user = self.me()
        if len(self.request.body) > MAX_REPORT_BYTES:
            raise web.HTTPError(413, "that report is too large")
        try:
            report = clean_report(
                json.loads(self.request.body or b"null"), self.course.exercises, self.course.lessons
            )
        except (ValueError, BadReport) as exc:
            raise web.HTTPError(400, f"not a progress report: {exc}") from None
        self.store.save_report(user["name"], report)
        self.finish({"saved": user["name"]})


class RecordHandler(_Handler):
    """GET one learner's record: their report and grade; for themselves or an admin."""

    def get(self, name: str) -> None:
        user = self.me()
        if name != user["name"] and not user.get("admin"):
            raise web.HTTPError(403, "a learner sees only their own record")
        self.finish({"report": self.store.report(name), "grade": self.store.grade(name)})

    def post(self, name: str) -> None:
        self.me()
        raise web.HTTPError(403, "records are written by their learner's lab and the grader only")


class SolutionsHandler(_Handler):
    def get(self, number: str) -> None:
        user = self.me()
        if number not in self.course.with_solutions:
            raise web.HTTPError(404, f"lesson {number} has no solutions")
        if number not in self.store.released() and not user.get("admin"):
            raise web.HTTPError(
                403, f"the teacher has not released the solutions of lesson {number} yet"
            )
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(self.course.with_solutions[number][1].read_text(encoding="utf-8"))


class _TokenOnly:
    """The API: a learner's lab calls it with its server's token in the Authorization header,
    never with a browser's cookie — so no page elsewhere can make a browser call it (no XSRF
    to check)."""

    def check_xsrf_cookie(self) -> None:
        return None

    def get_current_user(self):
        if not self.request.headers.get("Authorization"):
            return None
        return super().get_current_user()


def make_app(store: Store, course: Course, prefix: str, auth_mixin, **settings):
    """The service's tornado app under ``prefix`` (``/services/course/``); ``auth_mixin``
    says who a request is (JupyterHub's ``HubOAuthenticated`` in the hub): pages for admins'
    browsers (POSTs checked for XSRF), an API for learners' labs (tokens only)."""

    def page(path: str, handler: type) -> tuple:
        return (prefix + path, type(handler.__name__, (auth_mixin, handler), {}))

    def api(path: str, handler: type) -> tuple:
        return (prefix + path, type(handler.__name__, (_TokenOnly, auth_mixin, handler), {}))

    handlers = [
        page("", TableHandler),
        page("class.csv", CsvHandler),
        page("release", ReleaseHandler),
        api("api/progress", ProgressHandler),
        api(r"api/records/([^/]+)", RecordHandler),
        api(r"api/solutions/(\d{2})", SolutionsHandler),
    ]
    return web.Application(handlers, store=store, course=course, xsrf_cookies=True, **settings)


def hub_app(store: Store, course: Course):
    """The app as the hub runs it: JupyterHub's OAuth says who a request is (JupyterHub
    passes the service its token, client id and prefix in the environment)."""
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join

    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    # Signs the admin's OAuth cookie; a new one each start only means a new sign-in.
    app = make_app(store, course, prefix, HubOAuthenticated, cookie_secret=os.urandom(32))
    app.add_handlers(".*", [(url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler)])
    return app


def main(argv: list[str]) -> int:
    """``python -m lab.classroom.service serve`` (the hub runs it) or ``… csv`` (prints the
    class table as CSV: ``invoke class-progress --csv FILE``)."""
    store = Store(Path(os.environ.get("HUB_STATE_DIR", "/srv/jupyterhub")) / "course")
    course = Course.from_checkout()
    if argv[:1] == ["csv"]:
        sys.stdout.write(to_csv(class_table(store, course.exercises)))
        return 0
    import asyncio
    from urllib.parse import urlparse

    app = hub_app(store, course)
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])

    async def serve() -> None:
        # every interface of the hub's container/pod: the URL's host is the name others use
        app.listen(url.port, "0.0.0.0")
        await asyncio.Event().wait()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
