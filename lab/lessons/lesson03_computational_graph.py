# %% [markdown]
# # 03 · The computational graph: grad_fn, leaves, a dynamic graph, retain_graph, detach()
#
# Every tracked operation adds a node to a graph that runs *backwards*: a result's
# `grad_fn` is the node that knows how to send a gradient to its inputs, and
# `grad_fn.next_functions` points at the nodes of those inputs. The walk ends at
# `AccumulateGrad` nodes, one per **leaf** tensor — the tensors you created with
# `requires_grad=True`, whose `.grad` is filled in.
#
# The graph is rebuilt on every forward pass by ordinary Python (a *dynamic* graph), and
# freed by `backward()` unless told otherwise (`retain_graph=True`). `detach()` cuts it.

# %%
from __future__ import annotations

import math
import warnings

import torch

from lab.lessons.harness import LessonRun, run_main

# %% [markdown]
# ## Walking grad_fn → next_functions
#
# `loss = sum(tanh(w·x + b))` with `w`, `b` tracked and the data `x` not. There is no node
# for `x`: autograd records only what leads to a tensor that needs a gradient.


# %%
def small_model(device: str | torch.device = "cpu"):
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, device=device)
    w = torch.tensor(0.8, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.tensor(-0.3, dtype=torch.float64, device=device, requires_grad=True)
    z = w * x + b
    loss = torch.tanh(z).sum()
    return x, w, b, z, loss


def walk_graph(tensor: torch.Tensor) -> list[tuple[int, object]]:
    """Every backward node reachable from tensor.grad_fn, once each, depth first:
    (depth, node). A leaf itself has no grad_fn, hence no nodes."""
    found, seen = [], set()
    stack = [(0, tensor.grad_fn)] if tensor.grad_fn is not None else []
    while stack:
        depth, node = stack.pop()
        if node in seen:  # a graph, not a tree: x·x reaches x's node twice
            continue
        seen.add(node)
        found.append((depth, node))
        # reversed: visit inputs in their natural order; None = an input needing no gradient
        stack.extend(
            (depth + 1, child) for child, _ in reversed(node.next_functions) if child is not None
        )
    return found


def describe(node) -> str:
    name = type(node).__name__
    if name == "AccumulateGrad":  # a leaf: node.variable is the tensor itself
        leaf = node.variable
        return f"{name} → leaf of shape {tuple(leaf.shape)}, value {leaf.tolist()}"
    return name


# %% [markdown]
# ## Leaves, non-leaves and retain_grad()
#
# Only leaves get `.grad`. An intermediate like `z = w·x + b` is not a leaf; its gradient
# passes through and is dropped (PyTorch warns if you read it). `z.retain_grad()` asks to
# keep it. A classic trap: `torch.randn(3, requires_grad=True).double()` (or `.to("cuda")`
# of a CPU tensor) is the *result* of an operation, so it is not a leaf and never gets
# `.grad` — create tensors with the right dtype and device instead.


# %%
def non_leaf_grad_after_backward(retain: bool, device: str | torch.device = "cpu"):
    """(z.grad after backward, warnings raised while reading it, w.grad)."""
    _, w, _, z, loss = small_model(device)
    if retain:
        z.retain_grad()
    loss.backward()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z_grad = z.grad
    return z_grad, [str(item.message) for item in caught], w.grad


def converted_is_not_leaf() -> tuple[bool, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reading .grad of a non-leaf warns; that is the point
        t = torch.randn(3, requires_grad=True).double()
        t.sum().backward()
        return t.is_leaf, t.grad


# %% [markdown]
# ## A dynamic graph
#
# The graph is whatever the Python code did *this* call. `power(x, n)` multiplies in a
# loop, so its graph has `n − 1` multiplication nodes; `sign_branch` takes a different
# branch — and so a different graph — depending on the data.


# %%
def power(x: torch.Tensor, n: int) -> torch.Tensor:
    y = x
    for _ in range(n - 1):
        y = y * x
    return y


def sign_branch(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) if x.item() > 0 else x**3


def count_nodes(tensor: torch.Tensor, name: str) -> int:
    return sum(type(node).__name__ == name for _, node in walk_graph(tensor))


def grad_of(fn, x0: float, device: str | torch.device = "cpu") -> tuple[float, list[str]]:
    """(d fn/dx at x0, names of the graph's nodes)."""
    x = torch.tensor(x0, dtype=torch.float64, device=device, requires_grad=True)
    y = fn(x)
    names = [type(node).__name__ for _, node in walk_graph(y)]
    y.backward()
    return x.grad.item(), names


# %% [markdown]
# ## retain_graph
#
# `backward()` frees the tensors the graph saved for it (here, `x` for `x²`'s gradient), so
# a second `backward()` through the same graph fails. With `retain_graph=True` the first
# call keeps them; the second call works — and, as always, *adds* to `.grad`.


# %%
def backward_twice(retain_graph: bool, device: str | torch.device = "cpu"):
    """(x.grad after the second backward or None, error message or None); L = Σ x²."""
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, device=device, requires_grad=True)
    loss = (x**2).sum()
    loss.backward(retain_graph=retain_graph)
    try:
        loss.backward()
    except RuntimeError as exc:
        return None, str(exc)
    return x.grad, None


# %% [markdown]
# ## detach(): cutting the graph
#
# `y = x²` then `z = y.detach() · x`. Autograd treats the detached `y` as a constant, so
# `dz/dx = y = x²` — not the `3x²` you would get from `z = x³`.


# %%
def detached_product(x0: float, device: str | torch.device = "cpu") -> tuple[float, bool, bool]:
    """(dz/dx, detached.requires_grad, detached.is_leaf)."""
    x = torch.tensor(x0, dtype=torch.float64, device=device, requires_grad=True)
    y = x**2
    detached = y.detach()
    (detached * x).backward()
    return x.grad.item(), detached.requires_grad, detached.is_leaf


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    x, w, b, z, loss = small_model(run.device)
    nodes = walk_graph(loss)
    for depth, node in nodes:
        print("  " * (depth + 1) + describe(node))
    names = [type(node).__name__ for _, node in nodes]
    run.check(
        names
        == [
            "SumBackward0",
            "TanhBackward0",
            "AddBackward0",
            "MulBackward0",
            "AccumulateGrad",
            "AccumulateGrad",
        ],
        "loss.grad_fn chain: Sum ← Tanh ← Add ← (Mul ← w), b; no node for the data x",
    )
    leaves = [node.variable for _, node in nodes if type(node).__name__ == "AccumulateGrad"]
    run.check(
        len(leaves) == 2 and leaves[0] is w and leaves[1] is b,
        "the AccumulateGrad nodes hold exactly the leaves w and b",
    )
    run.check(
        w.is_leaf and b.is_leaf and x.is_leaf and not z.is_leaf and not loss.is_leaf,
        "w, b (created by us) and x (no grad needed) are leaves; z and loss are not",
    )

    z_grad, caught, w_grad = non_leaf_grad_after_backward(retain=False, device=run.device)
    warning = ". ".join(caught[0].split(". ")[:2]) if caught else None
    print(f"z.grad without retain_grad(): {z_grad}; PyTorch warns: {warning}.")
    run.check(
        z_grad is None and w_grad is not None and any("non-leaf" in m for m in caught),
        "after backward() only leaves have .grad; reading a non-leaf's .grad warns",
    )
    z_grad, caught, w_grad = non_leaf_grad_after_backward(retain=True, device=run.device)
    expected = 1 - torch.tanh(z.detach()) ** 2  # d/dz Σ tanh(z) = 1 − tanh²(z)
    print(f"z.grad with retain_grad(): {z_grad.tolist()}")
    run.check(
        torch.allclose(z_grad, expected) and not caught,
        "retain_grad() keeps dloss/dz = 1 − tanh²(z) (float64)",
    )
    run.check(
        torch.allclose(w_grad, (expected * x).sum()),
        "and dloss/dw = Σ (1 − tanh²(z))·x, by the chain rule",
    )
    is_leaf, grad = converted_is_not_leaf()
    run.check(
        not is_leaf and grad is None,
        "randn(requires_grad=True).double() is not a leaf and gets no .grad",
    )

    consistent = True
    for n in range(1, 6):
        grad, names = grad_of(lambda t, n=n: power(t, n), 1.5, run.device)
        multiplications = names.count("MulBackward0")
        print(f"power(x, {n}): {multiplications} Mul nodes, d/dx at 1.5 = {grad:.4f}")
        run.writer.add_scalar("dynamic_graph/mul_nodes", multiplications, n)
        run.writer.add_scalar("dynamic_graph/dxn_dx_at_1.5", grad, n)
        consistent &= multiplications == n - 1 and abs(grad - n * 1.5 ** (n - 1)) < 1e-12
    run.check(
        consistent, "power(x, n) builds n − 1 Mul nodes per call and d/dx = n·x^(n−1), n = 1..5"
    )
    for x0, node, branch, analytic in (
        (0.7, "SinBackward0", "sin x", math.cos(0.7)),
        (-0.7, "PowBackward0", "x³", 3 * 0.7**2),
    ):
        grad, names = grad_of(sign_branch, x0, run.device)
        print(f"sign_branch({x0}) graph: {names}, d/dx = {grad:.6f}")
        run.check(
            node in names and abs(grad - analytic) < 1e-12,
            f"x = {x0} takes the {branch} branch; autograd differentiates that branch",
        )

    grad, error = backward_twice(retain_graph=False, device=run.device)
    print(f"second backward() without retain_graph: RuntimeError: {error.split('.')[0]}")
    run.check(
        grad is None and "backward through the graph a second time" in error,
        "a second backward() through a freed graph raises RuntimeError",
    )
    grad, error = backward_twice(retain_graph=True, device=run.device)
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, device=run.device)
    print(f"x.grad after two backward() with retain_graph=True: {grad.tolist()}")
    run.check(
        error is None and torch.equal(grad, 2 * (2 * x)),
        "with retain_graph=True it works, and .grad holds the sum 2 · 2x",
    )

    grad, requires_grad, is_leaf = detached_product(2.0, run.device)
    print(f"z = x².detach() · x at x = 2: dz/dx = {grad} (3x² would be 12)")
    run.check(
        grad == 4.0 and not requires_grad and is_leaf,
        "detach() gives an untracked leaf, a constant: dz/dx = x² = 4, not 3x² = 12",
    )


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("03_computational_graph", run_lesson, argv)


# %%
if __name__ == "__main__":
    main()
