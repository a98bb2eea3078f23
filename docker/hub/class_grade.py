"""``invoke class-grade``: every learner's exercises graded where their own lab cannot reach,
the verdicts stored for the teacher's view (lab/classroom/service.py shows them as ✓/✗).

Per learner, a fresh container of the lab image runs ``python -m lab grade --json`` over their
work volume: the volume read-only, no network, a read-only root filesystem, no capabilities,
the learner's uid, the course with its solutions masked, and a seed drawn for this run only
(``LAB_GRADE_SEED``: every check runs a second time on inputs the learner has not seen). What
the learner reported (progress.json, their lab's reports) counts for nothing here.

Run in the hub's container (it has the Docker socket and the state volume)::

    python -m class_grade [NAME ...] [--timeout SECONDS]

One line per learner; exit 1 when a learner could not be graded (the others still are).
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import sys
import time

import autograd_hub as hub
import requests

import docker
from lab.classroom.service import Store

GRADE = ["python", "-m", "lab", "grade", "--json", "--work", hub.WORK_DIR]
SCRATCH = "/tmp"  # noqa: S108 - the container's own tmpfs, the checks' scratch files


class GradeError(Exception):
    """A learner who could not be graded; str() says why in one line."""


def learners(volumes: list[dict], prefix: str) -> dict[str, str]:
    """Learner name -> work volume, for every work volume this hub made (``docker volume
    ls`` entries); volumes of other hubs or not made for a learner are left alone."""
    marker = f"{prefix}-work-"
    found = {}
    for volume in volumes:
        name = volume.get("Name", "")
        if (volume.get("Labels") or {}).get(hub.LABEL) != prefix or not name.startswith(marker):
            continue
        try:
            found[hub.username_of(name[len(marker) :])] = name
        except ValueError:
            continue
    return dict(sorted(found.items()))


def container_spec(
    settings: hub.Settings, lessons_dir: str, work_volume: str, seed: int
) -> tuple[dict, dict]:
    """(create_container keyword arguments, host_config keyword arguments) of the grading
    container for one learner: what it may see and do is decided here, nowhere else."""
    create = {
        "image": settings.lab_image,
        "command": GRADE,
        "user": f"{settings.uid}:{settings.gid}",
        "environment": {
            "LAB_GRADE_SEED": str(seed),
            "HOME": SCRATCH,  # read-only otherwise; matplotlib and torch look there
            "MPLCONFIGDIR": f"{SCRATCH}/matplotlib",
        },
        "network_disabled": True,
        "labels": {hub.LABEL: settings.prefix, f"{hub.LABEL}.grading": "1"},
    }
    host = {
        "binds": {
            work_volume: {"bind": hub.WORK_DIR, "mode": "ro"},
            lessons_dir: {"bind": hub.LAB_LESSONS_DIR, "mode": "ro"},
        },
        "mounts": [docker.types.Mount(**mask) for mask in hub.solution_masks()],
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {SCRATCH: "rw,nosuid,nodev,size=256m"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": settings.pids_limit,
        "mem_limit": settings.mem_limit,
        "memswap_limit": settings.mem_limit,
        "nano_cpus": int(settings.cpu_limit * 1e9),
    }
    return create, host


def grade_one(
    client: docker.APIClient, settings: hub.Settings, lessons_dir: str, volume: str, timeout: float
) -> dict:
    """The learner's report from ``lab grade --json``; GradeError when there is none."""
    create, host = container_spec(settings, lessons_dir, volume, secrets.randbelow(2**31))
    container = client.create_container(**create, host_config=client.create_host_config(**host))
    try:
        client.start(container)
        try:
            status = client.wait(container, timeout=timeout)["StatusCode"]
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            # (removed below, running or not)
            raise GradeError(f"grading took longer than {timeout:g} s (--timeout)") from None
        out = client.logs(container, stdout=True, stderr=False).decode("utf-8", "replace")
        if status != 0:
            err = client.logs(container, stdout=False, stderr=True).decode("utf-8", "replace")
            last = (err.strip().splitlines() or [f"exit status {status}"])[-1]
            raise GradeError(f"lab grade failed (exit {status}): {last}")
        try:
            report = json.loads(out)
        except ValueError:
            raise GradeError("lab grade printed no report (see `docker logs`)") from None
        if not isinstance(report, dict) or not isinstance(report.get("exercises"), dict):
            raise GradeError("lab grade's report has no exercises")
        return report
    finally:
        client.remove_container(container, force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m class_grade")
    parser.add_argument("names", nargs="*", help="only these learners (default: every learner)")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds per learner (default 1800)"
    )
    args = parser.parse_args(argv)
    client = docker.APIClient(version="auto", timeout=args.timeout + 60)
    try:
        settings = hub.settings_from_env()
        myself = client.inspect_container(socket.gethostname())
        lessons_dir, _ = hub.course_dirs(myself.get("Mounts", []))
        volumes = client.volumes(filters={"label": hub.LABEL}).get("Volumes") or []
    except hub.HubConfigError as problem:
        print(f"class-grade: {problem}", file=sys.stderr)
        return 2
    everyone = learners(volumes, settings.prefix)
    unknown = [name for name in args.names if name not in everyone]
    if unknown:
        print(
            f"class-grade: no work volume for {', '.join(unknown)}: a learner has one once "
            "their server started (`invoke class-progress` lists the class)",
            file=sys.stderr,
        )
        return 2
    store = Store(hub.STATE_DIR / "course")
    failed = 0
    for name, volume in everyone.items():
        if args.names and name not in args.names:
            continue
        started = time.monotonic()
        try:
            report = grade_one(client, settings, lessons_dir, volume, args.timeout)
        except (GradeError, docker.errors.DockerException) as problem:
            failed += 1
            print(f"{name}: not graded: {problem}", flush=True)
            continue
        store.save_grade(name, report)
        verdicts = [entry.get("status") for entry in report["exercises"].values()]
        suspicious = report.get("suspicious") or {}
        flagged = f", {len(suspicious)} copies flagged" if suspicious else ""
        print(
            f"{name}: {verdicts.count('passed')}/{len(verdicts)} passed{flagged} "
            f"({time.monotonic() - started:.1f} s)",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
