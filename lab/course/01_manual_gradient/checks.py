"""01 · manual gradients: compared with autograd on the same loss (float64); by hand means
no backward pass in the learner's code."""

from __future__ import annotations

import torch

from lab.exercises.feedback import (
    BACKWARD,
    Problem,
    as_tensor,
    call,
    first_difference,
    num,
    pair,
    same,
    tolerance,
    unseen,
    watch,
)

F64 = torch.float64
BY_HAND = (
    "{key} asks for the gradient by hand, by the chain rule: your code ran a backward pass "
    "(backward() or torch.autograd), so autograd did it"
)


def data():
    x = unseen(torch.linspace(-1.0, 1.0, 8, dtype=F64))
    y = 2 * x + 1 + 0.3 * torch.sin(5 * x)
    w, b = unseen(torch.tensor(0.3, dtype=F64)), unseen(torch.tensor(-0.7, dtype=F64))
    return w, b, x, y


def given() -> str:
    w, b, x, _ = data()
    return f"w = {num(w)}, b = {num(b)} on {len(x)} points of y = 2x + 1 + 0.3 sin(5x)"


def autograd_oracle(w, b, x, y):
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    ((w * x + b - y) ** 2).mean().backward()
    return w.grad, b.grad


def by_hand(fn, key: str, *args):
    """The learner's function on copies of ``args``; no backward pass allowed."""
    with watch() as seen:
        copies = (arg.clone() if isinstance(arg, torch.Tensor) else arg for arg in args)
        returned = call(fn, *copies, who=getattr(fn, "__name__", None))
    if seen.count(BACKWARD):
        raise Problem(BY_HAND.format(key=key))
    return returned


def _close(expected: torch.Tensor, got: torch.Tensor) -> bool:
    rtol, atol = tolerance(got)
    return first_difference(expected, got.cpu(), rtol, atol) is None


def check_manual_gradients(manual_gradients) -> str:
    ow, ob = autograd_oracle(*data())  # before the learner's code runs
    grads = pair(by_hand(manual_gradients, "01.1", *data()), "manual_gradients")
    grad_w, grad_b = as_tensor(grads[0], "dL/dw"), as_tensor(grads[1], "dL/db")
    if grad_w.shape == ow.shape and grad_b.shape == ob.shape:
        if _close(ob, grad_w) and _close(ow, grad_b):
            raise Problem(
                f"dL/dw and dL/db are swapped (dL/dw = {num(ow)}, dL/db = {num(ob)} for "
                f"{given()}): return (dL/dw, dL/db) in that order"
            )
        if _close(ob, grad_w):
            raise Problem(
                f"dL/dw = {num(grad_w)} is the value of dL/db, expected {num(ow)} for {given()}: "
                "dL/dw needs the factor x (dy_hat/dw = x), dL/dw = 2/N · Σ r·x"
            )
    n = data()[2].numel()
    for got, right, name in ((grad_w, ow, "dL/dw"), (grad_b, ob, "dL/db")):
        same(
            right,
            got,
            name,
            given=given(),
            mistakes=(
                (right * n, f"did you forget to divide by N = {n} (the loss is a mean)?"),
                (right / 2, "did you drop the 2 of d(r²)/dr = 2r?"),
                (-right, "the sign is flipped: the residual is w*x + b - y, not y - (w*x + b)"),
            ),
        )
    return "dL/dw and dL/db by hand equal autograd's on the same loss (float64)"


def check_descent_step(descent_step) -> str:
    lr = 0.1
    w, b, _, _ = data()
    gw, gb = autograd_oracle(*data())
    right = (w - lr * gw, b - lr * gb)  # before the learner's code, from its own copy of data
    returned = by_hand(descent_step, "01.2", *data(), lr)
    new_w, new_b = pair(returned, "descent_step")
    for got, start, grad, expected, name in (
        (new_w, w, gw, right[0], "new w"),
        (new_b, b, gb, right[1], "new b"),
    ):
        same(
            expected,
            got,
            name,
            given=given() + f", lr = {lr}",
            mistakes=(
                (start + lr * grad, "that step goes uphill: subtract lr times the gradient"),
                (start - grad, "the step is missing the learning rate: multiply by lr"),
                (-lr * grad, "that is only the step: add it to the current value"),
            ),
        )
    return "one step moves w and b by -lr times the gradient, computed by hand"


CHECKS = {"manual_gradients": check_manual_gradients, "descent_step": check_descent_step}
