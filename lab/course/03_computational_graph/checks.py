"""03 · the graph: node names of a graph whose shape is known; detach by the gradients."""

from __future__ import annotations

import torch

from lab.exercises.feedback import Problem, call, num, same

F64 = torch.float64
# (a.exp() + b.sin() * c).sum() with c a constant: its backward graph, written out
GRAPH = "(a.exp() + b.sin() * c).sum(), a and b requiring grad, c not"
NODES = {
    "SumBackward0",
    "AddBackward0",
    "ExpBackward0",
    "MulBackward0",
    "SinBackward0",
    "AccumulateGrad",
}


def check_graph_ops(graph_ops) -> str:
    a = torch.tensor([0.5, -1.0], dtype=F64, requires_grad=True)
    b = torch.tensor([2.0, 0.25], dtype=F64, requires_grad=True)
    c = torch.tensor([3.0, -2.0], dtype=F64)
    got = call(graph_ops, (a.exp() + b.sin() * c).sum(), who="graph_ops")
    if not isinstance(got, set | list | tuple | frozenset):
        raise Problem(f"graph_ops should return a set of names, got {type(got).__name__}")
    # node.name() spells a leaf's node "torch::autograd::AccumulateGrad": the same node
    names = {
        name.removeprefix("torch::autograd::") if isinstance(name, str) else type(name).__name__
        for name in got
    }
    missing, extra = sorted(NODES - names), sorted(names - NODES)
    if missing == ["AccumulateGrad"]:
        raise Problem(
            f"missing AccumulateGrad for {GRAPH}: the leaves a and b are nodes too "
            "(AccumulateGrad), reached through next_functions though they have none of their own"
        )
    if missing and names <= {"SumBackward0", "AddBackward0", "ExpBackward0", "AccumulateGrad"}:
        raise Problem(
            f"missing {', '.join(missing)} for {GRAPH}: follow every entry of next_functions, "
            "not only the first"
        )
    if missing:
        raise Problem(f"missing {', '.join(missing)} for {GRAPH} (found {sorted(names)})")
    if extra:
        raise Problem(f"{', '.join(extra)} is not a node of {GRAPH}")
    return f"finds all {len(NODES)} kinds of node of {GRAPH}"


def check_stop_gradient_mse(stop_gradient_mse) -> str:
    pred = torch.tensor([1.0, -0.5, 2.0], dtype=F64, requires_grad=True)
    q = torch.tensor([0.25, 0.5, -1.0], dtype=F64, requires_grad=True)
    target = 2 * q  # computed from something that requires grad, like a model's output
    given = f"pred = {pred.tolist()}, target = {target.tolist()}"
    right = ((pred - target) ** 2).mean().detach()  # before the learner's code runs
    right_grad = 2 * (pred - target).detach() / 3
    loss = call(stop_gradient_mse, pred, target, who="stop_gradient_mse")
    same(
        right,
        loss,
        "the loss",
        given=given,
        mistakes=((right * 3, "that is the sum of the squares: take their mean"),),
    )
    if not loss.requires_grad:
        raise Problem("the loss is cut from pred as well: detach only the target")
    loss.backward()
    if pred.grad is None or not bool(pred.grad.abs().sum() > 0):
        raise Problem("pred got no gradient: detach only the target, not pred")
    same(right_grad, pred.grad, "dL/dpred", given=given)
    if q.grad is not None and bool((q.grad != 0).any()):
        i = int((q.grad != 0).nonzero()[0])
        raise Problem(
            f"the target got a gradient (dL/dtarget[{i}] = {num(q.grad[i] / 2)}): use "
            "target.detach() so no gradient flows into what produced it"
        )
    return "the loss is the MSE, pred gets 2(pred - target)/N and the target nothing"


CHECKS = {"graph_ops": check_graph_ops, "stop_gradient_mse": check_stop_gradient_mse}
