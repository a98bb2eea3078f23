"""15 · one training step: the parameters after it against p − lr·∇L from autograd; when they
differ, the order the learner's code called zero_grad, backward and step says why."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lab.exercises.feedback import (
    BACKWARD,
    OPTIMIZER_STEP,
    ZERO_GRAD,
    Problem,
    call,
    num,
    same,
    unseen,
    watch,
)

F64 = torch.float64
LR = 0.1


def _order_problem(order: list[str]) -> str | None:
    """What the order of zero_grad/backward/step calls says went wrong, if it says."""
    if "step" not in order:
        return "optimizer.step() was never called, so the parameters cannot move"
    if "backward" not in order:
        return "loss.backward() was never called, so the step had no gradient of this loss"
    backward, step = order.index("backward"), order.index("step")
    if step < backward:
        return (
            "optimizer.step() ran before loss.backward(), so it used the gradient left from "
            "the previous step: call it after backward()"
        )
    if "zero_grad" in order[backward:step]:
        return (
            "optimizer.zero_grad() ran between loss.backward() and optimizer.step(), so it "
            "cleared the gradient before the step could use it: zero_grad, then backward, "
            "then step"
        )
    if order.count("step") > 1:
        return f"optimizer.step() ran {order.count('step')} times: one training step is one step()"
    if order.count("backward") > 1:
        return f"loss.backward() ran {order.count('backward')} times: once per step"
    return None


def check_train_step(train_step) -> str:
    torch.manual_seed(0)
    model = nn.Linear(3, 2).to(F64)
    x = unseen(torch.randn(6, 3, dtype=F64))
    y = torch.randint(0, 2, (6,))
    loss_fn = nn.CrossEntropyLoss()
    start = [p.detach().clone() for p in model.parameters()]
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))  # the oracle
    learner = copy.deepcopy(model)
    for p in learner.parameters():  # what the previous step left behind
        p.grad = torch.ones_like(p)
    optimizer = torch.optim.SGD(learner.parameters(), lr=LR)
    with watch(*ZERO_GRAD) as seen:
        returned = call(
            train_step, learner, optimizer, loss_fn, x.clone(), y.clone(), who="train_step"
        )
    order = seen.order(zero_grad=ZERO_GRAD, backward=BACKWARD, step=OPTIMIZER_STEP)
    given = f"one SGD step, lr = {LR}, with a gradient of ones left from the previous step"
    for name, p0, g, p in zip(("weight", "bias"), start, grads, learner.parameters(), strict=True):
        try:
            same(p0 - LR * g, p.detach(), f"{name} after the step", given=given)
        except Problem as problem:
            reason = _order_problem(order)
            if reason:
                raise Problem(f"{problem.message}: {reason}") from None
            same(
                p0 - LR * g,
                p.detach(),
                f"{name} after the step",
                given=given,
                mistakes=(
                    (
                        p0 - LR * (g + 1),
                        "the step used this gradient plus the one left from the previous step: "
                        "call optimizer.zero_grad() before backward()",
                    ),
                ),
            )
    if isinstance(returned, torch.Tensor):
        raise Problem(
            "train_step returned a tensor: return loss.item(), a float (the tensor keeps the "
            "whole graph alive)"
        )
    if not isinstance(returned, float):
        raise Problem(f"train_step should return the loss as a float, got {returned!r:.40}")
    after = loss_fn(learner(x), y).item()
    if abs(returned - loss.item()) > 1e-9:
        said = " (that is the loss after the step)" if abs(returned - after) < 1e-9 else ""
        raise Problem(
            f"returned loss {num(returned)}, expected {num(loss.item())}, the loss the "
            f"gradient was taken of{said}"
        )
    return "zero_grad, backward and step in the right order: p − lr·∇L exactly, loss returned"


CHECKS = {"train_step": check_train_step}
