"""Classroom hub figures vs their targets: "start server" -> the learner's JupyterLab answering
(lab image present; a new learner, whose volumes are made first, and a returning one), and the
memory of the hub with N learners' servers idle.

    python benchmarks/hub.py                      # 10 learners, images rebuilt from cache
    python benchmarks/hub.py --learners 3 --no-build

Needs a Docker engine with the Compose plugin and the base image (see .ci/local-base-image.sh).
Everything it starts (hub, learners' containers, volumes) is removed at the end.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import e2e_stack as stack
from support import hub_stack

MIB = 1024**2
TARGETS = {  # figure -> (target, unit divisor, unit)
    "start -> JupyterLab, new learner (median)": (10.0, 1, "s"),
    "start -> JupyterLab, returning learner (median)": (10.0, 1, "s"),
    "hub memory, learners' servers idle": (256 * MIB, MIB, "MiB"),
}
UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024**3, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def report(name: str, value: float) -> bool:
    target, divisor, unit = TARGETS[name]
    ok = value <= target
    print(
        f"  {name:48} {value / divisor:8.1f} {unit:3}  target <= {target / divisor:g} {unit}"
        f"  ratio {value / target:5.2f}  {'OK' if ok else 'MISSED'}"
    )
    return ok


def memory(container: str) -> float:
    """Bytes the container uses now (``docker stats``, one sample)."""
    usage = hub_stack.docker(
        "stats", "--no-stream", "--format", "{{.MemUsage}}", container
    ).stdout.split("/")[0]
    number, unit = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", usage).groups()
    return float(number) * UNITS[unit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=10, help="idle servers (default: 10)")
    parser.add_argument("--returning", type=int, default=3, help="restarts timed (default: 3)")
    parser.add_argument("--no-build", action="store_true", help="reuse the images as built")
    parser.add_argument("--settle", type=float, default=15.0, help="idle seconds before memory")
    args = parser.parse_args(argv)

    if problem := stack.engine_problem():
        print(f"hub benchmark: {problem}", file=sys.stderr)
        return 2
    # A tag of our own: the shared autograd-lab/lab:latest may be rebuilt from another tree.
    lab_image = f"autograd-lab/lab:hubbench-{secrets.token_hex(4)}"
    if args.no_build:
        hub_stack.docker("tag", stack.IMAGES["lab"][1], lab_image)
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
        settings={"LAB_IMAGE": lab_image, "HUB_CPU_LIMIT": "2", "HUB_MEM_LIMIT": "4G"},
    )
    ok = True
    try:
        print(f"hub up -> healthy: {hub.up():.1f} s")
        admin = hub.admin_token()
        learners = [f"learner{index:02d}" for index in range(args.learners)]
        response = hub.api("POST", "users", admin, json={"usernames": learners})
        assert response.status_code == 201, response.text
        print(f"{args.learners} learners, started one after another:")
        firsts = []
        for name in learners:
            firsts.append(hub.start_server(admin, name))
            print(f"  {name}: {firsts[-1]:5.1f} s")
        returning = []
        for name in learners[: args.returning]:
            hub.stop_server(admin, name)
            returning.append(hub.start_server(admin, name))
        time.sleep(args.settle)
        hub_memory = memory(f"{hub.project}-hub-1")
        servers = [memory(f"{hub.project}-{name}") for name in learners]
        print("figures:")
        ok &= report("start -> JupyterLab, new learner (median)", statistics.median(firsts))
        if returning:
            ok &= report(
                "start -> JupyterLab, returning learner (median)", statistics.median(returning)
            )
        ok &= report("hub memory, learners' servers idle", hub_memory)
        print(
            f"  {'each idle learner server (median, max)':48} "
            f"{statistics.median(servers) / MIB:8.1f} MiB, {max(servers) / MIB:.1f} MiB"
        )
    finally:
        hub.down(volumes=True)
        hub_stack.docker("rmi", lab_image, check=False)  # the tag only
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
