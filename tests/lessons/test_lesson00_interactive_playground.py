"""Lesson 00: its derivatives and Jacobian against torch.autograd, and its TensorBoard run."""

from __future__ import annotations

import pytest
import torch
from support.tbutil import read_scalars, read_texts, single_run_dir

from lab.lessons import lesson00_interactive_playground as lesson

F64 = torch.float64


@pytest.mark.parametrize("x0", [-2.5, 0.0, 2.0, 7.25])
def test_first_backward_matches_the_analytic_derivative(x0):
    value, grad = lesson.first_backward(x0)
    assert value == pytest.approx(x0**2 + 3 * x0)
    assert grad == pytest.approx(2 * x0 + 3)


def test_derivative_curve_equals_autograd_grad_point_by_point():
    xs = torch.linspace(-3, 3, 13, dtype=F64)
    curve = lesson.derivative_curve(xs)
    for x0, got in zip(xs, curve, strict=True):
        x = x0.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(lesson.f(x), x)
        assert torch.allclose(got, expected)
    assert not xs.requires_grad  # the caller's tensor is left untouched


def test_backward_on_a_vector_is_refused():
    assert "scalar" in lesson.backward_on_vector_error()


@pytest.mark.parametrize("point", [[1.5, -0.5], [-2.0, 3.0], [0.0, 0.0]])
def test_hand_jacobian_equals_functional_jacobian(point):
    x = torch.tensor(point, dtype=F64)
    by_hand = lesson.g_jacobian_by_hand(x)
    assert torch.allclose(by_hand, torch.autograd.functional.jacobian(lesson.g, x))
    assert torch.allclose(lesson.g_jacobian_autograd(x), by_hand)


def test_environment_report_names_versions_and_device():
    report = lesson.environment_report(torch.device("cpu"))
    assert report["torch"] == torch.__version__
    assert report["torch built for CUDA"] == str(torch.version.cuda)
    assert report["CUDA available"] == str(torch.cuda.is_available())
    assert report["lesson device"] == "cpu"
    table = lesson.as_markdown_table(report)
    assert f"| torch | {torch.__version__} |" in table


def test_main_logs_environment_text_and_the_derivative_curve(runs_dir):
    run = lesson.main(["--device", "cpu"])
    run_dir = single_run_dir(runs_dir, "00_interactive_playground")
    assert run.log_dir == run_dir and run.checks
    scalars = read_scalars(run_dir)
    xs = [value for _, value in scalars["first_backward/x"]]
    slopes = [value for _, value in scalars["first_backward/df_dx"]]
    assert len(xs) == 61
    assert slopes == pytest.approx([2 * x + 3 for x in xs], abs=1e-5)  # stored as float32
    assert {"jacobian/J00", "jacobian/J01", "jacobian/J10", "jacobian/J11"} <= set(scalars)
    texts = read_texts(run_dir)
    assert torch.__version__ in texts["environment"][0]
