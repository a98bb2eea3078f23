"""Lesson 05: VJP/JVP/backward Jacobians, higher derivatives, grad vs backward, Hessians."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_scalars, single_run_dir
from torch.autograd.functional import hessian, jacobian

F64 = torch.float64
lesson = definitions("05")

# Small slips the lesson's own checks must catch.
MUTATIONS = [
    # backward() accumulates: without the reset, row i comes out as rows 0..i summed
    ("x.grad = None  # backward accumulates: start each row from nothing", "pass"),
    # treating A as symmetric: the Hessian of xᵀAx is A + Aᵀ, not 2A
    ("return matrix + matrix.T - torch.diag(", "return 2 * matrix - torch.diag("),
    # JVP columns stacked as rows: a missing transpose
    ("return torch.stack(columns, dim=1)", "return torch.stack(columns)"),
    # forward mode seeded with one tangent for every column: the columns are all J·1
    (
        "out = func(fwAD.make_dual(x, one_hot))",
        "out = func(fwAD.make_dual(x, torch.ones_like(x)))",
    ),
    # a symmetric A: the setting in which H = 2A would look right
    (
        "f = partial(quadratic_plus_sin, matrix=matrix)",
        "matrix = matrix + matrix.T; f = partial(quadratic_plus_sin, matrix=matrix)",
    ),
    # the mean for the sum: every derivative of x³ comes out 1/N times too small
    (
        "(current,) = torch.autograd.grad(current.sum(), x, create_graph=True)",
        "(current,) = torch.autograd.grad(current.mean(), x, create_graph=True)",
    ),
]


def non_square(x: torch.Tensor) -> torch.Tensor:
    """R³ → R², a second function so the helpers are not tuned to the lesson's one."""
    matrix = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.0, 4.0]], dtype=F64)
    return matrix @ torch.tanh(x) + x[0] * x[2]


@pytest.mark.parametrize("func", ["vector_function", non_square], ids=["lesson_f", "non_square"])
def test_vjp_rows_backward_rows_and_jvp_columns_equal_functional_jacobian(func):
    func = getattr(lesson, func) if isinstance(func, str) else func
    torch.manual_seed(0)
    x = torch.randn(3, dtype=F64)
    reference = jacobian(func, x)
    assert torch.allclose(lesson.jacobian_by_vjps(func, x), reference)
    assert torch.allclose(lesson.jacobian_by_backward(func, x), reference)
    assert torch.allclose(lesson.jacobian_by_jvps(func, x), reference)
    assert torch.allclose(lesson.jacobian_by_forward_mode(func, x), reference)


def test_forward_mode_runs_no_backward_pass_and_functional_jvp_does():
    x = torch.tensor([0.5, 1.0, -2.0], dtype=F64)
    assert lesson.backward_passes(lambda f: lesson.jacobian_by_forward_mode(f, x)) == 0
    assert lesson.backward_passes(lambda f: torch.autograd.functional.jvp(f, x, x)) == 1
    assert lesson.backward_passes(lambda f: lesson.jacobian_by_vjps(f, x)) == 3  # one per row


def test_jacobian_by_backward_leaves_the_callers_tensor_alone():
    x = torch.tensor([0.5, 1.0, -2.0], dtype=F64, requires_grad=True)
    x.grad = torch.full_like(x, 9.0)  # a stale gradient must not leak into the rows
    rows = lesson.jacobian_by_backward(lesson.vector_function, x)
    assert torch.allclose(rows, jacobian(lesson.vector_function, x.detach()))
    assert torch.equal(x.grad, torch.full_like(x, 9.0))


def test_hand_written_jacobian_equals_autograd():
    torch.manual_seed(1)
    for _ in range(3):
        x = torch.randn(3, dtype=F64)
        assert torch.allclose(lesson.analytic_jacobian(x), jacobian(lesson.vector_function, x))


def test_higher_order_derivatives():
    x = torch.linspace(-2.0, 2.0, 9, dtype=F64)
    first, second, third = lesson.derivatives(torch.sin, x, order=3)
    assert torch.allclose(first, torch.cos(x))
    assert torch.allclose(second, -torch.sin(x))
    assert torch.allclose(third, -torch.cos(x))


def test_grad_returns_and_backward_accumulates():
    x = torch.tensor([1.5, -2.0], dtype=F64)
    seen = lesson.grad_versus_backward(x)
    assert seen["grad_after_grad_call"] is None
    assert torch.allclose(seen["returned"], 2 * x)
    assert torch.allclose(seen["after_one_backward"], 2 * x)
    assert torch.allclose(seen["after_two_backwards"], 4 * x)


def test_analytic_hessian_and_hvp_equal_autograd():
    torch.manual_seed(2)
    matrix = torch.randn(5, 5, dtype=F64)
    x, v = torch.randn(5, dtype=F64), torch.randn(5, dtype=F64)

    def func(t):
        return lesson.quadratic_plus_sin(t, matrix)

    reference = hessian(func, x)
    assert torch.allclose(lesson.analytic_hessian(x, matrix), reference)
    assert torch.allclose(lesson.hessian_vector_product(func, x, v), reference @ v)

    def quartic(t):
        return (t**4).sum() + t[0] * t[1] * t[2]

    assert torch.allclose(lesson.hessian_vector_product(quartic, x, v), hessian(quartic, x) @ v)


def test_heatmap_writes_every_entry_into_its_cell():
    matrix = torch.tensor([[1.0, -2.5, 0.0], [3.25, 0.5, -1.0]], dtype=F64)
    fig, ax = plt.subplots()
    lesson.heatmap(ax, matrix, "t", "rows", "cols")
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    plt.close(fig)
    assert len(cells) == 6
    for i in range(2):
        for j in range(3):
            assert cells[(i, j)].get_text() == f"{matrix[i, j].item():.2f}"


def test_cells_log_errors_derivative_curves_and_both_figures(runs_dir):
    ns = run_lesson("05", "--points", "9", "--hessian-size", "6", "--seed", "11")
    assert len(ns.lesson.checks) == 19
    assert ns.lesson.figures == ["cube_and_derivatives", "jacobian_and_hessian"]
    assert ns.h_autograd.shape == (6, 6)  # the setting took effect
    scalars = read_scalars(single_run_dir(runs_dir, "05_jacobian_and_advanced_autograd"))
    for tag in (
        "check/jacobian_vjp_max_abs_error",
        "check/hessian_max_abs_error",
        "check/hvp_max_abs_error",
    ):
        assert scalars[tag][0][1] < 1e-10
    xs = [value for _, value in scalars["cube_derivatives/x"]]
    second = [value for _, value in scalars["cube_derivatives/d2_6x"]]
    assert [step for step, _ in scalars["cube_derivatives/x"]] == list(range(9))
    assert all(abs(d2 - 6 * x) < 1e-5 for x, d2 in zip(xs, second, strict=True))


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "no-grad-reset",
        "symmetric-A",
        "no-transpose",
        "forward-tangent-all-ones",
        "A-made-symmetric",
        "mean-for-sum",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("05", old, new)


# Typical wrong answers to 05's exercises, and what the check must say about each.
WRONG = {
    "05.1": [
        (
            """
def jacobian_row(f, x, i):
    x = x.detach().requires_grad_(True)
    y = f(x)
    return torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y))[0]
""",
            "that is the sum of all rows (grad_outputs of ones, or y.sum()): use a one-hot "
            "vector with a 1 at index 0",
        ),
        (
            """
def jacobian_row(f, x, i):
    x.requires_grad_(True)
    y = f(x)
    return torch.autograd.grad(y[i], x)[0]
""",
            "switched on requires_grad on the caller's x",
        ),
        (
            """
def jacobian_row(f, x, i):
    x = x.detach().requires_grad_(True)
    jac = torch.stack([torch.autograd.grad(f(x)[k], x)[0] for k in range(3)])
    return jac[:, i]
""",
            "that is column 0: row 0 is eᵢᵀ·J",
        ),
    ],
    "05.2": [
        (
            """
def second_derivative(f, x):
    x = x.detach().requires_grad_(True)
    (dfdx,) = torch.autograd.grad(f(x).sum(), x)
    (d2,) = torch.autograd.grad(dfdx.sum(), x)
    return d2
""",
            "create_graph=True to the first grad()",
        ),
        (
            """
def second_derivative(f, x):
    x = x.detach().requires_grad_(True)
    (dfdx,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    return dfdx
""",
            "d²f/dx² differs at index 0 (expected -8.003, got 6.821) for f(x) = x³ + sin(x) at "
            "x = [-1.5, 0.0, 0.5, 2.0]: that is the first derivative",
        ),
        (
            """
def second_derivative(f, x):
    x = x.detach().requires_grad_(True)
    f(x).sum().backward(create_graph=True)
    x.grad.sum().backward()
    return x.grad
""",
            "that is df/dx + d²f/dx²: x.grad accumulated both backward() calls",
        ),
        (
            """
def second_derivative(f, x):
    h = 1e-4
    return (f(x + h) - 2 * f(x) + f(x - h)) / h**2
""",
            "05.2 asks autograd for the second derivative: differentiate twice (the first grad() "
            "with create_graph=True); your code ran 0 backward pass(es)",
        ),
        (
            """
def second_derivative(f, x):
    x.requires_grad_(True)
    (dfdx,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    return torch.autograd.grad(dfdx.sum(), x)[0]
""",
            "second_derivative switched on requires_grad on the caller's x",
        ),
    ],
}
WRONG["05.1"] += [
    (
        """
def jacobian_row(f, x, i):
    return torch.autograd.functional.jacobian(f, x)[i]
""",
        "05.1 asks for one vector-Jacobian product (torch.autograd.grad with grad_outputs): your "
        "code called torch.autograd.functional.jacobian, which computes the whole Jacobian",
    ),
    (
        """
def jacobian_row(f, x, i):
    x = x.detach().requires_grad_(True)
    rows = [torch.autograd.grad(f(x)[k], x)[0] for k in range(3)]
    return rows[i]
""",
        "05.1 asks for row 0 with one vector-Jacobian product, one backward pass: your code ran 3",
    ),
    (
        """
def jacobian_row(f, x, i):
    return torch.func.jacrev(f)(x)[i]
""",
        "your code called torch.func.jacrev, which computes the whole Jacobian",
    ),
]

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "05.1": [
        """
def jacobian_row(f, x, i):
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(f(x)[i], x)[0]
""",
        """
def jacobian_row(f, x, i):
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    y.backward(gradient=torch.nn.functional.one_hot(torch.tensor(i), y.numel()).to(y.dtype))
    return x.grad
""",
        """
def jacobian_row(f, x, i):
    y, vjp = torch.func.vjp(f, x)
    e = torch.zeros_like(y)
    e[i] = 1
    return vjp(e)[0]
""",
    ],
    "05.2": [
        """
def second_derivative(f, x):
    return torch.vmap(torch.func.grad(torch.func.grad(f)))(x)
""",
        """
def second_derivative(f, x):
    x = x.detach().clone().requires_grad_(True)
    f(x).sum().backward(create_graph=True)
    return torch.autograd.grad(x.grad.sum(), x)[0]
""",
        """
def second_derivative(f, x):
    hessian = torch.autograd.functional.hessian(lambda t: f(t).sum(), x)
    return hessian.diagonal()
""",
    ],
}
