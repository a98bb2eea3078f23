"""The engine as its own witness: hooks of the test's own on every node of a graph, and a
small graph that uses a leaf three times. What the inspector says is checked against these."""

from __future__ import annotations

import torch

F64 = torch.float64


def engine_nodes(root) -> list:
    """The test's own walk: every node reachable from ``root``, once."""
    found, todo = [], [root]
    while todo:
        fn = todo.pop()
        if fn is not None and fn not in found:
            found.append(fn)
            todo.extend(child for child, _ in fn.next_functions)
    return found


class EngineLog:
    """Pre-hooks and hooks of the test's own on every node: what the engine ran, in order,
    with the gradients each node received and produced."""

    def __init__(self, root) -> None:
        self.order, self.received, self.produced = [], {}, {}
        self.handles = []
        for fn in engine_nodes(root):
            self.handles.append(fn.register_prehook(self._before(fn)))
            self.handles.append(fn.register_hook(self._after(fn)))

    def _before(self, fn):
        def hook(grad_outputs):
            self.order.append(fn)
            self.received[fn] = [None if g is None else g.clone() for g in grad_outputs]

        return hook

    def _after(self, fn):
        def hook(grad_inputs, grad_outputs):
            self.produced[fn] = [None if g is None else g.clone() for g in grad_inputs]

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and torch.allclose(a, b, equal_nan=True)


def branching_graph():
    """x used three times (twice by one multiplication), w once; a hook-free graph."""
    x = torch.tensor([0.5, -1.5, 2.0], dtype=F64, requires_grad=True)
    w = torch.tensor([1.25, 0.5, -0.75], dtype=F64, requires_grad=True)
    h = x * w
    loss = (h.sin() + x * x).sum() + (h * 3).pow(2).mean()
    return x, w, h, loss
