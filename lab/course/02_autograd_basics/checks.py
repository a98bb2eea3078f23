"""02 · autograd basics: gradients against the closed form, a loop against plain descent."""

from __future__ import annotations

import torch

from lab.course import find
from lab.exercises.feedback import BACKWARD, Problem, call, pair, same, watch

# lesson 01's data: the same fit, now with autograd
given, data = find("01").checks().given, find("01").checks().data


def closed_form(w, b, x, y):
    r = w * x + b - y
    return (2 * r * x).mean(), (2 * r).mean()


def check_autograd_gradients(autograd_gradients) -> str:
    expected = closed_form(*data())  # before the learner's code runs
    w, b, x, y = data()
    with watch() as seen:
        got = pair(call(autograd_gradients, w, b, x, y), "autograd_gradients")
    if w.requires_grad or b.requires_grad:
        raise Problem(
            "your function switched on requires_grad on the caller's w/b: make your own leaf, "
            "w = w.detach().clone().requires_grad_(True)"
        )
    if not torch.equal(torch.stack([w, b]), torch.stack(data()[:2])):
        raise Problem("your function changed the caller's w or b: leave them as they were")
    if not seen.count(BACKWARD):
        raise Problem(
            "02.1 asks autograd to compute the gradient: your code ran no backward pass; mark "
            "leaf copies of w and b with requires_grad=True and call backward() on the loss"
        )
    for value, right, name in zip(got, expected, ("dL/dw", "dL/db"), strict=True):
        same(
            right,
            value,
            name,
            given=given(),
            mistakes=((2 * right, "twice the gradient: backward() ran twice, and .grad adds up"),),
        )
    return "autograd's dL/dw and dL/db equal the closed form 2·mean(r·x), 2·mean(r)"


def plain_descent(x, y, lr, steps, accumulate=False):
    """What the loop must do, with the closed-form gradient; ``accumulate`` models the
    classic bug (gradients never zeroed)."""
    w = torch.zeros((), dtype=x.dtype)
    b = torch.zeros((), dtype=x.dtype)
    total_w = total_b = 0.0
    for _ in range(steps):
        gw, gb = closed_form(w, b, x, y)
        total_w, total_b = (total_w + gw, total_b + gb) if accumulate else (gw, gb)
        w, b = w - lr * total_w, b - lr * total_b
    return w, b


def check_fit_autograd(fit_autograd) -> str:
    _, _, x, y = data()
    lr = 0.1
    for steps in (1, 3):
        right = plain_descent(x, y, lr, steps)
        wrong = plain_descent(x, y, lr, steps, accumulate=True)
        with watch() as seen:
            got = pair(call(fit_autograd, x.clone(), y.clone(), lr, steps), "fit_autograd")
        if seen.count(BACKWARD) != steps:
            raise Problem(
                f"02.2 asks for each step's gradient from autograd: your code ran "
                f"{seen.count(BACKWARD)} backward pass(es) for {steps} step(s); call "
                "loss.backward() once per step"
            )
        for value, r, bad, name in zip(got, right, wrong, ("w", "b"), strict=True):
            same(
                r,
                value,
                name,
                given=f"{steps} step(s) from w = b = 0, lr = {lr}",
                mistakes=(
                    (
                        bad,
                        "gradients added up across steps: zero w.grad and b.grad every step "
                        "(w.grad.zero_() or w.grad = None)",
                    ),
                ),
            )
    return "w and b follow plain gradient descent step for step"


CHECKS = {"autograd_gradients": check_autograd_gradients, "fit_autograd": check_fit_autograd}
