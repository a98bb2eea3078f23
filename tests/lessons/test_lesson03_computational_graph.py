"""Lesson 03: the graph it walks, leaves, the dynamic graph, retain_graph and detach()."""

from __future__ import annotations

import math

import pytest
import torch
from support.tbutil import read_scalars, single_run_dir

from lab.lessons import lesson03_computational_graph as lesson

F64 = torch.float64


def names(tensor):
    return [type(node).__name__ for _, node in lesson.walk_graph(tensor)]


def test_walk_graph_follows_grad_fn_to_the_leaves():
    x, w, b, z, loss = lesson.small_model()
    assert names(loss) == [
        "SumBackward0",
        "TanhBackward0",
        "AddBackward0",
        "MulBackward0",
        "AccumulateGrad",
        "AccumulateGrad",
    ]
    leaves = [
        node.variable
        for _, node in lesson.walk_graph(loss)
        if type(node).__name__ == "AccumulateGrad"
    ]
    assert leaves[0] is w and leaves[1] is b
    assert [depth for depth, _ in lesson.walk_graph(loss)] == [0, 1, 2, 3, 4, 3]


def test_walk_graph_visits_shared_nodes_once_and_leaves_have_none():
    x = torch.tensor(2.0, dtype=F64, requires_grad=True)
    assert lesson.walk_graph(x) == []
    assert names(x * x) == ["MulBackward0", "AccumulateGrad"]


def test_non_leaf_grad_is_dropped_unless_retained():
    z_grad, caught, w_grad = lesson.non_leaf_grad_after_backward(retain=False)
    assert z_grad is None and any("non-leaf" in message for message in caught)
    z_grad, caught, w_grad = lesson.non_leaf_grad_after_backward(retain=True)
    _, w, _, z, loss = lesson.small_model()
    want_z, want_w = torch.autograd.grad(loss, (z, w))
    assert torch.allclose(z_grad, want_z) and torch.allclose(w_grad, want_w)
    assert not caught


def test_converted_tensor_is_not_a_leaf():
    assert lesson.converted_is_not_leaf() == (False, None)


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_power_graph_grows_with_n_and_its_gradient_is_right(n):
    grad, graph = lesson.grad_of(lambda t: lesson.power(t, n), 1.3)
    x = torch.tensor(1.3, dtype=F64, requires_grad=True)
    (expected,) = torch.autograd.grad(x**n, x)
    assert grad == pytest.approx(expected.item(), rel=1e-12)
    assert graph.count("MulBackward0") == n - 1


@pytest.mark.parametrize(
    ("x0", "node", "derivative"),
    [(0.7, "SinBackward0", math.cos(0.7)), (-1.2, "PowBackward0", 3 * 1.44)],
)
def test_sign_branch_builds_the_graph_of_the_branch_taken(x0, node, derivative):
    grad, graph = lesson.grad_of(lesson.sign_branch, x0)
    assert node in graph
    assert grad == pytest.approx(derivative, rel=1e-12)


def test_second_backward_needs_retain_graph_and_then_accumulates():
    grad, error = lesson.backward_twice(retain_graph=False)
    assert grad is None and "second time" in error
    grad, error = lesson.backward_twice(retain_graph=True)
    x = torch.tensor([1.0, -2.0, 3.0], dtype=F64, requires_grad=True)
    (once,) = torch.autograd.grad((x**2).sum(), x)
    assert error is None and torch.allclose(grad, 2 * once)


@pytest.mark.parametrize("x0", [2.0, -0.5, 3.0])
def test_detach_treats_the_detached_factor_as_a_constant(x0):
    grad, requires_grad, is_leaf = lesson.detached_product(x0)
    x = torch.tensor(x0, dtype=F64, requires_grad=True)
    (full,) = torch.autograd.grad(x**3, x)
    assert grad == pytest.approx(x0**2)
    assert grad != pytest.approx(full.item())
    assert not requires_grad and is_leaf


def test_main_logs_the_dynamic_graph(runs_dir):
    lesson.main(["--device", "cpu"])
    scalars = read_scalars(single_run_dir(runs_dir, "03_computational_graph"))
    assert scalars["dynamic_graph/mul_nodes"] == [(n, n - 1) for n in range(1, 6)]
    assert [v for _, v in scalars["dynamic_graph/dxn_dx_at_1.5"]] == pytest.approx(
        [n * 1.5 ** (n - 1) for n in range(1, 6)]
    )
