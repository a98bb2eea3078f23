"""`python -m lab` started as root in the lab container re-executes itself as the lab user."""

from __future__ import annotations

import pwd

import pytest

from lab import privileges

LAB = pwd.struct_passwd(("lab", "x", 1001, 1002, "", "/home/lab", "/bin/bash"))


@pytest.fixture
def execs(monkeypatch):
    calls = []
    monkeypatch.setattr(privileges.os, "execvp", lambda file, argv: calls.append((file, argv)))
    monkeypatch.setattr(privileges.pwd, "getpwnam", lambda name: {"lab": LAB}[name])
    monkeypatch.setattr(privileges.sys, "argv", ["/x/lab/__main__.py", "lesson", "07"])
    monkeypatch.setattr(privileges.sys, "executable", "/opt/venv/bin/python")
    return calls


def test_root_in_the_container_becomes_the_lab_user(monkeypatch, execs):
    monkeypatch.setenv("LAB_CONTAINER_USER", "lab")
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 0)
    privileges.run_as_lab_user()
    assert execs == [
        (
            "setpriv",
            [
                "setpriv",
                "--reuid=1001",
                "--regid=1002",
                "--clear-groups",
                "--",
                "/opt/venv/bin/python",
                "-m",
                "lab",
                "lesson",
                "07",
            ],
        )
    ]
    assert privileges.os.environ["HOME"] == "/home/lab"


@pytest.mark.parametrize(("container_user", "euid"), [("lab", 1001), ("", 0), (None, 0)])
def test_anything_else_runs_as_it_is(monkeypatch, execs, container_user, euid):
    if container_user is None:
        monkeypatch.delenv("LAB_CONTAINER_USER", raising=False)
    else:
        monkeypatch.setenv("LAB_CONTAINER_USER", container_user)
    monkeypatch.setattr(privileges.os, "geteuid", lambda: euid)
    privileges.run_as_lab_user()
    assert execs == []
