"""01 · manual gradients: compared with autograd on the same loss (float64)."""

from __future__ import annotations

import torch

from lab.exercises.feedback import call, pair, same

F64 = torch.float64
GIVEN = "w = 0.3, b = -0.7 on 8 points of y = 2x + 1 + 0.3 sin(5x)"


def data():
    x = torch.linspace(-1.0, 1.0, 8, dtype=F64)
    y = 2 * x + 1 + 0.3 * torch.sin(5 * x)
    return torch.tensor(0.3, dtype=F64), torch.tensor(-0.7, dtype=F64), x, y


def autograd_oracle(w, b, x, y):
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    ((w * x + b - y) ** 2).mean().backward()
    return w.grad, b.grad


def check_manual_gradients(manual_gradients) -> str:
    w, b, x, y = data()
    grad_w, grad_b = pair(call(manual_gradients, w, b, x, y), "manual_gradients")
    ow, ob = autograd_oracle(w, b, x, y)
    n = x.numel()
    for got, right, other, name in ((grad_w, ow, ob, "dL/dw"), (grad_b, ob, ow, "dL/db")):
        same(
            right,
            got,
            name,
            given=GIVEN,
            mistakes=(
                (right * n, f"did you forget to divide by N = {n} (the loss is a mean)?"),
                (right / 2, "did you drop the 2 of d(r²)/dr = 2r?"),
                (-right, "the sign is flipped: the residual is w*x + b - y, not y - (w*x + b)"),
                (other, "that is the other parameter's gradient: are they swapped?"),
            ),
        )
    return "dL/dw and dL/db equal autograd's on the same loss (float64)"


def check_descent_step(descent_step) -> str:
    w, b, x, y = data()
    lr = 0.1
    new_w, new_b = pair(call(descent_step, w, b, x, y, lr), "descent_step")
    gw, gb = autograd_oracle(w, b, x, y)
    for got, start, grad, name in ((new_w, w, gw, "new w"), (new_b, b, gb, "new b")):
        same(
            start - lr * grad,
            got,
            name,
            given=GIVEN + f", lr = {lr}",
            mistakes=(
                (start + lr * grad, "that step goes uphill: subtract lr times the gradient"),
                (start - grad, "the step is missing the learning rate: multiply by lr"),
                (-lr * grad, "that is only the step: add it to the current value"),
            ),
        )
    return "one step moves w and b by -lr times autograd's gradient"


CHECKS = {"manual_gradients": check_manual_gradients, "descent_step": check_descent_step}
