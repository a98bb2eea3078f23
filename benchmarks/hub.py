"""Classroom hub figures vs their targets: a class pressing "Start" at once (each learner's
JupyterLab answering: median, max; the hub's memory then), and a learner's login while 8
clients guess passwords, against the same login on a quiet hub (the anchor).

    python benchmarks/hub.py                      # 10 and 20 learners, images rebuilt from cache
    python benchmarks/hub.py --learners 3 --no-build

Needs a Docker engine with the Compose plugin and the base image (see .ci/local-base-image.sh).
Everything it starts (hub, learners' containers, networks, volumes) is removed at the end.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import e2e_stack as stack
from support import hub_stack

MIB = 1024**2
TARGETS = {  # figure -> (target, unit divisor, unit)
    "start at once -> JupyterLab (median)": (30.0, 1, "s"),
    "start at once -> JupyterLab (max)": (60.0, 1, "s"),
    "hub memory, the class's servers idle": (256 * MIB, MIB, "MiB"),
    "login while 8 clients guess / quiet login": (4.0, 1, "x"),
}
UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024**3, "kB": 1e3, "MB": 1e6, "GB": 1e9}
GUESSERS = 8


def report(name: str, value: float, label: str = "") -> bool:
    target, divisor, unit = TARGETS[name]
    ok = value <= target
    print(
        f"  {name + label:52} {value / divisor:8.2f} {unit:3}  target <= {target / divisor:g} "
        f"{unit}  ratio {value / target:5.2f}  {'OK' if ok else 'MISSED'}"
    )
    return ok


def memory(container: str) -> float:
    """Bytes the container uses now (``docker stats``, one sample)."""
    usage = hub_stack.docker(
        "stats", "--no-stream", "--format", "{{.MemUsage}}", container
    ).stdout.split("/")[0]
    number, unit = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", usage).groups()
    return float(number) * UNITS[unit]


def class_starts(hub: hub_stack.Hub, admin: str, count: int, settle: float) -> bool:
    """``count`` new learners press "Start" at the same moment; then all stop again."""
    learners = [f"c{count}l{index:02d}" for index in range(count)]
    response = hub.api("POST", "users", admin, json={"usernames": learners})
    assert response.status_code == 201, response.text
    with ThreadPoolExecutor(max_workers=count) as pool:
        seconds = list(pool.map(lambda name: hub.start_server(admin, name, 600), learners))
    time.sleep(settle)
    hub_memory = memory(f"{hub.project}-hub-1")
    label = f", {count} learners"
    ok = report("start at once -> JupyterLab (median)", statistics.median(seconds), label)
    ok &= report("start at once -> JupyterLab (max)", max(seconds), label)
    ok &= report("hub memory, the class's servers idle", hub_memory, label)
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda name: hub.stop_server(admin, name, 300), learners))
    return ok


def timed_logins(hub: hub_stack.Hub, name: str, password: str, times: int) -> list[float]:
    seconds = []
    for _ in range(times):
        started = time.monotonic()
        assert hub.login(name, password) is not None
        seconds.append(time.monotonic() - started)
    return seconds


def login_under_guessing(hub: hub_stack.Hub, times: int) -> bool:
    """A learner's login, quiet and then while 8 clients guess the passwords of 8 others."""
    password = "quiet-login-77"
    hub.add_learner("learner", password)
    victims = [f"victim{index}" for index in range(GUESSERS)]
    for victim in victims:
        hub.add_learner(victim, f"secret-{secrets.token_hex(6)}")
    quiet = timed_logins(hub, "learner", password, times)
    stop, guesses = threading.Event(), []

    def guess(victim: str) -> None:
        while not stop.is_set():
            assert hub.login(victim, secrets.token_hex(6)) is None
            guesses.append(1)

    guessers = [threading.Thread(target=guess, args=(victim,)) for victim in victims]
    for thread in guessers:
        thread.start()
    try:
        while len(guesses) < GUESSERS:
            time.sleep(0.1)
        started = time.monotonic()
        loaded = timed_logins(hub, "learner", password, times)
        rate = len(guesses) / (time.monotonic() - started)
    finally:
        stop.set()
        for thread in guessers:
            thread.join()
    print(
        f"  login, quiet (median, max): {statistics.median(quiet):.2f} s, {max(quiet):.2f} s; "
        f"while {GUESSERS} clients guess ({rate:.1f} guesses/s): "
        f"{statistics.median(loaded):.2f} s, {max(loaded):.2f} s"
    )
    ratio = statistics.median(loaded) / statistics.median(quiet)
    return report("login while 8 clients guess / quiet login", ratio)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--learners", type=int, nargs="+", default=[10, 20], help="class sizes (default: 10 20)"
    )
    parser.add_argument("--logins", type=int, default=10, help="logins timed (default: 10)")
    parser.add_argument("--no-build", action="store_true", help="reuse the images as built")
    parser.add_argument("--settle", type=float, default=15.0, help="idle seconds before memory")
    args = parser.parse_args(argv)

    if problem := stack.engine_problem():
        print(f"hub benchmark: {problem}", file=sys.stderr)
        return 2
    # A tag of our own: the shared autograd-lab/lab:latest may be rebuilt from another tree.
    lab_image = f"autograd-lab/lab:hubbench-{secrets.token_hex(4)}"
    if args.no_build:
        hub_stack.docker("tag", stack.IMAGES["lab"], lab_image)
    else:
        stack.build_image("lab", "-t", lab_image)
        hub_stack.build_hub_image()
    workdir = Path(tempfile.mkdtemp(prefix="hubbench"))
    shutil.copytree(
        stack.ROOT / "lab", workdir / "lab", ignore=shutil.ignore_patterns("__pycache__")
    )
    (workdir / "data").mkdir()
    hub = hub_stack.Hub(
        project=f"hubbench{secrets.token_hex(4)}",
        workdir=workdir,
        settings={
            "LAB_IMAGE": lab_image,
            "HUB_CPU_LIMIT": "2",
            "HUB_MEM_LIMIT": "1G",
            # every guess costs a real check (no lockout): the worst case for the hub's CPU
            "HUB_LOGIN_ATTEMPTS": "1000000",
        },
    )
    ok = True
    try:
        print(f"hub up -> healthy: {hub.up():.1f} s")
        admin = hub.admin_token()
        for count in args.learners:
            print(f"{count} learners press Start at once:")
            ok &= class_starts(hub, admin, count, args.settle)
        print(f"logins ({args.logins} timed):")
        ok &= login_under_guessing(hub, args.logins)
    finally:
        hub.down(volumes=True)
        hub_stack.docker("rmi", lab_image, check=False)  # the tag only
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
