"""Inspector benchmark: render time and peak memory against torchviz's make_dot, same graphs.

Graphs of about 100, 1 000 and 10 000 autograd nodes (a tree of nn.Sequential, ten children
each, with Linear → Tanh blocks at the leaves), and ResNet-18 on one 224×224 image. Every
forward runs under ``lab.inspector.record`` so the inspector can group nodes by module call;
torchviz gets the very same graph. Each measurement runs in a fresh process:

- ``torchviz``: ``make_dot(loss, params)`` and Graphviz's layout to SVG, every node drawn;
- ``inspector``: the walk (ops, shapes, saved tensors and versions, leaves, hooks) and the
  picture laid out to SVG, module groups closed beyond 80 boxes (``show=False``, no backward);
- ``stepping``: the same plus ``backward()`` recorded through node hooks, which is what the
  step control shows;
- ``all-open``: the inspector with every group open, every node drawn like torchviz
  (sizes up to ``--all-open-max``);
- ``backward``: a plain ``loss.backward()``, nothing drawn: the part of ``stepping`` that is
  the engine's own work (no ratio).

Time is wall clock from the built graph to the SVG in hand; peak memory is the Python
process's peak resident set above where it stood before (``/proc/self/clear_refs``) plus the
largest ``dot`` child. Ratios are torchviz / inspector: above 1 means the inspector is faster
or leaner. torchviz recurses once per node, so the recursion limit is raised for it.

    python benchmarks/inspector.py                       # all four graphs
    python benchmarks/inspector.py --graphs 100 resnet18 # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULT = "BENCH-RESULT "
GRAPHS = ["100", "1000", "10000", "resnet18"]
TOOLS = ["torchviz", "inspector", "stepping", "all-open", "backward"]


def build(graph: str):
    """(loss, model): the forward recorded by the inspector, nothing drawn yet."""
    import torch
    from torch import nn

    from lab.inspector import record

    torch.manual_seed(0)
    if graph == "resnet18":
        from torchvision.models import resnet18

        model, x = resnet18(), torch.randn(1, 3, 224, 224)
        model.eval()  # batch norm on one image: running statistics, as at inference
    else:
        blocks = max(1, round(int(graph) / 5))  # Linear (Addmm, T, 2 leaves) + Tanh: 5 nodes

        def tree(count: int) -> nn.Module:
            if count <= 10:
                return nn.Sequential(
                    *[nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(count)]
                )
            size = math.ceil(count / 10)
            return nn.Sequential(*[tree(min(size, count - i)) for i in range(0, count, size)])

        model, x = tree(blocks), torch.randn(2, 4)
    with record(model):
        loss = model(x).sum()
    return loss, model


def peak_rss_reset() -> int:
    """Reset the process's peak resident set to its current one; the current one, in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(tool: str, graph: str) -> dict:
    sys.setrecursionlimit(1_000_000)
    loss, model = build(graph)
    params = dict(model.named_parameters())
    from lab.inspector import drawing, inspect

    start_rss = peak_rss_reset()
    started = time.perf_counter()
    if tool == "backward":
        loss.backward()
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "peak": _status("VmHWM") - start_rss, "boxes": 0}
    if tool == "torchviz":
        from torchviz import make_dot

        dot = make_dot(loss, params=params)
        dot.pipe(format="svg")  # the layout, as make_dot users render it
        boxes = sum(1 for line in dot.body if "->" not in line and "[label=" in line)
        source = dot.source
    else:
        view = inspect(loss, model, backward=(tool == "stepping"), show=False)
        diagram = view.diagram()
        opened = set(diagram.groups) if tool == "all-open" else None
        layout = diagram.laid_out(opened)
        layout.frame(diagram.steps)  # the picture as the step control shows it at the end
        boxes = len(layout.diagram.boxes)
        source = drawing.dot_source(layout.diagram)
    seconds = time.perf_counter() - started
    peak = _status("VmHWM") - start_rss
    result = {"seconds": seconds, "peak": peak + dot_peak(source), "boxes": boxes}
    if tool != "torchviz":
        result["nodes"] = len(view.nodes)
    return result


DOT_PEAK = """
import resource, subprocess, sys
subprocess.run(["dot", "-Tsvg", "-o", "/dev/null"], stdin=sys.stdin, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def dot_peak(source: str) -> int:
    """The peak resident set of ``dot`` laying out ``source``, in a process of its own (this
    one's children already include whatever torch's import started)."""
    done = subprocess.run(
        [sys.executable, "-c", DOT_PEAK], input=source, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def run_one(tool: str, graph: str, timeout: float, repeat: int) -> dict | None:
    """The median time and the largest peak of ``repeat`` fresh processes; None: timed out."""
    command = [sys.executable, __file__, "--one", tool, graph]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = []
    for _ in range(repeat):
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            return None
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
        if not lines:
            raise RuntimeError(f"{tool} on {graph} failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(lines[0][len(RESULT) :]))
    result = runs[0] | {"seconds": statistics.median(run["seconds"] for run in runs)}
    return result | {"peak": max(run["peak"] for run in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graphs", nargs="+", default=GRAPHS, choices=GRAPHS)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--all-open-max", type=int, default=1000, help="largest all-open graph")
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "GRAPH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(RESULT + json.dumps(measure(*args.one)))
        return
    print(
        f"{os.cpu_count()} CPUs; each measurement in fresh processes (median of {args.repeat}); "
        "ratio = torchviz / ours"
    )
    header = f"{'graph':>9} {'nodes':>6} {'tool':>9} {'boxes':>6} {'time s':>8} {'peak MB':>8}"
    print(header + f" {'time ratio':>10} {'memory ratio':>12}")
    for graph in args.graphs:
        rows = {}
        for tool in TOOLS:
            if tool == "all-open" and graph != "resnet18" and int(graph) > args.all_open_max:
                continue
            # one run where a run takes minutes: torchviz on 10 000 nodes
            repeat = 1 if graph == "10000" else args.repeat
            rows[tool] = run_one(tool, graph, args.timeout, repeat)
        base = rows["torchviz"]
        nodes = next((r["nodes"] for r in rows.values() if r and "nodes" in r), "?")
        for tool, row in rows.items():
            if row is None:
                print(f"{graph:>9} {nodes:>6} {tool:>9} {'':>6} > {args.timeout:.0f} s (timed out)")
                continue
            line = f"{graph:>9} {nodes:>6} {tool:>9} {row['boxes']:>6} {row['seconds']:>8.2f}"
            line += f" {row['peak'] / 2**20:>8.1f}"
            if tool not in ("torchviz", "backward"):
                if base is None:
                    line += f" {'> ' + format(args.timeout / row['seconds'], '.1f'):>10}"
                else:
                    line += f" {base['seconds'] / row['seconds']:>10.2f}"
                    line += f" {base['peak'] / max(row['peak'], 1):>12.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
