"""07 · custom autograd Functions: forward against the built-in op, backward by gradcheck."""

from __future__ import annotations

import torch

from lab.exercises.feedback import Problem, call, grad_vs_numerical, same, unchanged, unseen

F64 = torch.float64
X = torch.tensor([-3.0, -1.0, -0.5, 0.0, 1.0, 2.5], dtype=F64)
# not all ones: a backward that ignores grad_output cannot pass by luck
V = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0], dtype=F64)


def check_sigmoid(MySigmoid) -> str:
    at, v = unseen(X), unseen(V)
    x = at.clone()
    out = call(MySigmoid.apply, x, who=f"{MySigmoid.__name__}.forward")
    unchanged(at, x, "x", "forward")
    same(
        torch.sigmoid(at),
        out,
        "forward",
        given=f"x = {at.tolist()}",
        mistakes=((torch.sigmoid(-at), "did you write exp(x) where sigmoid has exp(-x)?"),),
    )
    grad_vs_numerical(MySigmoid.apply, [at], ["x"], v, given="x = " + str(at.tolist()))
    inputs = (at.clone().requires_grad_(True),)
    if not call(torch.autograd.gradcheck, MySigmoid.apply, inputs, raise_exception=False):
        raise Problem("torch.autograd.gradcheck fails on MySigmoid")
    return "forward equals torch.sigmoid and backward passes gradcheck (float64)"


def check_muladd(MulAdd) -> str:
    x = unseen(torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=F64))
    y = unseen(torch.tensor([2.0, 0.25, -1.5, 1.0], dtype=F64))
    given = f"x = {x.tolist()}, y = {y.tolist()}"
    x_in, y_in = x.clone(), y.clone()
    out = call(MulAdd.apply, x_in, y_in, who=f"{MulAdd.__name__}.forward")
    unchanged(x, x_in, "x", "forward")
    unchanged(y, y_in, "y", "forward")
    same(x * y + x, out, "forward", given=given)
    v = unseen(torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=F64))
    grad_vs_numerical(MulAdd.apply, [x, y], ["x", "y"], v, given=given)
    return "forward equals x * y + x and both gradients pass gradcheck (float64)"


CHECKS = {"MySigmoid": check_sigmoid, "MulAdd": check_muladd}
