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
import secrets
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

import e2e_stack as stack  # noqa: E402

GB = 1e9
MB = 1e6
TARGETS = {  # figure -> (target, unit divisor, unit)
    "lab image size": (6.5 * GB, GB, "GB"),
    "tensorboard image size": (300 * MB, MB, "MB"),
    "up -> healthy": (20.0, 1, "s"),
    "lesson -> visible in TensorBoard": (5.0, 1, "s"),
}


def report(name: str, value: float) -> bool:
    target, divisor, unit = TARGETS[name]
    ok = value <= target
    print(f"  {name:34} {value / divisor:8.2f} {unit:2}  target <= {target / divisor:g} {unit}"
          f"  ratio {value / target:5.2f}  {'OK' if ok else 'MISSED'}")
    return ok


def cold_builds() -> None:
    print("cold builds (docker build --no-cache, classic builder; includes downloads):")
    for service in stack.IMAGES:
        seconds = stack.build_image(service, "--no-cache", log_name=f"bench-build-{service}.log")
        print(f"  {service:34} {seconds:8.1f} s")


def project_dir(root: Path) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="labbench", dir=root))
    shutil.copytree(stack.ROOT / "lab", workdir / "lab",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    (workdir / "data").mkdir()
    stack.give_to_lab_user(workdir / "lab", workdir / "data")
    return workdir


def stack_figures(repeat: int, scratch: Path) -> tuple[list[float], list[float]]:
    ups, visible = [], []
    for _ in range(repeat):
        lab = stack.Stack(project=f"labbench{secrets.token_hex(4)}",
                          workdir=project_dir(scratch), token=secrets.token_hex(16))
        try:
            ups.append(lab.up())
            visible.append(lab.run_lesson_and_watch_tensorboard("07")["latency_s"])
        finally:
            lab.down(volumes=True)
    return ups, visible


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true",
                        help="skip the cold builds; use the images already there")
    parser.add_argument("--repeat", type=int, default=3, help="stack start-ups to time")
    args = parser.parse_args(argv)

    problem = stack.engine_problem()
    if problem:
        print(f"cannot benchmark: {problem}", file=sys.stderr)
        return 1
    if args.no_build:
        stack.build_images()  # from cache: only makes sure they exist and are current
    else:
        cold_builds()

    with tempfile.TemporaryDirectory(prefix="labbench") as scratch:
        ups, visible = stack_figures(args.repeat, Path(scratch))

    print("\nfigures vs targets:")
    results = [
        report("lab image size", stack.image_size("lab")),
        report("tensorboard image size", stack.image_size("tensorboard")),
        report("up -> healthy", statistics.median(ups)),
        report("lesson -> visible in TensorBoard", statistics.median(visible)),
    ]
    print(f"\n  up -> healthy over {len(ups)} runs: "
          + ", ".join(f"{seconds:.1f}" for seconds in ups) + " s")
    print(f"  lesson -> visible over {len(visible)} runs: "
          + ", ".join(f"{seconds:.2f}" for seconds in visible) + " s")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
