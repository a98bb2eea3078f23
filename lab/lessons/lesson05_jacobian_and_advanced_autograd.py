# %% [markdown]
# # 05 · Jacobians, higher-order derivatives and the Hessian
#
# `backward()` on a scalar gives a gradient. For a vector function `f: Rⁿ → Rᵐ` the full
# derivative is the `m × n` Jacobian `J`, and reverse-mode autograd never builds it: it
# computes **vector-Jacobian products** `vᵀJ` (VJPs). Choosing `v = eᵢ` (one-hot) gives row
# `i` of `J`, so `m` backward passes build the whole Jacobian — exactly what
# `torch.autograd.functional.jacobian` does for us. A **Jacobian-vector product** `J v`
# (JVP) gives a *column* instead. Forward mode (`torch.func.jvp`, `torch.autograd.forward_ad`)
# computes a JVP in one forward pass; `torch.autograd.functional.jvp`, used here, gets the
# same numbers from two reverse passes (the "double-backward trick").
#
# Passing `create_graph=True` makes the backward pass itself differentiable, which gives
# second and third derivatives, Hessians and Hessian-vector products. All checks here are
# in float64, against `torch.autograd.functional` or against derivatives worked out by hand.

# %%
from __future__ import annotations

import torch
from torch.autograd.functional import hessian, hvp, jacobian, jvp

from lab.lessons.harness import LessonRun, run_main

# %% [markdown]
# ## A vector function and its Jacobian, row by row
#
# `f(x) = [x₀·x₁, x₀² + sin x₂, x₁·x₂²]` maps R³ → R³. Worked out by hand:
#
# ```
# J = [[x₁,   x₀,   0       ],
#      [2x₀,  0,    cos x₂  ],
#      [0,    x₂²,  2x₁x₂   ]]
# ```


# %%
def vector_function(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[0] * x[1], x[0] ** 2 + torch.sin(x[2]), x[1] * x[2] ** 2])


def analytic_jacobian(x: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.stack(
        [
            torch.stack([x[1], x[0], zero]),
            torch.stack([2 * x[0], zero, torch.cos(x[2])]),
            torch.stack([zero, x[2] ** 2, 2 * x[1] * x[2]]),
        ]
    )


def jacobian_by_vjps(func, x: torch.Tensor) -> torch.Tensor:
    """Row i of J is the VJP with the one-hot vector eᵢ: one backward pass per output."""
    x = x.detach().requires_grad_(True)
    y = func(x)
    rows = []
    for i in range(y.numel()):
        one_hot = torch.zeros_like(y)
        one_hot.view(-1)[i] = 1.0
        # retain_graph: the same graph is walked again for the next row.
        (row,) = torch.autograd.grad(y, x, grad_outputs=one_hot, retain_graph=True)
        rows.append(row.reshape(-1))
    return torch.stack(rows)


def jacobian_by_jvps(func, x: torch.Tensor) -> torch.Tensor:
    """Column j of J is the JVP with eⱼ: one product per input."""
    columns = []
    for j in range(x.numel()):
        one_hot = torch.zeros_like(x)
        one_hot.view(-1)[j] = 1.0
        _, column = jvp(func, x, one_hot)
        columns.append(column.reshape(-1))
    return torch.stack(columns, dim=1)


# %% [markdown]
# ## Higher-order derivatives with `create_graph=True`
#
# `torch.autograd.grad(y, x, create_graph=True)` returns `dy/dx` as a tensor that is itself
# part of a graph, so we can differentiate it again. For `y = x³`: `3x²`, `6x`, `6`.


# %%
def derivatives(func, x: torch.Tensor, order: int) -> list[torch.Tensor]:
    """[f'(x), f''(x), ...] up to `order`, elementwise, by repeated autograd.grad."""
    x = x.detach().requires_grad_(True)
    current = func(x)
    found = []
    for _ in range(order):
        # Summing is fine for elementwise f: d(sum f(xᵢ))/dxᵢ = f'(xᵢ).
        (current,) = torch.autograd.grad(current.sum(), x, create_graph=True)
        found.append(current)
    return [d.detach() for d in found]


# %% [markdown]
# ## `grad()` returns, `backward()` accumulates
#
# `torch.autograd.grad` hands the gradient back and leaves `.grad` alone. `backward()`
# *adds* into `.grad` of the leaves — call it twice and the gradient doubles.


# %%
def grad_versus_backward(x: torch.Tensor) -> dict[str, torch.Tensor | None]:
    x = x.detach().requires_grad_(True)
    (returned,) = torch.autograd.grad((x**2).sum(), x)
    grad_after_grad_call = x.grad  # still None
    (x**2).sum().backward()
    after_one_backward = x.grad.clone()
    (x**2).sum().backward()
    return {
        "returned": returned,
        "grad_after_grad_call": grad_after_grad_call,
        "after_one_backward": after_one_backward,
        "after_two_backwards": x.grad.clone(),
    }


# %% [markdown]
# ## The Hessian, and a Hessian-vector product without the Hessian
#
# For `f(x) = xᵀAx + Σ sin xᵢ` the gradient is `(A + Aᵀ)x + cos x` and the Hessian is
# `H = A + Aᵀ − diag(sin x)`. `functional.hessian` builds `H` (n backward passes through
# the gradient). Often we only need `H v`: differentiate `gᵀv` where `g` is the gradient
# computed with `create_graph=True` — one extra backward, `H` never materialised.


# %%
def quadratic_plus_sin(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return x @ matrix @ x + torch.sin(x).sum()


def analytic_hessian(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return matrix + matrix.T - torch.diag(torch.sin(x))


def hessian_vector_product(func, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H v by double backward: d/dx (∇f(x) · v)."""
    x = x.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(func(x), x, create_graph=True)
    (product,) = torch.autograd.grad(gradient @ v, x)
    return product


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    f64 = {"dtype": torch.float64, "device": run.device}
    writer = run.writer

    x = torch.tensor([0.7, -1.3, 2.1], **f64)
    by_vjps = jacobian_by_vjps(vector_function, x)
    reference = jacobian(vector_function, x)
    print("Jacobian from one-hot VJPs:\n", by_vjps.cpu())
    run.check(
        torch.allclose(by_vjps, reference),
        "Jacobian rows from one-hot VJPs equal functional.jacobian",
    )
    run.check(
        torch.allclose(reference, analytic_jacobian(x)),
        "functional.jacobian equals the Jacobian worked out by hand",
    )
    run.check(
        torch.allclose(jacobian_by_jvps(vector_function, x), reference),
        "Jacobian columns from one-hot JVPs equal functional.jacobian",
    )
    writer.add_scalar(
        "check/jacobian_vjp_max_abs_error", (by_vjps - reference).abs().max().item(), 0
    )

    points = torch.linspace(-2.0, 2.0, 41, **f64)
    first, second, third = derivatives(lambda t: t**3, points, order=3)
    run.check(
        torch.allclose(first, 3 * points**2)
        and torch.allclose(second, 6 * points)
        and torch.allclose(third, torch.full_like(points, 6.0)),
        "d/dx x³ = 3x², d²/dx² = 6x, d³/dx³ = 6 (create_graph=True)",
    )
    for step, values in enumerate(zip(points, first, second, third, strict=True)):
        for tag, value in zip(("x", "d1_3x2", "d2_6x", "d3_6"), values, strict=True):
            writer.add_scalar(f"cube_derivatives/{tag}", value.item(), step)

    seen = grad_versus_backward(x)
    run.check(
        seen["grad_after_grad_call"] is None and torch.allclose(seen["returned"], 2 * x),
        "autograd.grad returns 2x and leaves x.grad as None",
    )
    run.check(
        torch.allclose(seen["after_two_backwards"], 2 * seen["after_one_backward"]),
        "a second backward() adds into x.grad: it doubles",
    )

    torch.manual_seed(5)
    n = 4
    matrix = torch.randn(n, n, **f64)  # not symmetric on purpose: H uses A + Aᵀ
    point = torch.randn(n, **f64)
    v = torch.randn(n, **f64)

    def func(t):
        return quadratic_plus_sin(t, matrix)

    h_autograd = hessian(func, point)
    h_by_hand = analytic_hessian(point, matrix)
    print("Hessian (functional.hessian):\n", h_autograd.cpu())
    run.check(
        torch.allclose(h_autograd, h_by_hand), "functional.hessian equals A + Aᵀ − diag(sin x)"
    )
    run.check(torch.allclose(h_autograd, h_autograd.T), "the Hessian is symmetric")
    hv = hessian_vector_product(func, point, v)
    run.check(torch.allclose(hv, h_by_hand @ v), "double-backward Hessian-vector product = H @ v")
    run.check(torch.allclose(hv, hvp(func, point, v)[1]), "it equals functional.hvp too")
    writer.add_scalar("check/hessian_max_abs_error", (h_autograd - h_by_hand).abs().max().item(), 0)
    writer.add_scalar("check/hvp_max_abs_error", (hv - h_by_hand @ v).abs().max().item(), 0)


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("05_jacobian_and_advanced_autograd", run_lesson, argv)


# %%
if __name__ == "__main__":
    main()
