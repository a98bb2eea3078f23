"""Container figures vs their targets: cold build time, image sizes, `compose up` → healthy,
and how soon a lesson's run is visible in TensorBoard.

    python benchmarks/containers.py              # everything (cold builds take minutes)
    python benchmarks/containers.py --no-build   # reuse the images already built
    python benchmarks/containers.py --repeat 5

Needs a Docker engine with the Compose plugin and the base image (see .ci/local-base-image.sh).
Cold builds download the whole Python environment, so they measure the network as much as
the Dockerfile; they are printed, with no target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import e2e_stack as stack

GB = 1e9
MB = 1e6
TARGETS = {  # figure -> (target, unit divisor, unit)
    "lab image size": (6.5 * GB, GB, "GB"),
    "tensorboard image size": (300 * MB, MB, "MB"),
    "up -> healthy": (20.0, 1, "s"),
    "lesson -> visible in TensorBoard": (5.0, 1, "s"),
    "lesson -> all its scalars in TensorBoard": (5.0, 1, "s"),
}
# Scalar points per tag in a run's event files, read where they live (the lab container).
COUNT_EVENTS = """
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({tag: len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}))
"""


def report(name: str, value: float) -> bool:
    target, divisor, unit = TARGETS[name]
    ok = value <= target
    print(
        f"  {name:40} {value / divisor:8.2f} {unit:2}  target <= {target / divisor:g} {unit}"
        f"  ratio {value / target:5.2f}  {'OK' if ok else 'MISSED'}"
    )
    return ok


def cold_builds() -> None:
    print("cold builds (docker build --no-cache of each target, classic builder; with downloads):")
    for service in stack.IMAGES:
        seconds = stack.build_image(service, "--no-cache", log_name=f"bench-build-{service}.log")
        print(f"  {service:40} {seconds:8.1f} s")


def project_dir(root: Path) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="labbench", dir=root))
    return stack.make_checkout(workdir, stack.LAB_UID if os.geteuid() == 0 else None)


def tensorboard_counts(lab: stack.Stack, run: str) -> dict[str, int]:
    tags = lab.tensorboard_json("plugin/scalars/tags").get(run, {})
    counts = {}
    for tag in tags:
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        counts[tag] = len(lab.tensorboard_json(f"plugin/scalars/scalars?{query}"))
    return counts


def complete_latency(lab: stack.Stack, timeout: float = 60) -> float:
    """Seconds from the lesson's end until TensorBoard serves every scalar point it wrote.
    TensorBoard is polled in the background from that moment on, while the truth is read
    from the event files, so reading the truth does not count."""
    result = lab.exec("lab", "python", "-m", "lab", "lesson", "07", check=True)
    finished = time.monotonic()
    run = re.search(r"run=/workspace/runs/(\S+)", result.stdout).group(1)
    snapshots: list[tuple[float, dict[str, int]]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            counts = tensorboard_counts(lab, run)
            snapshots.append((time.monotonic(), counts))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        truth = json.loads(
            lab.exec(
                "lab", "python", "-c", COUNT_EVENTS, f"/workspace/runs/{run}", check=True
            ).stdout
        )
        deadline = finished + timeout
        while time.monotonic() < deadline:
            matched = [seen for seen, counts in list(snapshots) if counts == truth]
            if matched:
                return matched[0] - finished
            time.sleep(0.1)
        raise RuntimeError(f"TensorBoard never served all of {run}'s scalars: {truth}")
    finally:
        stop.set()
        poller.join()


def stack_figures(repeat: int, scratch: Path, images: dict[str, str]) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"up": [], "visible": [], "complete": []}
    for _ in range(repeat):
        lab = stack.Stack(
            project=f"labbench{secrets.token_hex(4)}",
            workdir=project_dir(scratch),
            token=secrets.token_hex(16),
            images=images,
        )
        try:
            figures["up"].append(lab.up())
            figures["visible"].append(lab.run_lesson_and_watch_tensorboard("07")["latency_s"])
            figures["complete"].append(complete_latency(lab))
        finally:
            lab.down(volumes=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-build", action="store_true", help="skip the cold builds; use the images already there"
    )
    parser.add_argument("--repeat", type=int, default=3, help="stack start-ups to time")
    args = parser.parse_args(argv)

    problem = stack.engine_problem()
    if problem:
        print(f"cannot benchmark: {problem}", file=sys.stderr)
        return 1
    if args.no_build:
        images = stack.build_images()  # from cache: only makes sure they exist and are current
    else:
        cold_builds()
        images = {service: stack.image_id(tag) for service, tag in stack.IMAGES.items()}

    with tempfile.TemporaryDirectory(prefix="labbench") as scratch:
        figures = stack_figures(args.repeat, Path(scratch), images)

    print("\nfigures vs targets (medians):")
    results = [
        report("lab image size", stack.image_size("lab")),
        report("tensorboard image size", stack.image_size("tensorboard")),
        report("up -> healthy", statistics.median(figures["up"])),
        report("lesson -> visible in TensorBoard", statistics.median(figures["visible"])),
        report("lesson -> all its scalars in TensorBoard", statistics.median(figures["complete"])),
    ]
    print()
    for name, label in [
        ("up", "up -> healthy"),
        ("visible", "run listed with scalars"),
        ("complete", "every scalar point served"),
    ]:
        print(f"  {label:26} " + ", ".join(f"{value:.2f}" for value in figures[name]) + " s")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
