"""Lessons 17 and 18: headless time on 2 cores, lesson 18's saved bytes with and without
checkpointing, lesson 17's engine against torch per training step.

1. Each lesson as `python -m lab lesson NN --device cpu` runs it (wall time, interpreter and
   torch import included), pinned to `--cores` CPUs; and its cells alone, timed in one process
   after the imports. Target: each lesson's cells in <= `--target-s` seconds.
2. Lesson 18 at its default settings: the activation bytes autograd saves (counted with the
   lesson's own saved_tensors_hooks, exact) for the plain model and the checkpointed one.
3. Lesson 17 at its default settings: one SGD step of the MLP with our Tensor engine against
   the same step with torch's autograd (median time per step), and the scalar Value engine on
   a random expression against torch on 0-d tensors. The anchor is torch: ratio = ours / torch.

    python benchmarks/lessons_17_18.py                 # CPU, 2 cores, one run each
    python benchmarks/lessons_17_18.py --repeat 3      # medians of three
    python benchmarks/lessons_17_18.py --device cuda   # the engines on the GPU (lessons too)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.course import find  # noqa: E402 - stdlib only, no torch

RESULT_PREFIX = "BENCH-RESULT "
LESSONS = ("17", "18")


def pin(cores: int):
    """A preexec_fn that keeps a child process on the first `cores` CPUs (when there are more)."""
    available = sorted(os.sched_getaffinity(0))

    def apply() -> None:
        os.sched_setaffinity(0, available[:cores])

    return apply if len(available) > cores else None


def defaults(number: str) -> dict:
    from lab.lessons.runner import settings

    lesson = find(number)
    return {s.name: s.default for s in settings(lesson.path.read_text(encoding="utf-8"))}


def lesson_wall_times(device: str, cores: int, env: dict) -> dict[str, tuple[float, float]]:
    """Per lesson: (wall seconds, CPU seconds) of `lab lesson NN` in its own process. The CPU
    seconds hardly depend on what else the machine runs; the wall seconds do."""
    times = {}
    for number in LESSONS:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "lab", "lesson", number, "--device", device],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            preexec_fn=pin(cores),
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        times[number] = (wall, cpu)
        if done.returncode != 0:
            sys.exit(f"benchmark: lesson {number} failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return times


def inside(device: str) -> dict:
    """In this process (pinned by the parent): imports once, then each lesson's cells, then
    the byte counts and the engine timings."""
    started = time.perf_counter()
    import torch
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - timed with the imports

    from lab.lessons import runner

    result = {"import_s": time.perf_counter() - started, "cells_s": {}, "cells_cpu_s": {}}
    for number in LESSONS:
        began, began_cpu = time.perf_counter(), time.process_time()
        runner.run(find(number), ["--device", device, "--no-gpu-metrics"])
        result["cells_s"][number] = time.perf_counter() - began
        result["cells_cpu_s"][number] = time.process_time() - began_cpu
    result["saved"] = saved_bytes(device)
    result["engine"] = engine_vs_torch(device)
    result["torch"] = torch.__version__
    return result


def saved_bytes(device: str) -> dict:
    import torch

    lesson, s = find("18").load(), defaults("18")
    model = lesson.make_model(s["BLOCKS"], s["WIDTH"], s["DROPOUT"], s["SEED"], device)
    x = lesson.model_input(s["BATCH"], s["WIDTH"], s["SEED"], device)
    light = lesson.checkpointed_copy(model)
    plain, checkpointed = lesson.SavedBytes(model), lesson.SavedBytes(light)
    lesson.training_step(model, x, s["SEED"], plain)
    lesson.training_step(light, x, s["SEED"], checkpointed)
    memory = {}
    if device == "cuda":  # what the allocator holds with the graph alive, for comparison
        for name, net in (("plain", model), ("checkpointed", light)):
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            out = net(x)
            memory[name] = torch.cuda.memory_allocated() - before
            del out
    return {
        "settings": {k: s[k] for k in ("BLOCKS", "WIDTH", "BATCH", "DROPOUT")},
        "plain": plain.total(),
        "checkpointed": checkpointed.total(),
        "plain_weights": plain.total(parameter=True),
        "cuda_allocated_after_forward": memory,
    }


def per_step(step, repeats: int) -> float:
    """Median seconds of step() over `repeats` runs, after two warm-up runs."""
    step(), step()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def engine_vs_torch(device: str, repeats: int = 30) -> dict:
    import torch

    lesson, s = find("17").load(), defaults("17")
    x, y = lesson.mlp_data(device=device)
    start = lesson.initial_weights(s["HIDDEN"], s["SEED"], device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def ours():
        lesson.train_ours(start, x, y, 1, s["LR"])
        sync()

    def theirs():
        lesson.train_torch(start, x, y, 1, s["LR"])
        sync()

    program, xs = lesson.random_expression(random.Random(s["SEED"]), steps=40)

    def scalar_ours():
        values = lesson.run_program(program, [lesson.Value(v) for v in xs])
        lesson.loss_of(program, values).backward()

    def scalar_torch():
        leaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in xs]
        lesson.loss_of(program, lesson.run_program(program, leaves)).backward()

    return {
        "mlp_ours_s": per_step(ours, repeats),
        "mlp_torch_s": per_step(theirs, repeats),
        "scalar_ours_s": per_step(scalar_ours, repeats),
        "scalar_torch_s": per_step(scalar_torch, repeats),
        "hidden": s["HIDDEN"],
        "expression_values": len(xs) + len(program),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of everything (median)")
    parser.add_argument("--cores", type=int, default=2, help="CPUs the runs are pinned to")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--target-s", type=float, default=5.0, help="target for a lesson's cells (default: 5)"
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        print(RESULT_PREFIX + json.dumps(inside(args.device)))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    walls, insides = [], []
    with tempfile.TemporaryDirectory(prefix="lab-bench-runs-") as runs:
        env = {**os.environ, "LAB_RUNS_DIR": runs, "PYTHONPATH": str(ROOT)}
        env["LAB_WORK_DIR"] = str(Path(runs) / "work")  # the course's lessons, not edited copies
        for _ in range(args.repeat):
            walls.append(lesson_wall_times(args.device, args.cores, env))
            done = subprocess.run(
                [sys.executable, __file__, "--inside", "--device", args.device],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                preexec_fn=pin(args.cores),
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)), None)
            if done.returncode != 0 or line is None:
                sys.exit(f"benchmark: the in-process run failed:\n{done.stderr[-2000:]}")
            insides.append(json.loads(line.removeprefix(RESULT_PREFIX)))

    def median(get):
        return statistics.median(get(each) for each in insides)

    cores = min(args.cores, len(os.sched_getaffinity(0)))
    print(f"lessons 17, 18 · device {args.device} · {cores} cores · repeat {args.repeat}")
    imports = median(lambda r: r["import_s"])
    print(f"torch {insides[-1]['torch']}; importing torch + tensorboard: {imports:.2f} s")
    print("\nheadless time per lesson:")
    print(f"  (load average now {os.getloadavg()[0]:.1f}: on a busy machine, wall > CPU time)")
    for number in LESSONS:
        wall = statistics.median(w[number][0] for w in walls)
        cpu = statistics.median(w[number][1] for w in walls)
        cells = median(lambda r, n=number: r["cells_s"][n])
        cells_cpu = median(lambda r, n=number: r["cells_cpu_s"][n])
        verdict = "met" if cells <= args.target_s else "NOT met"
        print(
            f"  lesson {number}: `lab lesson {number}` {wall:5.2f} s wall ({cpu:5.2f} s CPU); "
            f"its cells {cells:5.2f} s wall ({cells_cpu:5.2f} s CPU); "
            f"target cells <= {args.target_s:g} s: {verdict}"
        )

    saved = insides[-1]["saved"]
    print(f"\nlesson 18, saved for backward at {saved['settings']} (float64, exact):")
    print(f"  activations, plain:         {saved['plain']:>10,} bytes")
    print(f"  activations, checkpointed:  {saved['checkpointed']:>10,} bytes")
    print(f"  weights saved (plain only): {saved['plain_weights']:>10,} bytes (exist anyway)")
    print(f"  ratio (plain / checkpointed): {saved['plain'] / saved['checkpointed']:.1f}x")
    for name, held in saved["cuda_allocated_after_forward"].items():
        print(f"  CUDA memory held after forward, {name}: {held:,} bytes")

    mlp_ours = median(lambda r: r["engine"]["mlp_ours_s"])
    mlp_torch = median(lambda r: r["engine"]["mlp_torch_s"])
    scalar_ours = median(lambda r: r["engine"]["scalar_ours_s"])
    scalar_torch = median(lambda r: r["engine"]["scalar_torch_s"])
    engine = insides[-1]["engine"]
    print("\nlesson 17, time per step (median of 30), anchor = torch's autograd:")
    print(
        f"  MLP (1-{engine['hidden']}-1, 32 points), Tensor engine: {1e3 * mlp_ours:7.3f} ms, "
        f"torch: {1e3 * mlp_torch:7.3f} ms; ratio ours/torch {mlp_ours / mlp_torch:.2f}x"
    )
    print(
        f"  random expression ({engine['expression_values']} values), Value engine: "
        f"{1e3 * scalar_ours:7.3f} ms, torch on 0-d tensors: {1e3 * scalar_torch:7.3f} ms; "
        f"ratio ours/torch {scalar_ours / scalar_torch:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
