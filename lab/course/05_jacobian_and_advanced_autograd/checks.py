"""05 · Jacobians: a row against torch.autograd.functional.jacobian, d²f/dx² in closed form."""

from __future__ import annotations

import torch

from lab.exercises.feedback import Problem, call, same

F64 = torch.float64
X = torch.tensor([0.5, -1.0, 2.0], dtype=F64)


def f(x):
    """A function R³ → R³ whose Jacobian is neither symmetric nor diagonal."""
    return torch.stack([x[0] * x[1], x[0] * torch.sin(x[2]), x[1] ** 2 + 3 * x[2]])


def check_jacobian_row(jacobian_row) -> str:
    jac = torch.autograd.functional.jacobian(f, X)  # the oracle: autograd, built-in ops
    for i in (0, 2):
        x = X.clone()
        got = call(jacobian_row, f, x, i, who="jacobian_row")
        if x.requires_grad:
            raise Problem(
                "jacobian_row switched on requires_grad on the caller's x: work on "
                "x.detach().requires_grad_(True)"
            )
        same(
            jac[i],
            got,
            f"row {i}",
            given=f"f(x) = [x0·x1, x0·sin(x2), x1² + 3·x2] at x = {X.tolist()}",
            mistakes=(
                (
                    jac.sum(0),
                    "that is the sum of all rows (grad_outputs of ones, or y.sum()): use a "
                    f"one-hot vector with a 1 at index {i}",
                ),
                (jac[:, i], f"that is column {i}: row {i} is eᵢᵀ·J, a vector-Jacobian product"),
            ),
        )
    return "rows 0 and 2 equal torch.autograd.functional.jacobian's"


def check_second_derivative(second_derivative) -> str:
    x = torch.tensor([-1.5, 0.0, 0.5, 2.0], dtype=F64)
    got = call(second_derivative, lambda t: t**3 + torch.sin(t), x.clone(), who="second_derivative")
    first = 3 * x**2 + torch.cos(x)
    second = 6 * x - torch.sin(x)  # closed form
    same(
        second,
        got,
        "d²f/dx²",
        given=f"f(x) = x³ + sin(x) at x = {x.tolist()}",
        mistakes=(
            (first, "that is the first derivative: differentiate it once more"),
            (
                first + second,
                "that is df/dx + d²f/dx²: x.grad accumulated both backward() calls; use "
                "torch.autograd.grad (or zero x.grad in between)",
            ),
        ),
    )
    return "d²f/dx² of x³ + sin(x) equals 6x − sin(x)"


CHECKS = {"jacobian_row": check_jacobian_row, "second_derivative": check_second_derivative}
