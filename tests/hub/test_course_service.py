"""The teacher's view (lab/classroom/service.py) over real HTTP, with the hub's say on who
a request is replaced by tokens and a session cookie of this test's own: learners write only
their own record and read only their own; admins see the table and CSV and release solutions
(by POST with the XSRF token); the grade, not a learner's report, is what counts as passed.
The whole service inside a running hub: tests/e2e/test_e2e_hub.py."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
import requests
from support import e2e_stack

from lab.classroom import service

USERS = {
    "tok-alice": {"name": "alice", "admin": False},
    "tok-bob": {"name": "bob", "admin": False},
    "tok-teacher": {"name": "teacher", "admin": True},
}
PREFIX = "/services/course/"


class FakeHubAuth:
    """Who a request is, as JupyterHub's HubOAuthenticated decides it: a token in the
    Authorization header (a learner's lab), or a browser's session cookie."""

    def get_current_user(self):
        header = self.request.headers.get("Authorization", "")
        if header.startswith("token "):
            return USERS.get(header.removeprefix("token "))
        session = self.get_cookie("session")
        return USERS.get(session) if session else None

    def get_login_url(self):
        return "/hub/login"


def serving(app):
    """``app`` on a free port of 127.0.0.1 in a thread: (its URL, a function that stops it)."""
    port = e2e_stack.free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)

        async def listen():
            app.listen(port, "127.0.0.1")
            started.set()

        loop.run_until_complete(listen())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)

    def stop():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return f"http://127.0.0.1:{port}{PREFIX}", stop


@pytest.fixture
def course_service(tmp_path):
    store = service.Store(tmp_path / "course")
    url, stop = serving(
        service.make_app(store, service.Course.from_checkout(), PREFIX, FakeHubAuth)
    )
    yield url, store
    stop()


def test_as_the_hub_runs_it_a_stranger_is_sent_to_the_hubs_sign_in(tmp_path, monkeypatch):
    """The app with JupyterHub's own OAuth (what `serve` runs): a browser without a session
    goes to the hub's authorize page, a request without a token gets a 403, not a 500."""
    env = {
        "JUPYTERHUB_API_TOKEN": "service-token",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",  # nothing listens: no token asked
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_CLIENT_ID": "service-course",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{PREFIX}oauth_callback",
        "JUPYTERHUB_HOST": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = service.Store(tmp_path / "course")
    url, stop = serving(service.hub_app(store, service.Course.from_checkout()))
    try:
        page = requests.get(url, allow_redirects=False, timeout=30)
        assert page.status_code == 302, page.text
        assert page.headers["Location"].startswith("/hub/api/oauth2/authorize?")
        assert "client_id=service-course" in page.headers["Location"]
        assert requests.post(f"{url}api/progress", json={}, timeout=30).status_code == 403
    finally:
        stop()


def as_(token):
    return {"Authorization": f"token {token}"}


def report(*passed, failed=()):
    exercises = {
        key: {"attempts": 2, "first_passed": "2026-12-06T10:00:00", "last": "passed"}
        for key in passed
    }
    exercises |= {key: {"attempts": 1, "first_passed": None, "last": "failed"} for key in failed}
    return {"exercises": exercises, "lessons": {"07_custom_autograd_function": {"runs": 2}}}


def browser(url, who):
    session = requests.Session()
    session.cookies.set("session", who)
    return session


def test_learners_write_only_their_own_record_and_read_only_their_own(course_service):
    url, store = course_service
    assert requests.post(url + "api/progress", json=report("07.1"), headers=as_("tok-alice")).ok
    # a report that names someone else is still the sender's own
    forged = {**report("03.1"), "user": "alice", "name": "alice"}
    assert requests.post(url + "api/progress", json=forged, headers=as_("tok-bob")).ok
    assert store.report("alice")["exercises"].keys() == {"07.1"}
    assert store.report("bob")["exercises"].keys() == {"03.1"}

    assert requests.get(url + "api/records/alice", headers=as_("tok-alice")).status_code == 200
    assert requests.get(url + "api/records/bob", headers=as_("tok-alice")).status_code == 403
    assert requests.get(url + "api/records/bob", headers=as_("tok-teacher")).status_code == 200
    written = requests.post(url + "api/records/bob", json=report("07.2"), headers=as_("tok-alice"))
    assert written.status_code == 403
    assert store.report("bob")["exercises"].keys() == {"03.1"}
    assert requests.post(url + "api/progress", json=report("07.1")).status_code == 403
    # the API takes tokens only: a browser's session cookie (a crafted page) gets nowhere
    cookie = browser(url, "tok-alice").post(url + "api/progress", json=report("07.2"))
    assert cookie.status_code == 403 and store.report("alice")["exercises"].keys() == {"07.1"}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"exercises": {"99.9": {"attempts": 1}}}, 400, "unknown exercise '99.9'"),
        ({"exercises": {"07.1": {"attempts": "many"}}}, 400, "attempts of 07.1"),
        ({"exercises": {"07.1": {"last": "<b>passed</b>"}}}, 400, "passed or failed"),
        ({"lessons": {"../../etc": {"runs": 1}}}, 400, "unknown lesson"),
        ({"exercises": {f"07.{n}": {} for n in range(20000)}}, 413, "too large"),
    ],
)
def test_a_bad_report_is_refused_with_what_was_wrong(course_service, body, status, says):
    url, store = course_service
    answer = requests.post(url + "api/progress", json=body, headers=as_("tok-alice"))
    assert answer.status_code == status
    assert says in answer.json()["message"]
    assert store.report("alice") is None


def test_the_class_table_is_for_admins_and_counts_only_graded_passes(course_service):
    url, store = course_service
    requests.post(url + "api/progress", json=report("07.1", "07.2"), headers=as_("tok-alice"))
    requests.post(url + "api/progress", json=report(failed=("03.1",)), headers=as_("tok-bob"))
    # the grader agrees with alice on 07.1 and not on 07.2 (her own file says passed)
    store.save_grade(
        "alice",
        {
            "graded_at": "2026-12-06T11:00:00+00:00",
            "exercises": {
                "07.1": {"status": "passed"},
                "07.2": {"status": "failed"},
                "01.1": {"status": "not attempted"},
            },
        },
    )
    assert requests.get(url, headers=as_("tok-alice"), allow_redirects=False).status_code == 403
    assert requests.get(url, allow_redirects=False).status_code == 302  # to the hub's login

    page = browser(url, "tok-teacher").get(url)
    assert page.status_code == 200
    alice = re.search(r"<tr><td class=\"l\">alice</td>.*?</tr>", page.text).group(0)
    assert alice.count('class="graded-pass"') == 1 and alice.count('class="graded-fail"') == 1
    assert "<td>1/" in alice  # one graded pass
    assert alice.count('title="not attempted (graded)"') == 1  # 01.1: neither tried nor claimed
    bob = re.search(r"<tr><td class=\"l\">bob</td>.*?</tr>", page.text).group(0)
    assert bob.count('class="trying"') == 1 and "graded-pass" not in bob

    lines = browser(url, "tok-teacher").get(url + "class.csv").text.splitlines()
    assert lines[0] == ",".join(service.CSV_COLUMNS)
    rows = {(r.split(",")[0], r.split(",")[1]): r.split(",") for r in lines[1:]}
    assert rows[("alice", "07.1")][2:4] == ["passed", "passed"]
    assert rows[("alice", "07.2")][2:4] == ["failed", "passed"]
    assert rows[("alice", "01.1")][2:4] == ["not attempted", ""]
    assert rows[("bob", "03.1")][2:4] == ["", "failed"]
    assert rows[("bob", "07.1")][2:4] == ["", ""]
    assert requests.get(url + "class.csv", headers=as_("tok-bob")).status_code == 403


def test_names_are_shown_escaped(course_service):
    url, store = course_service
    store.save_report("<script>alert(1)</script>", {"exercises": {}, "lessons": {}})
    page = browser(url, "tok-teacher").get(url).text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_solutions_are_released_by_an_admins_post_with_xsrf_only(course_service):
    url, store = course_service
    refused = requests.get(url + "api/solutions/07", headers=as_("tok-alice"))
    assert refused.status_code == 403
    assert refused.json()["message"] == (
        "the teacher has not released the solutions of lesson 07 yet"
    )
    teacher = browser(url, "tok-teacher")
    page = teacher.get(url)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    # a crafted link or a form without the token changes nothing
    assert teacher.get(url + "release?lesson=07&released=1").status_code == 405
    assert teacher.post(url + "release", data={"lesson": "07"}).status_code == 403
    # a learner with a matching XSRF cookie and argument of their own still is no admin
    learner = browser(url, "tok-alice")
    learner.cookies.set("_xsrf", "0123456789abcdef")
    post = {"lesson": "07", "released": "1", "_xsrf": "0123456789abcdef"}
    refused = learner.post(url + "release", data=post)
    assert refused.status_code == 403 and "admins" in refused.json()["message"]
    assert store.released() == set()

    done = teacher.post(url + "release", data={"lesson": "07", "released": "1", "_xsrf": xsrf})
    assert done.status_code == 200 and store.released() == {"07"}
    shown = requests.get(url + "api/solutions/07", headers=as_("tok-alice"))
    assert shown.status_code == 200 and "class MySigmoid(torch.autograd.Function)" in shown.text
    assert requests.get(url + "api/solutions/03", headers=as_("tok-alice")).status_code == 403
    assert requests.get(url + "api/solutions/00", headers=as_("tok-alice")).status_code == 404


def test_a_learners_lab_reports_to_the_teachers_view_and_asks_it_for_solutions(
    course_service, monkeypatch, capsys, runs_dir
):
    from lab.cli import main
    from lab.exercises import progress

    url, store = course_service
    monkeypatch.setenv("LAB_CLASSROOM_URL", url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "tok-alice")
    (runs_dir / "07_custom_autograd_function" / "20261206-100000-000").mkdir(parents=True)
    progress.record("07.1", "failed")
    progress.record("07.1", "passed")
    sent = store.report("alice")
    assert sent["exercises"]["07.1"]["attempts"] == 2
    assert sent["exercises"]["07.1"]["last"] == "passed"
    assert sent["lessons"]["07_custom_autograd_function"]["runs"] == 1

    assert main(["exercise", "07", "--solution"]) == 2
    _, err = capsys.readouterr()
    assert err.strip() == (
        "lab exercise: the teacher has not released the solutions of lesson 07 yet"
    )
    store.release("07", True)
    assert main(["exercise", "07", "--solution"]) == 0
    assert "return grad_output * s * (1 - s)" in capsys.readouterr().out


def test_a_hub_that_does_not_answer_never_gets_in_the_learners_way(monkeypatch, capsys):
    from lab.exercises import progress

    monkeypatch.setenv("LAB_CLASSROOM_URL", f"http://127.0.0.1:{e2e_stack.free_port()}/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "tok-alice")
    progress.record("07.1", "passed")
    assert progress.load()["exercises"]["07.1"]["first_passed"]
    assert "progress not sent to the teacher's view" in capsys.readouterr().err
