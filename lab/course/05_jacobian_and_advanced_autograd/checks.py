"""05 · Jacobians: a row against torch.autograd.functional.jacobian (one vector-Jacobian
product, no more), d²f/dx² in closed form (by autograd, twice)."""

from __future__ import annotations

import torch

from lab.exercises.feedback import BACKWARD, Problem, call, same, unseen, watch

F64 = torch.float64
X = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
WHOLE_JACOBIAN = (
    torch.autograd.functional.jacobian,
    torch.autograd.functional.hessian,
    torch.func.jacrev,
    torch.func.jacfwd,
    torch.func.hessian,
)


def f(x):
    """A function R³ → R³ whose Jacobian is neither symmetric nor diagonal."""
    return torch.stack([x[0] * x[1], x[0] * torch.sin(x[2]), x[1] ** 2 + 3 * x[2]])


def _caller_x_untouched(x: torch.Tensor, who: str) -> None:
    if x.requires_grad:
        raise Problem(
            f"{who} switched on requires_grad on the caller's x: work on "
            "x.detach().requires_grad_(True)"
        )


def check_jacobian_row(jacobian_row) -> str:
    at = unseen(X)
    jac = torch.autograd.functional.jacobian(f, at)  # the oracle: autograd, built-in ops
    for i in (0, 2):
        x = at.clone()
        with watch(*WHOLE_JACOBIAN) as seen:
            got = call(jacobian_row, f, x, i, who="jacobian_row")
        _caller_x_untouched(x, "jacobian_row")
        whole = seen.first(*WHOLE_JACOBIAN)
        if whole is not None:
            raise Problem(
                "05.1 asks for one vector-Jacobian product (torch.autograd.grad with "
                f"grad_outputs): your code called {whole.label}, which computes the whole "
                "Jacobian to read one row of it"
            )
        same(
            jac[i],
            got,
            f"row {i}",
            given=f"f(x) = [x0·x1, x0·sin(x2), x1² + 3·x2] at x = {at.tolist()}",
            mistakes=(
                (
                    jac.sum(0),
                    "that is the sum of all rows (grad_outputs of ones, or y.sum()): use a "
                    f"one-hot vector with a 1 at index {i}",
                ),
                (jac[:, i], f"that is column {i}: row {i} is eᵢᵀ·J, a vector-Jacobian product"),
            ),
        )
        if seen.count(BACKWARD) != 1:
            raise Problem(
                f"05.1 asks for row {i} with one vector-Jacobian product, one backward pass: "
                f"your code ran {seen.count(BACKWARD)}"
            )
    return "rows 0 and 2 equal torch.autograd.functional.jacobian's, one backward pass each"


def check_second_derivative(second_derivative) -> str:
    x = unseen(torch.tensor([-1.5, 0.0, 0.5, 2.0], dtype=F64))
    first = 3 * x**2 + torch.cos(x)
    second = 6 * x - torch.sin(x)  # closed form
    given = x.clone()
    with watch() as seen:
        got = call(second_derivative, lambda t: t**3 + torch.sin(t), given, who="second_derivative")
    _caller_x_untouched(given, "second_derivative")
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
    if seen.count(BACKWARD) < 2:
        raise Problem(
            "05.2 asks autograd for the second derivative: differentiate twice (the first "
            f"grad() with create_graph=True); your code ran {seen.count(BACKWARD)} backward "
            "pass(es)"
        )
    return "d²f/dx² of x³ + sin(x) equals 6x − sin(x), by autograd twice"


CHECKS = {"jacobian_row": check_jacobian_row, "second_derivative": check_second_derivative}
