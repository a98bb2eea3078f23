"""Lesson 05: VJP/JVP Jacobians, higher-order derivatives, grad vs backward, Hessians."""

from __future__ import annotations

import torch
from support.tbutil import read_scalars, single_run_dir
from torch.autograd.functional import hessian, jacobian

from lab.lessons import lesson05_jacobian_and_advanced_autograd as lesson

F64 = torch.float64


def non_square(x: torch.Tensor) -> torch.Tensor:
    """R³ → R², a second function so the helpers are not tuned to the lesson's one."""
    matrix = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.0, 4.0]], dtype=F64)
    return matrix @ torch.tanh(x) + x[0] * x[2]


def test_vjp_rows_and_jvp_columns_equal_functional_jacobian():
    torch.manual_seed(0)
    for func in (lesson.vector_function, non_square):
        x = torch.randn(3, dtype=F64)
        reference = jacobian(func, x)
        assert torch.allclose(lesson.jacobian_by_vjps(func, x), reference)
        assert torch.allclose(lesson.jacobian_by_jvps(func, x), reference)


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
    cubic = lesson.derivatives(lambda t: t**3, x, order=3)
    assert torch.allclose(cubic[1], 6 * x)


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


def test_main_logs_derivative_curves_and_errors(runs_dir):
    run = lesson.main(["--device", "cpu"])
    assert len(run.checks) >= 8
    scalars = read_scalars(single_run_dir(runs_dir, "05_jacobian_and_advanced_autograd"))
    for tag in (
        "check/jacobian_vjp_max_abs_error",
        "check/hessian_max_abs_error",
        "check/hvp_max_abs_error",
    ):
        assert scalars[tag][0][1] < 1e-10
    xs = [value for _, value in scalars["cube_derivatives/x"]]
    second = [value for _, value in scalars["cube_derivatives/d2_6x"]]
    assert len(xs) == len(second) > 10
    assert all(abs(d2 - 6 * x) < 1e-5 for x, d2 in zip(xs, second, strict=True))
