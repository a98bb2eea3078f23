"""The grader's policy (docker/hub/class_grade.py) and the solutions kept out of learners'
sight (autograd_hub.solution_masks): what a grading container may see and do, who is graded,
and what becomes of a report. The e2e test (tests/e2e/test_e2e_hub.py) runs it for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from conftest import load

import docker
from lab.classroom.service import Store
from lab.course import all_lessons

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def class_grade(autograd_hub):
    return load("class_grade")


@pytest.fixture
def settings(autograd_hub):
    return autograd_hub.settings_from_env(
        {"LAB_UID": "1234", "LAB_GID": "2345", "HUB_PREFIX": "room", "HUB_PIDS_LIMIT": "300"}
    )


def test_every_reference_solution_of_the_course_is_masked_in_a_learners_container(autograd_hub):
    masks = autograd_hub.solution_masks(ROOT / "lab")
    with_solutions = [lesson for lesson in all_lessons() if lesson.solutions_path.is_file()]
    assert len(with_solutions) >= 16
    assert sorted(m["target"] for m in masks) == sorted(
        f"/opt/autograd-lab/lab/course/{lesson.folder.name}/solutions.py"
        for lesson in with_solutions
    )
    assert all(m["source"] == "/dev/null" and m["read_only"] for m in masks)
    assert all(m["type"] == "bind" for m in masks)
    docker.types.Mount(**masks[0])  # what DockerSpawner builds from each


def test_a_lesson_added_later_gets_its_mask_and_a_lesson_without_solutions_none(
    autograd_hub, tmp_path
):
    (tmp_path / "course" / "22_new").mkdir(parents=True)
    (tmp_path / "course" / "22_new" / "solutions.py").write_text("x = 1\n")
    (tmp_path / "course" / "23_reading").mkdir()
    (tmp_path / "course" / "23_reading" / "lesson.py").write_text("# %%\n")
    masks = autograd_hub.solution_masks(tmp_path)
    assert [m["target"] for m in masks] == ["/opt/autograd-lab/lab/course/22_new/solutions.py"]


def test_the_course_folders_come_from_the_hubs_mounts_or_the_environment(autograd_hub):
    mounts = [
        {"Type": "bind", "Source": "/home/t/lab", "Destination": autograd_hub.LESSONS_MOUNT},
        {"Type": "bind", "Source": "/home/t/data", "Destination": autograd_hub.DATA_MOUNT},
    ]
    assert autograd_hub.course_dirs(mounts, {}) == ("/home/t/lab", "/home/t/data")
    assert autograd_hub.course_dirs([], {"HUB_LESSONS_HOST_DIR": "/a", "HUB_DATA_HOST_DIR": "/b"})
    with pytest.raises(autograd_hub.HubConfigError, match="mount the repository's lab/"):
        autograd_hub.course_dirs(mounts[:1], {})


def test_each_learners_work_volume_is_found_and_other_volumes_are_left_alone(
    autograd_hub, class_grade
):
    label = autograd_hub.LABEL
    volumes = [
        {"Name": "room-work-alice", "Labels": {label: "room"}},
        {"Name": "room-runs-alice", "Labels": {label: "room"}},
        {"Name": f"room-work-{autograd_hub.safe_name('josé')}", "Labels": {label: "room"}},
        {"Name": "room-work-bob", "Labels": {label: "other-room"}},  # another hub's learner
        {"Name": "room-work-carol", "Labels": None},  # not made by a hub
        {"Name": "room-work-Mallory", "Labels": {label: "room"}},  # no safe_name makes it
    ]
    assert class_grade.learners(volumes, "room") == {
        "alice": "room-work-alice",
        "josé": "room-work-jos-c3-a9",
    }


def test_the_grading_container_sees_the_work_read_only_and_nothing_else(
    autograd_hub, class_grade, settings
):
    create, host = class_grade.container_spec(settings, "/srv/lab", "room-work-alice", 12345)
    assert create["command"] == [
        "python",
        "-m",
        "lab",
        "grade",
        "--json",
        "--work",
        "/workspace/work",
    ]
    assert create["user"] == "1234:2345"  # the learner's uid, never root
    assert create["environment"]["LAB_GRADE_SEED"] == "12345"
    assert create["network_disabled"] and host["network_mode"] == "none"
    assert host["read_only"] is True
    assert host["binds"] == {
        "room-work-alice": {"bind": "/workspace/work", "mode": "ro"},
        "/srv/lab": {"bind": "/opt/autograd-lab/lab", "mode": "ro"},
    }
    assert list(host["tmpfs"]) == ["/tmp"]
    assert host["cap_drop"] == ["ALL"] and host["security_opt"] == ["no-new-privileges"]
    assert host["pids_limit"] == 300
    assert host["mem_limit"] == host["memswap_limit"] == settings.mem_limit
    targets = {mount["Target"] for mount in host["mounts"]}
    assert targets == {m["target"] for m in autograd_hub.solution_masks()}
    # docker-py accepts it as the engine API's host config
    docker.APIClient(base_url="unix:///nonexistent", version="1.43").create_host_config(**host)


class FakeEngine:
    """The few Docker API calls the grader makes, answered as a real engine would."""

    def __init__(self, status: int = 0, out: bytes = b"", err: bytes = b"", wait=None):
        self.status, self.out, self.err, self.wait_error = status, out, err, wait
        self.created, self.removed = [], []

    def create_host_config(self, **kwargs):
        return kwargs

    def create_container(self, **kwargs):
        self.created.append(kwargs)
        return {"Id": f"c{len(self.created)}"}

    def start(self, container):
        pass

    def wait(self, container, timeout):
        if self.wait_error:
            raise self.wait_error
        return {"StatusCode": self.status}

    def logs(self, container, stdout, stderr):
        return self.out if stdout else self.err

    def remove_container(self, container, force):
        self.removed.append(container["Id"])


REPORT = {"graded_at": "2026-12-06T11:00:00+00:00", "exercises": {"01.1": {"status": "passed"}}}


def test_a_report_comes_back_and_the_container_is_removed(class_grade, settings):
    engine = FakeEngine(out=json.dumps(REPORT).encode())
    assert class_grade.grade_one(engine, settings, "/srv/lab", "room-work-a", 60) == REPORT
    assert engine.removed == ["c1"]
    seeds = set()
    for _ in range(5):
        class_grade.grade_one(engine, settings, "/srv/lab", "room-work-a", 60)
        seeds.add(engine.created[-1]["environment"]["LAB_GRADE_SEED"])
    assert len(seeds) == 5  # drawn afresh for every run


@pytest.mark.parametrize(
    "engine, said",
    [
        (FakeEngine(status=2, err=b"Traceback\nlab: no such folder /workspace/work\n"), "exit 2"),
        (FakeEngine(out=b"half a report {"), "printed no report"),
        (FakeEngine(out=b'{"exercises": 3}'), "has no exercises"),
        (FakeEngine(wait=requests.exceptions.ReadTimeout("read timed out")), "longer than 60 s"),
    ],
)
def test_no_report_is_a_one_line_reason_and_the_container_still_goes(
    class_grade, settings, engine, said
):
    with pytest.raises(class_grade.GradeError, match=said) as caught:
        class_grade.grade_one(engine, settings, "/srv/lab", "room-work-a", 60)
    assert "\n" not in str(caught.value)
    assert engine.removed == ["c1"]


def test_the_run_grades_each_learner_stores_the_report_and_says_who_failed(
    class_grade, autograd_hub, monkeypatch, tmp_path, capsys
):
    label = autograd_hub.LABEL

    class Client(FakeEngine):
        def __init__(self, **_):
            super().__init__(out=json.dumps(REPORT).encode())

        def inspect_container(self, _):
            return {
                "Mounts": [
                    {"Type": "bind", "Source": "/h/lab", "Destination": autograd_hub.LESSONS_MOUNT},
                    {"Type": "bind", "Source": "/h/data", "Destination": autograd_hub.DATA_MOUNT},
                ]
            }

        def volumes(self, filters):
            return {
                "Volumes": [
                    {"Name": f"autograd-hub-work-{n}", "Labels": {label: "autograd-hub"}}
                    for n in ("alice", "bob")
                ]
            }

        def wait(self, container, timeout):
            bob = self.created[-1]["host_config"]["binds"].get("autograd-hub-work-bob")
            return {"StatusCode": 3 if bob else 0}

    monkeypatch.setattr(class_grade.docker, "APIClient", Client)
    monkeypatch.setattr(class_grade.hub, "STATE_DIR", tmp_path)
    for name in ("HUB_PREFIX", "LAB_UID", "LAB_GID"):
        monkeypatch.delenv(name, raising=False)
    assert class_grade.main([]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("alice: 1/1 passed (")
    assert out[1] == "bob: not graded: lab grade failed (exit 3): exit status 3"
    store = Store(tmp_path / "course")
    assert store.grade("alice")["exercises"] == REPORT["exercises"]
    assert store.grade("bob") is None
    assert class_grade.main(["carol"]) == 2
    assert "no work volume for carol" in capsys.readouterr().err
