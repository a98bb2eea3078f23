"""Lesson 00: its derivatives and Jacobian against torch.autograd, and its TensorBoard run."""

from __future__ import annotations

import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_image_sizes, read_scalars, read_texts, single_run_dir

F64 = torch.float64
lesson = definitions("00")

# Small slips a learner (or an author) makes; the lesson's own checks must catch each.
MUTATIONS = [
    ("    return 2 * x + 3\n", "    return 2 * x\n"),  # a derivative by hand that drops +3
    ("f(x).sum().backward()", "f(x).mean().backward()"),  # the mean scales f' by 1/N
    ("torch.stack([2 * x0 * x1, x0**2])", "torch.stack([x0 * x1, x0**2])"),  # dropped factor 2
    ("    return x**2 + 3 * x\n", "    return x**2 + 3 * x.detach()\n"),  # half the graph cut
    # the CUDA build mistaken for a usable GPU (the report's classic confusion)
    ('"CUDA available": str(cuda_ok)', '"CUDA available": str(torch.version.cuda is not None)'),
    # the hand Jacobian's second row with its partials swapped (∂/∂x₁ where ∂/∂x₀ belongs)
    (
        "torch.stack([torch.full_like(x0, 5.0), torch.cos(x1)])",
        "torch.stack([torch.cos(x1), torch.full_like(x0, 5.0)])",
    ),
]


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
        (expected,) = torch.autograd.grad(x**2 + 3 * x, x)  # f written out, not the lesson's
        assert torch.allclose(got, expected)
    assert not xs.requires_grad  # the caller's tensor is left untouched


def test_backward_on_a_vector_is_refused():
    assert "scalar" in lesson.backward_on_vector_error()


@pytest.mark.parametrize("point", [[1.5, -0.5], [-2.0, 3.0], [0.0, 0.0]])
def test_hand_jacobian_equals_functional_jacobian(point):
    x = torch.tensor(point, dtype=F64)

    def g(t):  # the oracle's own copy of g
        return torch.stack([t[0] ** 2 * t[1], 5 * t[0] + torch.sin(t[1])])

    expected = torch.autograd.functional.jacobian(g, x)
    assert torch.allclose(lesson.g_jacobian_by_hand(x), expected)
    assert torch.allclose(lesson.g_jacobian_autograd(x), expected)


def test_environment_report_names_versions_and_device():
    report = lesson.environment_report(torch.device("cpu"))
    assert report["torch"] == torch.__version__
    assert report["torch built for CUDA"] == str(torch.version.cuda)
    assert report["CUDA available"] == str(torch.cuda.is_available())
    assert report["lesson device"] == "cpu"
    table = lesson.as_markdown_table(report)
    assert f"| torch | {torch.__version__} |" in table


@pytest.mark.parametrize("answer", [True, False])
def test_faked_cuda_availability_decides_auto_and_the_report(answer):
    chosen, report = lesson.as_if_cuda_available(answer)
    assert chosen == torch.device("cuda" if answer else "cpu")
    assert report["CUDA available"] == str(answer)


def test_cells_log_environment_the_derivative_curve_and_the_figure(runs_dir):
    ns = run_lesson("00", "--points", "31", "--x0", "-1.5")
    assert len(ns.lesson.checks) == 10 and ns.lesson.figures == ["f_and_derivative"]
    assert (ns.y0, ns.dy0) == (2.25 - 4.5, 0.0)  # the settings took effect: f'(-1.5) = 0
    run_dir = single_run_dir(runs_dir, "00_interactive_playground")
    scalars = read_scalars(run_dir)
    xs = [value for _, value in scalars["first_backward/x"]]
    slopes = [value for _, value in scalars["first_backward/df_dx"]]
    assert len(xs) == 31
    assert slopes == pytest.approx([2 * x + 3 for x in xs], abs=1e-5)  # stored as float32
    jac = {tag: values[0][1] for tag, values in scalars.items() if tag.startswith("jacobian/")}
    assert jac == pytest.approx(
        {"jacobian/J00": -1.5, "jacobian/J01": 2.25, "jacobian/J10": 5.0, "jacobian/J11": 0.8776},
        abs=1e-4,
    )
    assert torch.__version__ in read_texts(run_dir)["environment"][0]
    assert list(read_image_sizes(run_dir)) == ["f_and_derivative"]


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "f-prime-no-3",
        "mean-not-sum",
        "jacobian-no-2",
        "detach-3x",
        "cuda-build-for-available",
        "jacobian-row-swapped",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("00", old, new)
