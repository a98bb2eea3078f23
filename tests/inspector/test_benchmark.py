"""benchmarks/inspector.py runs its code paths: the graphs it builds have the sizes it
claims, and one measurement of each tool comes back from a fresh process."""

from __future__ import annotations

import shutil

import pytest
from support.benchmarks import load_benchmark
from support.ci_skip import skip_unless_ci
from support.engine_log import engine_nodes


@pytest.mark.parametrize("graph", ["100", "1000", "10000"])
def test_the_graphs_have_the_sizes_they_are_named_after(graph):
    loss, model = load_benchmark("inspector").build(graph)
    nodes = len(engine_nodes(loss.grad_fn))
    assert abs(nodes - int(graph)) <= int(graph) * 0.02, nodes
    tags = {fn.metadata.get("lab.inspector.module") for fn in engine_nodes(loss.grad_fn)}
    assert len(tags) > int(graph) // 10  # recorded: groups for the inspector to collapse


def test_each_tool_is_measured_in_a_process_of_its_own():
    if shutil.which("dot") is None:
        skip_unless_ci("Graphviz's `dot` is not installed (apt-get install graphviz)")
    benchmark = load_benchmark("inspector")
    rows = {tool: benchmark.run_one(tool, "100", timeout=300, repeat=1) for tool in benchmark.TOOLS}
    assert rows["torchviz"]["boxes"] > rows["all-open"]["boxes"] == rows["inspector"]["nodes"]
    assert rows["inspector"]["boxes"] < rows["inspector"]["nodes"]  # groups closed
    for tool, row in rows.items():
        assert row["seconds"] > 0 and row["peak"] >= 0
        assert row["peak"] > 0 or tool == "backward"  # dot's own memory counts for the others
