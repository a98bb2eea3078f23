"""Lessons 19-21 benchmark: headless time per lesson on 2 cores, and the speed claims the
lessons make, as printed ratios against their anchors.

- each lesson's wall time for `python -m lab lesson NN --device cpu` (interpreter and torch
  import included), pinned to 2 CPU cores; lesson 21 also without its compiled-autograd cell
- lesson 19: jacrev / jacfwd time for a tall and a wide function (anchor: jacfwd), and
  loop / vmap time for per-sample gradients at several batch sizes (anchor: vmap)
- lesson 21: torch.compile's first call / a later call (anchor: the later call), and the
  bytes saved for backward by the min-cut partitioner / the default one (exact, not timed)

    python benchmarks/lessons_19_21.py              # once each
    python benchmarks/lessons_19_21.py --repeat 3   # medians of three
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.course import find  # noqa: E402 - stdlib only, no torch

LESSONS = (("19", ()), ("20", ()), ("21", ()), ("21", ("--no-compiled-autograd",)))


def two_cores() -> None:
    """Run the child on the first two CPUs, as on the 2-core machines the lessons target."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])


def lesson_seconds(number: str, flags: tuple[str, ...], env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "lab", "lesson", number, "--device", "cpu", *flags]
    started = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, preexec_fn=two_cores
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"benchmark: `{' '.join(cmd[1:])}` failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return seconds


def best(func, *args, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - started)
    return min(times)


def jacobian_ratios(size_long: int, size_short: int) -> dict[str, float]:
    """jacrev / jacfwd time for tall (few in, many out) and wide (many in, few out)."""
    import torch
    from torch.func import jacfwd, jacrev

    generator = torch.Generator().manual_seed(0)
    tall_matrix = torch.randn(size_long, size_short, generator=generator, dtype=torch.float64)
    wide_matrix = tall_matrix.T.contiguous()
    ratios = {}
    for name, matrix in (("tall", tall_matrix), ("wide", wide_matrix)):
        point = torch.randn(matrix.shape[1], generator=generator, dtype=torch.float64)

        def func(x, matrix=matrix):
            return torch.tanh(matrix @ x)

        jacfwd(func)(point), jacrev(func)(point)  # warm up
        ratios[name] = best(jacrev(func), point, repeats=30) / best(jacfwd(func), point, repeats=30)
    return ratios


def per_sample_ratios(batches: tuple[int, ...]) -> dict[int, float]:
    """Loop-of-backward / vmap(grad) time for per-sample gradients (lesson 19's functions)."""
    import torch

    pieces = find("19").load()
    ratios = {}
    for batch in batches:
        model = pieces.classifier("cpu")
        x = torch.randn(batch, 5, dtype=torch.float64)
        y = torch.randint(0, 3, (batch,))
        pieces.per_sample_grads(model, x, y)  # warm up
        vmapped = best(pieces.per_sample_grads, model, x, y, repeats=10)
        ratios[batch] = best(pieces.looped_grads, model, x, y, repeats=5) / vmapped
    return ratios


def compile_numbers() -> tuple[float, float, float]:
    """(first compiled call s, later call s, min-cut saved bytes / default saved bytes)."""
    import torch
    from functorch.compile import default_partition, min_cut_rematerialization_partition

    pieces = find("21").load()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 32, generator=generator, dtype=torch.float64)
    w = torch.randn(32, 32, generator=generator, dtype=torch.float64, requires_grad=True)
    compiled = pieces.compiled(pieces.silu_loss, "aot_eager")
    started = time.perf_counter()
    compiled(x, w).backward()
    first = time.perf_counter() - started
    later = best(lambda: compiled(x, w).backward(), repeats=20)
    saved = {}
    for partition in (default_partition, min_cut_rematerialization_partition):
        recorder = pieces.Recorder(partition)
        pieces.gradients(pieces.compiled(pieces.silu_loss, recorder), x, w)
        saved[partition] = recorder.saved_bytes()[1]
    return first, later, saved[min_cut_rematerialization_partition] / saved[default_partition]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each lesson (median; default: 1)"
    )
    parser.add_argument("--run-here", help=argparse.SUPPRESS)  # internal: the in-process part
    args = parser.parse_args(argv)
    if args.run_here:
        two_cores()
        # forward mode loads PyTorch's decompositions through torch.jit.script: its notice
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        for long, short in (
            (200, 4),
            (2000, 8),
        ):  # the lesson's default; sizes where compute counts
            jac = jacobian_ratios(long, short)
            for name, shape in (
                ("tall", f"R^{short} → R^{long}"),
                ("wide", f"R^{long} → R^{short}"),
            ):
                print(f"lesson 19, jacrev / jacfwd time, {name} {shape}: {jac[name]:8.3f}x")
        for batch, ratio in per_sample_ratios((32, 128, 512)).items():
            print(f"lesson 19, loop / vmap per-sample gradients, batch {batch:3d}: {ratio:6.2f}x")
        first, later, saved = compile_numbers()
        print(
            f"lesson 21, torch.compile first call {first:.2f} s / later call "
            f"{later * 1e3:.2f} ms: {first / later:,.0f}x"
        )
        print(f"lesson 21, saved bytes min-cut / default partition: {saved:.2f}x (exact)")
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    print(
        f"lessons 19-21 · device cpu · pinned to 2 of {os.cpu_count()} CPUs · repeat {args.repeat}"
    )
    with tempfile.TemporaryDirectory(prefix="lab-bench-runs-") as runs:
        env = {**os.environ, "LAB_RUNS_DIR": runs, "PYTHONPATH": str(ROOT)}
        print("\nheadless lesson time (wall, interpreter and torch import included):")
        for number, flags in LESSONS:
            seconds = statistics.median(
                lesson_seconds(number, flags, env) for _ in range(args.repeat)
            )
            print(f"  lesson {number} {' '.join(flags):<24} {seconds:6.2f} s")
        print("\nspeed claims (ratios against their anchors):", flush=True)
        subprocess.run([sys.executable, __file__, "--run-here", "1"], cwd=ROOT, env=env, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
