"""The inspector against the engine itself: hooks of the test's own on the same graph, a
saved_tensors_hooks byte count, anomaly mode naming the node that fails or makes the first
NaN, ``torch.autograd.grad``. Each property is a ``check_*(core)`` over an inspector module,
so the same checks run on the real one and on mutated copies of it, which they must reject."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch
from support.engine_log import EngineLog, branching_graph, engine_nodes, same
from torch import nn

import lab.inspector.core as real_core

F64 = torch.float64


# --- the properties, over any inspector module ------------------------------------------------


def check_order_and_gradients(core) -> None:
    """The recorded order and every node's gradients are what the engine's own hooks saw;
    the gradient arriving at h is d loss / d h."""
    x, w, h, loss = branching_graph()
    oracle = EngineLog(loss.grad_fn)
    view = core.Inspection(loss, {"x": x, "w": w}, {"h": h}).run_backward()
    oracle.close()
    assert view.error is None
    assert [view.nodes[i].fn for i in view.order] == oracle.order
    for step in view.steps:
        fn = view.nodes[step.node].fn
        assert all(map(same, step.received, oracle.received[fn])), view.nodes[step.node].op
        assert all(map(same, step.produced, oracle.produced[fn])), view.nodes[step.node].op
    x2, w2, h2, loss2 = branching_graph()
    (dh,) = torch.autograd.grad(loss2, h2)
    assert same(view.received("h")[0], dh)
    for edge in view.edges:  # what each edge carries is what its source produced for it
        source = view.nodes[edge.source].fn
        assert same(view.sent(edge), oracle.produced[source][edge.slot])


def check_leaf_used_twice(core) -> None:
    """x reaches the loss along three edges: three arrivals, which sum to x.grad."""
    x, w, h, loss = branching_graph()
    oracle = EngineLog(loss.grad_fn)
    view = core.Inspection(loss, {"x": x, "w": w}).run_backward()
    oracle.close()
    accumulate = view.node("x").fn
    expected = [
        oracle.produced[fn][slot]
        for fn in oracle.order
        for slot, (child, _) in enumerate(fn.next_functions)
        if child is accumulate
    ]
    arrivals = view.arrivals("x")
    assert len(expected) == 3 and len(arrivals) == 3
    assert all(map(same, arrivals, expected))
    assert torch.allclose(sum(arrivals), x.grad)
    x2, w2, h2, loss2 = branching_graph()
    assert torch.allclose(sum(arrivals), torch.autograd.grad(loss2, x2)[0])


def check_first_nan(core) -> None:
    """sqrt at 0 under a zero gradient makes 0/0: anomaly mode names the node; so must we."""

    def graph():
        w = torch.tensor([0.0, 1.0], dtype=F64, requires_grad=True)
        return w, ((w * 2).sqrt() * 0.0).sum() + w.sum()

    w, loss = graph()
    view = core.Inspection(loss, {"w": w}).run_backward()
    w2, loss2 = graph()
    with torch.autograd.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=r"Function '(\w+)' returned nan") as failure:
            loss2.backward()
    culprit = failure.value.args[0].split("'")[1]
    bad = view.first_nonfinite
    assert bad is not None and bad.produced
    assert view.nodes[bad.node].op == culprit == "SqrtBackward0"
    assert view.nodes[view.order[bad.step - 1]].op == culprit
    assert torch.isnan(w.grad[0]) and w.grad[1] == pytest.approx(1.0 + 2 * 0.0)


def check_version_flag(core) -> None:
    """A saved tensor bumped in place is flagged before backward(); backward then fails in
    that node, with the versions the flag gave."""

    def graph():
        x = torch.tensor([0.3, -0.7, 1.1], dtype=F64, requires_grad=True)
        a = x * 2
        b = a.sin()  # saves a
        a.add_(1.0)  # version 0 → 1 under SinBackward0's feet
        return x, (b * 3).sum()

    x, loss = graph()
    view = core.Inspection(loss, {"x": x})
    flagged = [
        (node.op, saved.name, saved.saved_version, saved.version) for node, saved in view.flagged
    ]
    assert flagged == [("SinBackward0", "self", 0, 1)]
    x2, loss2 = graph()
    with torch.autograd.detect_anomaly(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="is at version 1; expected version 0"):
            loss2.backward()
    assert any("Error detected in SinBackward0" in str(w.message) for w in caught)
    view.run_backward()
    assert view.failed_at is not None and view.failed_at.op == "SinBackward0"
    assert "is at version 1; expected version 0" in view.error


def check_detached_parameter(core) -> None:
    """A parameter behind detach() gets no gradient: autograd.grad(allow_unused) agrees."""
    g = nn.Linear(2, 3).double()
    d = nn.Linear(3, 1).double()
    z = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    loss = d(g(z).detach()).pow(2).mean()
    params = {f"G.{n}": p for n, p in g.named_parameters()} | {
        f"D.{n}": p for n, p in d.named_parameters()
    }
    view = core.Inspection(loss, params)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    unused = {name for name, grad in zip(params, grads, strict=True) if grad is None}
    assert unused == {"G.weight", "G.bias"}
    assert view.no_grad == {name: "does not reach the loss" for name in unused}
    leaves = {node.name for node in view.nodes if node.leaf is not None}
    assert leaves == {"D.weight", "D.bias"}


def check_saved_bytes(core) -> None:
    """Bytes saved per node = what saved_tensors_hooks counted while that node was made."""
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(2, 4, 3).double(), nn.BatchNorm2d(4).double()
    image = torch.randn(3, 2, 6, 6, dtype=F64, requires_grad=True)
    counted, made = [], []
    steps = [conv, norm, torch.relu, lambda t: t.exp(), lambda t: t * t[:, :1], lambda t: t.sum()]
    t = image
    for step in steps:
        packed = []

        def pack(tensor, packed=packed):
            packed.append(tensor.numel() * tensor.element_size())
            return tensor

        before = set(engine_nodes(t.grad_fn)) if t.grad_fn is not None else set()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            t = step(t)
        made.append(set(engine_nodes(t.grad_fn)) - before)
        counted.append(sum(packed))
    view = core.Inspection(t, conv)
    by_fn = {node.fn: node.saved_bytes for node in view.nodes}
    assert [sum(by_fn[fn] for fn in nodes) for nodes in made] == counted
    assert sum(counted) == view.saved_bytes > 0


PROPERTIES = [
    check_order_and_gradients,
    check_leaf_used_twice,
    check_first_nan,
    check_version_flag,
    check_detached_parameter,
    check_saved_bytes,
]


@pytest.mark.parametrize("check", PROPERTIES, ids=[c.__name__ for c in PROPERTIES])
def test_the_inspector_agrees_with_the_engine(check):
    check(real_core)


# --- mutations: a broken inspector must fail the checks above ----------------------------------

CORE_PATH = Path(real_core.__file__)
MUTATIONS = {
    "order-reversed": (
        "                self.steps.append(step)\n",
        "                self.steps.insert(0, step)\n",
        check_order_and_gradients,
    ),
    "accumulation-dropped": (
        "if grad is not None]\n",
        "if grad is not None][-1:]\n",
        check_leaf_used_twice,
    ),
    "nan-blamed-on-the-last-node": (
        "        for position, step in enumerate(self.steps, 1):\n            if step.bad_",
        "        for position, step in reversed(list(enumerate(self.steps, 1))):\n"
        "            if step.bad_",
        check_first_nan,
    ),
    "nan-blamed-on-the-receiver": (
        "            if step.bad_produced:",
        "            if False:",
        check_first_nan,
    ),
    "version-check-skipped": (
        "        return not self.freed and self.version != self.saved_version",
        "        return False",
        check_version_flag,
    ),
    "detached-not-listed": (
        "            if id(p) not in reached\n",
        "            if id(p) not in reached and False\n",
        check_detached_parameter,
    ),
    "bytes-as-elements": (
        "    nbytes = tensor.numel() * tensor.element_size()",
        "    nbytes = tensor.numel()",
        check_saved_bytes,
    ),
}


def mutated_core(old: str, new: str, monkeypatch):
    """lab.inspector.core with ``old`` (which must occur once) replaced by ``new``, loaded as
    a module of its own inside the lab.inspector package."""
    source = CORE_PATH.read_text(encoding="utf-8")
    assert source.count(old) == 1, f"mutation target must occur once: {old!r}"
    name = "lab.inspector._mutant"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "lab.inspector"
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(source.replace(old, new), str(CORE_PATH), "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_broken_inspector_fails_the_engine_checks(mutation, monkeypatch):
    old, new, check = MUTATIONS[mutation]
    mutant = mutated_core(old, new, monkeypatch)
    with pytest.raises(AssertionError):
        check(mutant)


def test_an_unchanged_copy_passes_them_all(monkeypatch):
    """The loader itself is not what fails the mutants."""
    copy = mutated_core("MODULE_KEY = ", "MODULE_KEY = ", monkeypatch)
    for check in PROPERTIES:
        check(copy)
