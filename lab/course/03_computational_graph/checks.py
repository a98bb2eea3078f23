"""03 · the graph: node names of a graph whose shape is known (another one when grading with
unseen inputs); detach by the gradients."""

from __future__ import annotations

import itertools

import torch

from lab.exercises.feedback import Problem, call, num, same, unseen, unseen_pick

F64 = torch.float64
# the graphs (a.f() ⊕ b.g() ⊗ c).sum(), c a constant: each op and the node it makes, written out
UNARY = {
    torch.exp: "ExpBackward0",
    torch.sin: "SinBackward0",
    torch.cos: "CosBackward0",
    torch.tanh: "TanhBackward0",
    torch.sigmoid: "SigmoidBackward0",
}
BINARY = {
    torch.add: "AddBackward0",
    torch.sub: "SubBackward0",
    torch.mul: "MulBackward0",
    torch.div: "DivBackward0",
}
SIGN = {torch.add: "+", torch.sub: "-", torch.mul: "*", torch.div: "/"}
USUAL = (torch.exp, torch.sin, torch.add, torch.mul)  # (a.exp() + b.sin() * c).sum()


def nodes(f, g, outer, inner) -> tuple[set[str], set[str]]:
    """(every kind of node, those reached by following only the first of next_functions)."""
    first = {"SumBackward0", BINARY[outer], UNARY[f], "AccumulateGrad"}
    return first | {BINARY[inner], UNARY[g]}, first


# for grading: the other graphs, those whose kinds of node differ from the usual one's
OTHER_GRAPHS = [
    ops
    for ops in itertools.product(UNARY, UNARY, BINARY, BINARY)
    if nodes(*ops)[0] != nodes(*USUAL)[0]
]


def check_graph_ops(graph_ops) -> str:
    f, g, outer, inner = unseen_pick(USUAL, OTHER_GRAPHS)
    graph = (
        f"(a.{f.__name__}() {SIGN[outer]} b.{g.__name__}() {SIGN[inner]} c).sum(), a and b "
        "requiring grad, c not"
    )
    expected, first_only = nodes(f, g, outer, inner)
    a = unseen(torch.tensor([0.5, -1.0], dtype=F64, requires_grad=True))
    b = unseen(torch.tensor([2.0, 0.25], dtype=F64, requires_grad=True))
    c = unseen(torch.tensor([3.0, -2.0], dtype=F64), kinks=(0.0,))
    got = call(graph_ops, outer(f(a), inner(g(b), c)).sum(), who="graph_ops")
    if not isinstance(got, set | list | tuple | frozenset):
        raise Problem(f"graph_ops should return a set of names, got {type(got).__name__}")
    # node.name() spells a leaf's node "torch::autograd::AccumulateGrad": the same node
    names = {
        name.removeprefix("torch::autograd::") if isinstance(name, str) else type(name).__name__
        for name in got
    }
    missing, extra = sorted(expected - names), sorted(names - expected)
    if missing == ["AccumulateGrad"]:
        raise Problem(
            f"missing AccumulateGrad for {graph}: the leaves a and b are nodes too "
            "(AccumulateGrad), reached through next_functions though they have none of their own"
        )
    if missing and names <= first_only:
        raise Problem(
            f"missing {', '.join(missing)} for {graph}: follow every entry of next_functions, "
            "not only the first"
        )
    if missing:
        raise Problem(f"missing {', '.join(missing)} for {graph} (found {sorted(names)})")
    if extra:
        raise Problem(f"{', '.join(extra)} is not a node of {graph}")
    return f"finds all {len(expected)} kinds of node of {graph}"


def check_stop_gradient_mse(stop_gradient_mse) -> str:
    pred = unseen(torch.tensor([1.0, -0.5, 2.0], dtype=F64, requires_grad=True))
    q = unseen(torch.tensor([0.25, 0.5, -1.0], dtype=F64, requires_grad=True))
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
