"""`python -m lab` started as root in the lab container re-executes itself as the lab user
(or, where the entrypoint made the learner uid 0, as uid 0 without capabilities)."""

from __future__ import annotations

import pwd

import pytest

from lab import privileges

LAB = pwd.struct_passwd(("lab", "x", 1001, 1002, "", "/home/lab", "/bin/bash"))
LAB_AS_ROOT = pwd.struct_passwd(("lab", "x", 0, 0, "", "/home/lab", "/bin/bash"))
ARGV = ["/opt/venv/bin/python", "-m", "lab", "lesson", "07"]


@pytest.fixture
def execs(monkeypatch):
    calls = []
    monkeypatch.setattr(privileges.os, "execvp", lambda file, argv: calls.append((file, argv)))
    monkeypatch.setattr(pwd, "getpwnam", lambda name: {"lab": LAB}[name])
    monkeypatch.setattr(privileges.sys, "argv", ["/x/lab/__main__.py", "lesson", "07"])
    monkeypatch.setattr(privileges.sys, "executable", "/opt/venv/bin/python")
    return calls


def test_root_in_the_container_becomes_the_lab_user(monkeypatch, execs):
    monkeypatch.setenv("LAB_CONTAINER_USER", "lab")
    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 0)
    privileges.run_as_lab_user()
    assert execs == [
        ("setpriv", ["setpriv", "--reuid=1001", "--regid=1002", "--clear-groups", "--", *ARGV])
    ]
    assert privileges.os.environ["HOME"] == "/home/lab"


def test_a_learner_who_is_uid_0_keeps_it_without_capabilities(monkeypatch, execs, tmp_path):
    """Rootless engines: uid 0 of the namespace is the host user who owns the checkout."""
    monkeypatch.setenv("LAB_CONTAINER_USER", "lab")
    monkeypatch.setattr(pwd, "getpwnam", lambda name: LAB_AS_ROOT)
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 0)
    status = tmp_path / "status"
    monkeypatch.setattr(privileges, "bounding_capabilities", lambda: int(status.read_text(), 16))
    status.write_text("000001ffffffffff")  # `docker compose exec`: the container's capabilities
    privileges.run_as_lab_user()
    status.write_text("0")  # the re-executed command: nothing left to drop
    privileges.run_as_lab_user()
    drop = ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    assert execs == [
        ("setpriv", ["setpriv", "--reuid=0", "--regid=0", "--clear-groups", *drop, "--", *ARGV])
    ]


def test_the_bounding_set_is_read_from_proc(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n")
    assert privileges.bounding_capabilities(status) == 0xA80425FB


@pytest.mark.parametrize(("container_user", "euid"), [("lab", 1001), ("", 0), (None, 0)])
def test_anything_else_runs_as_it_is(monkeypatch, execs, container_user, euid):
    if container_user is None:
        monkeypatch.delenv("LAB_CONTAINER_USER", raising=False)
    else:
        monkeypatch.setenv("LAB_CONTAINER_USER", container_user)
    monkeypatch.setattr(privileges.os, "geteuid", lambda: euid)
    privileges.run_as_lab_user()
    assert execs == []
