# %% [markdown]
# # 05 · Jacobians, higher-order derivatives and the Hessian
#
# `backward()` on a scalar gives a gradient. For a vector function `f: Rⁿ → Rᵐ` the full
# derivative is the `m × n` Jacobian `J`, and reverse-mode autograd never builds it: it
# computes **vector-Jacobian products** `vᵀJ` (VJPs). Choosing `v = eᵢ` (one-hot) gives row
# `i` of `J`, so `m` backward passes build the whole Jacobian — exactly what
# `torch.autograd.functional.jacobian` does for us. A **Jacobian-vector product** `J v`
# (JVP) gives a *column* instead.
#
# Passing `create_graph=True` makes the backward pass itself differentiable, which gives
# second and third derivatives, Hessians and Hessian-vector products. All checks here are
# in float64, against `torch.autograd.functional` or against derivatives worked out by hand.

# %% tags=["parameters"]
POINTS = 41  # points in [-2, 2] where the derivatives of x³ are computed and plotted
SEED = 5  # seed for the random matrix A, the point and the vector v of the Hessian part
HESSIAN_SIZE = 4  # n: the Hessian part works in Rⁿ

# %%
import warnings
from functools import partial

import matplotlib.pyplot as plt
import torch
import torch.autograd.forward_ad as fwAD
from torch.autograd.functional import hessian, hvp, jacobian, jvp

from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## A vector function and its Jacobian, worked out by hand
#
# `f(x) = [x₀·x₁, x₀² + sin x₂, x₁·x₂²]` maps R³ → R³. Row `i` of `J` holds the partial
# derivatives of output `i`:
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


x = torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64, device=device)
by_hand = analytic_jacobian(x)
print("x    =", x.tolist())
print("f(x) =", vector_function(x).tolist())
print("J by hand:\n", by_hand.cpu())
check(
    torch.allclose(jacobian(vector_function, x), by_hand),
    "functional.jacobian equals the Jacobian worked out by hand",
)

# %% [markdown]
# ## Rows of J from VJPs: `autograd.grad(..., grad_outputs=eᵢ)`
#
# `torch.autograd.grad(y, x, grad_outputs=v)` returns `vᵀJ`. With `v = eᵢ` that is row `i`.
# `retain_graph=True` keeps the graph alive, because we walk it once per row.


# %%
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


by_vjps = jacobian_by_vjps(vector_function, x)
print("J from one-hot VJPs:\n", by_vjps.cpu())
check(torch.allclose(by_vjps, by_hand), "Jacobian rows from one-hot VJPs equal J by hand")
lesson.writer.add_scalar(
    "check/jacobian_vjp_max_abs_error", (by_vjps - by_hand).abs().max().item(), 0
)

# %% [markdown]
# ## The same rows with `y.backward(gradient=v)`
#
# `backward()` on a non-scalar `y` needs the vector `v` too: `y.backward(gradient=v)`
# computes the same `vᵀJ`, but *adds* it into `x.grad` instead of returning it. So between
# rows we must reset `x.grad` — otherwise row 2 would come out as row 1 + row 2.


# %%
def jacobian_by_backward(func, x: torch.Tensor) -> torch.Tensor:
    """Row i of J via y.backward(gradient=eᵢ), read from x.grad (reset before each row)."""
    x = x.detach().requires_grad_(True)
    y = func(x)
    rows = []
    for i in range(y.numel()):
        one_hot = torch.zeros_like(y)
        one_hot.view(-1)[i] = 1.0
        x.grad = None  # backward accumulates: start each row from nothing
        y.backward(gradient=one_hot, retain_graph=True)
        rows.append(x.grad.detach().clone().reshape(-1))
    return torch.stack(rows)


by_backward = jacobian_by_backward(vector_function, x)
print("J from y.backward(gradient=eᵢ):\n", by_backward.cpu())
check(torch.allclose(by_backward, by_hand), "y.backward(gradient=eᵢ) puts row i of J in x.grad")

v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, device=device)
leaf = x.detach().requires_grad_(True)
vector_function(leaf).backward(gradient=v)
print("v =", v.tolist(), "  x.grad after y.backward(gradient=v) =", leaf.grad.tolist())
check(torch.allclose(leaf.grad, v @ by_hand), "y.backward(gradient=v) gives vᵀJ for any v")

# %% [markdown]
# ## Columns of J from JVPs
#
# `torch.autograd.functional.jvp(f, x, u)` returns `J u`: with `u = eⱼ`, column `j`. (It
# gets there with two reverse passes, the "double-backward trick"; `torch.func.jvp` and
# `torch.autograd.forward_ad` compute the same in one forward pass.)


# %%
def jacobian_by_jvps(func, x: torch.Tensor) -> torch.Tensor:
    """Column j of J is the JVP with eⱼ: one product per input."""
    columns = []
    for j in range(x.numel()):
        one_hot = torch.zeros_like(x)
        one_hot.view(-1)[j] = 1.0
        _, column = jvp(func, x, one_hot)
        columns.append(column.reshape(-1))
    return torch.stack(columns, dim=1)


by_jvps = jacobian_by_jvps(vector_function, x)
print("J from one-hot JVPs:\n", by_jvps.cpu())
check(torch.allclose(by_jvps, by_hand), "Jacobian columns from one-hot JVPs equal J by hand")

# %% [markdown]
# ## Real forward mode: dual numbers
#
# `torch.autograd.forward_ad` sends a *tangent* along with each value through the forward
# pass (a dual number `x + u·ε`): the output comes out carrying its tangent `J u`, and no
# backward graph is recorded at all. To see the difference, a hook on `f`'s output counts
# the backward passes through it: `functional.jvp` runs one (and then differentiates that
# pass: the double-backward trick), forward mode none.


# %%
def jacobian_by_forward_mode(func, x: torch.Tensor) -> torch.Tensor:
    """Column j of J is the tangent of func's output when x carries the tangent eⱼ."""
    columns = []
    with fwAD.dual_level(), warnings.catch_warnings():
        # torch loads its forward-mode rules on first use, with a notice about its own jit
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
        for j in range(x.numel()):
            one_hot = torch.zeros_like(x)
            one_hot.view(-1)[j] = 1.0
            out = func(fwAD.make_dual(x, one_hot))
            columns.append(fwAD.unpack_dual(out).tangent.reshape(-1))
    return torch.stack(columns, dim=-1)


def backward_passes(jvp_of) -> int:
    """How many backward passes run through vector_function's output during jvp_of(f)."""
    passes = []

    def watched(t: torch.Tensor) -> torch.Tensor:
        y = vector_function(t)
        if y.requires_grad:  # a graph was recorded: count each backward pass through y
            y.register_hook(lambda grad: passes.append(1))
        return y

    jvp_of(watched)
    return len(passes)


by_forward = jacobian_by_forward_mode(vector_function, x)
print("J from forward-mode tangents:\n", by_forward.cpu())
check(torch.allclose(by_forward, by_hand), "forward-mode tangents J eⱼ equal J's columns by hand")
through_functional = backward_passes(lambda f: jvp(f, x, v))
through_forward = backward_passes(lambda f: jacobian_by_forward_mode(f, x))
print(f"backward passes through f: functional.jvp {through_functional}, forward {through_forward}")
check(
    through_functional == 1 and through_forward == 0,
    "functional.jvp runs a backward pass through f; forward mode runs none",
)

# %% [markdown]
# ## Higher-order derivatives with `create_graph=True`
#
# `torch.autograd.grad(y, x, create_graph=True)` returns `dy/dx` as a tensor that is itself
# part of a graph, so we can differentiate it again. For `f(x) = x³`: `f′ = 3x²`,
# `f″ = 6x`, `f‴ = 6`. Each value is also logged (`cube_derivatives/…`, step = point index).


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


points = torch.linspace(-2.0, 2.0, POINTS, dtype=torch.float64, device=device)
first, second, third = derivatives(lambda t: t**3, points, order=3)
print(" x      f′=3x²    f″=6x    f‴=6")
for i in range(0, POINTS, max(1, POINTS // 4)):
    print(f"{points[i]:5.2f} {first[i]:8.3f} {second[i]:8.3f} {third[i]:7.3f}")
for step, values in enumerate(zip(points, first, second, third, strict=True)):
    for tag, value in zip(("x", "d1_3x2", "d2_6x", "d3_6"), values, strict=True):
        lesson.writer.add_scalar(f"cube_derivatives/{tag}", value.item(), step)
check(torch.allclose(first, 3 * points**2), "d/dx x³ = 3x² (autograd.grad)")
check(torch.allclose(second, 6 * points), "d²/dx² x³ = 6x (create_graph=True, twice)")
check(torch.allclose(third, torch.full_like(points, 6.0)), "d³/dx³ x³ = 6 (three times)")

# %% [markdown]
# ## f and its derivatives on one plot
#
# Each curve is the slope of the one before it. `f′ = 3x²` *touches* zero at x = 0 without
# crossing it: `f` is flat there for an instant but rises on both sides, so x = 0 is an
# inflection point of x³ (`f″ = 6x` changes sign), not a minimum or maximum. And where
# `f″` crosses zero, `f′` has its minimum.

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
xs = points.cpu().numpy()  # matplotlib wants NumPy arrays
ax.plot(xs, (points**3).cpu().numpy(), label="f = x³", linewidth=2)
ax.plot(xs, first.cpu().numpy(), label="f′ = 3x²")
ax.plot(xs, second.cpu().numpy(), label="f″ = 6x")
ax.plot(xs, third.cpu().numpy(), label="f‴ = 6", linestyle="--")
ax.axhline(0, color="gray", linewidth=0.5)
ax.set(title="x³ and its derivatives by repeated autograd.grad", xlabel="x")
ax.legend()
fig.tight_layout()
show(fig, "cube_and_derivatives")
around_zero = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64, device=device)
slope, curvature = derivatives(lambda t: t**3, around_zero, order=2)
print(f"at x = -0.5, 0, 0.5: f′ = {slope.tolist()}, f″ = {curvature.tolist()}")
check(
    slope[1] == 0 and slope[0] > 0 and slope[2] > 0 and (first >= 0).all(),
    "f′ is 0 at x = 0 and positive on both sides (≥ 0 everywhere): x³ has no extremum there",
)
check(curvature[0] < 0 < curvature[2], "f″ changes sign at x = 0: an inflection point")

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


seen = grad_versus_backward(x)
for name, value in seen.items():
    print(f"{name:<22}", None if value is None else value.tolist())
check(seen["grad_after_grad_call"] is None, "autograd.grad leaves x.grad as None")
check(torch.allclose(seen["returned"], 2 * x), "autograd.grad returns d(Σx²)/dx = 2x")
check(
    torch.allclose(seen["after_one_backward"], 2 * x)
    and torch.allclose(seen["after_two_backwards"], 4 * x),
    "backward() puts 2x into x.grad; a second backward() adds: 4x",
)

# %% [markdown]
# ## The Hessian
#
# For `f(x) = xᵀAx + Σ sin xᵢ` the gradient is `(A + Aᵀ)x + cos x` and the Hessian is
# `H = A + Aᵀ − diag(sin x)`. `A` is random and *not* symmetric, on purpose: the Hessian
# is symmetric anyway (the mixed partials ∂²f/∂xᵢ∂xⱼ agree in either order), and with a
# symmetric `A` the mistake `H = 2A` would go unseen. `functional.hessian` builds `H` with
# n backward passes through the gradient.


# %%
def quadratic_plus_sin(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return x @ matrix @ x + torch.sin(x).sum()


def analytic_hessian(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return matrix + matrix.T - torch.diag(torch.sin(x))


generator = torch.Generator().manual_seed(SEED)
matrix, point, u = (
    torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)
    for shape in ((HESSIAN_SIZE, HESSIAN_SIZE), (HESSIAN_SIZE,), (HESSIAN_SIZE,))
)
f = partial(quadratic_plus_sin, matrix=matrix)  # the function of x alone, for autograd
h_autograd = hessian(f, point)
h_by_hand = analytic_hessian(point, matrix)
print("H from functional.hessian:\n", h_autograd.cpu())
lesson.writer.add_scalar(
    "check/hessian_max_abs_error", (h_autograd - h_by_hand).abs().max().item(), 0
)
check(
    not torch.allclose(matrix, matrix.T) and torch.allclose(h_autograd, h_autograd.T),
    "A is not symmetric, yet autograd's Hessian is: ∂²f/∂xᵢ∂xⱼ = ∂²f/∂xⱼ∂xᵢ",
)
check(torch.allclose(h_autograd, h_by_hand), "functional.hessian equals A + Aᵀ − diag(sin x)")

# %% [markdown]
# ## A Hessian-vector product without the Hessian
#
# Often only `H u` is needed (Newton-type methods, curvature along a direction). The
# gradient `g(x)` computed with `create_graph=True` is differentiable, so differentiate
# `g · u`: one extra backward pass, `H` never materialised.


# %%
def hessian_vector_product(func, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H v by double backward: d/dx (∇f(x) · v)."""
    x = x.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(func(x), x, create_graph=True)
    (product,) = torch.autograd.grad(gradient @ v, x)
    return product


hv = hessian_vector_product(f, point, u)
print("H u by double backward:", hv.tolist())
print("H u by matrix product: ", (h_by_hand @ u).tolist())
lesson.writer.add_scalar("check/hvp_max_abs_error", (hv - h_by_hand @ u).abs().max().item(), 0)
check(torch.allclose(hv, h_by_hand @ u), "double-backward Hessian-vector product = H @ u")
check(torch.allclose(hv, hvp(f, point, u)[1]), "it equals functional.hvp too")

# %% [markdown]
# ## Both matrices as pictures
#
# Left, the Jacobian of `f(x)`: row `i` = how output `i` moves with each input, so the
# zeros are the inputs an output does not depend on. Right, the Hessian: mirror-symmetric
# about the diagonal, as every Hessian of a smooth function is.


# %%
def heatmap(ax, matrix: torch.Tensor, title: str, row_label: str, col_label: str) -> None:
    values = matrix.detach().cpu().numpy()
    limit = float(abs(values).max()) or 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            value = float(values[i, j])
            color = "white" if abs(value) > 0.6 * limit else "black"  # readable on dark cells
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color=color)
    ax.set(title=title, xlabel=col_label, ylabel=row_label)
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]))
    ax.figure.colorbar(image, ax=ax, shrink=0.8)


fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
heatmap(left, by_vjps, "Jacobian of f at x", "output i", "input j")
heatmap(right, h_autograd, "Hessian of xᵀAx + Σ sin x", "i", "j")
fig.tight_layout()
show(fig, "jacobian_and_hessian")

# %% [markdown]
# ## What to take away
#
# - Reverse mode gives rows of `J` (VJPs: `grad_outputs=v` or `backward(gradient=v)`),
#   forward mode gives columns (JVPs: `torch.autograd.forward_ad`, `torch.func.jvp`;
#   `functional.jvp` gets them by double backward). Pick the side with fewer vectors.
# - `backward(gradient=v)` accumulates into `.grad`; `autograd.grad` returns.
# - `create_graph=True` makes gradients differentiable: higher derivatives, Hessians, and
#   Hessian-vector products without the Hessian.

# %%
lesson.done()
