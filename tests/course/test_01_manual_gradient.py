"""Lesson 01: the hand-written chain rule against torch.autograd, and the logged fit."""

from __future__ import annotations

import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_scalars, single_run_dir

F64 = torch.float64
lesson = definitions("01")

# Small slips a learner (or an author) makes; the lesson's own checks must catch each.
MUTATIONS = [
    ("d_yhat = 2.0 * (w * x + b - y) / x.numel()", "d_yhat = (w * x + b - y) / x.numel()"),
    ("return (d_yhat * x).sum(), d_yhat.sum()", "return d_yhat.sum(), d_yhat.sum()"),
    ("w = w - lr * grad_w", "w = w + lr * grad_w"),
    # a fit that does not start where it says (w = 0): the end point is the same
    (
        "    w = torch.zeros((), dtype=x.dtype, device=x.device)\n",
        "    w = torch.ones((), dtype=x.dtype, device=x.device)\n",
    ),
    # b's steps twice as long: it still converges (faster), only the first step shows it
    ("b = b - lr * grad_b", "b = b - 2 * lr * grad_b"),
]


@pytest.mark.parametrize(("w", "b"), [(0.0, 0.0), (0.3, -0.7), (-4.0, 2.5)])
def test_manual_gradients_equal_autograd(w, b):
    x = torch.linspace(-2, 3, 17, dtype=F64)
    y = torch.sin(x)  # any targets, not only the line the lesson fits
    w_t = torch.tensor(w, dtype=F64, requires_grad=True)
    b_t = torch.tensor(b, dtype=F64, requires_grad=True)
    expected = torch.autograd.grad(lesson.mse_loss(w_t, b_t, x, y), (w_t, b_t))
    manual = lesson.manual_gradients(w_t.detach(), b_t.detach(), x, y)
    for got, want in zip(manual, expected, strict=True):
        assert torch.allclose(got, want)
    auto = lesson.autograd_gradients(w_t.detach(), b_t.detach(), x, y)
    for got, want in zip(auto, expected, strict=True):
        assert torch.allclose(got, want)


def test_fit_recovers_the_line_it_is_given():
    x = torch.linspace(-1, 1, 32, dtype=F64)
    w, b, losses = lesson.fit(x, -3.0 * x + 0.5, lr=0.1, steps=300)
    assert w == pytest.approx(-3.0, abs=1e-3)
    assert b == pytest.approx(0.5, abs=1e-3)
    assert losses[-1] < 1e-6
    w0 = torch.zeros((), dtype=F64, requires_grad=True)
    b0 = torch.zeros((), dtype=F64, requires_grad=True)
    grad_w, grad_b = torch.autograd.grad(((w0 * x + b0 + 3.0 * x - 0.5) ** 2).mean(), (w0, b0))
    w1, b1, first = lesson.fit(x, -3.0 * x + 0.5, lr=0.1, steps=1)  # the first step alone
    assert (w1, b1) == pytest.approx((-0.1 * grad_w.item(), -0.1 * grad_b.item()), rel=1e-12)
    assert first == [pytest.approx(losses[0], rel=1e-12)]


def test_cells_log_loss_parameters_and_the_fit_figure(runs_dir):
    ns = run_lesson("01", "--steps", "120")
    assert len(ns.lesson.checks) == 6 and ns.lesson.figures == ["fit"]
    scalars = read_scalars(single_run_dir(runs_dir, "01_manual_gradient"))
    assert [step for step, _ in scalars["loss"]] == list(range(120))  # the setting took effect
    losses = [value for _, value in scalars["loss"]]
    assert losses[-1] < losses[0] * 1e-6
    assert scalars["params/w"][-1][1] == pytest.approx(2.0, abs=1e-3)
    assert scalars["params/b"][-1][1] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=["dropped-2", "no-times-x", "ascent", "start-not-zero", "b-step-doubled"],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("01", old, new)


# Typical wrong answers to 01's exercises, and what the check must say about each.
WRONG = {
    "01.1": [
        (
            """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    return (2 * r * x).sum(), (2 * r).sum()
""",
            "did you forget to divide by N = 8 (the loss is a mean)?",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    return (r * x).mean(), r.mean()
""",
            "did you drop the 2 of d(r²)/dr = 2r?",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    r = y - (w * x + b)
    return (2 * r * x).mean(), (2 * r).mean()
""",
            "the sign is flipped",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    return (2 * r).mean(), (2 * r * x).mean()
""",
            "dL/dw and dL/db are swapped (dL/dw = -1.337, dL/db = -3.4 for w = 0.3",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    return (2 * r).mean(), (2 * r).mean()
""",
            "dL/dw = -3.4 is the value of dL/db, expected -1.337 for w = 0.3, b = -0.7 on 8 "
            "points of y = 2x + 1 + 0.3 sin(5x): dL/dw needs the factor x",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    ((w * x + b - y) ** 2).mean().backward()
    return w.grad, b.grad
""",
            "01.1 asks for the gradient by hand, by the chain rule: your code ran a backward pass",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    return torch.stack([(2 * r * x).mean(), (2 * r).mean()]).sum()
""",
            "manual_gradients should return a pair, got Tensor",
        ),
    ],
    "01.2": [
        (
            """
def descent_step(w, b, x, y, lr):
    r = w * x + b - y
    return w + lr * (2 * r * x).mean(), b + lr * (2 * r).mean()
""",
            "that step goes uphill: subtract lr times the gradient",
        ),
        (
            """
def descent_step(w, b, x, y, lr):
    r = w * x + b - y
    return w - (2 * r * x).mean(), b - (2 * r).mean()
""",
            "the step is missing the learning rate",
        ),
        (
            """
def descent_step(w, b, x, y, lr):
    r = w * x + b - y
    return w - lr * (2 * r * x).mean()
""",
            "descent_step should return a pair, got Tensor",
        ),
        (
            """
def descent_step(w, b, x, y, lr):
    r = w * x + b - y
    return -lr * (2 * r * x).mean(), -lr * (2 * r).mean()
""",
            "that is only the step: add it to the current value",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    raise NotImplementedError("01.1: return (dL/dw, dL/db)")

def descent_step(w, b, x, y, lr):
    grad_w, grad_b = manual_gradients(w, b, x, y)
    return w - lr * grad_w, b - lr * grad_b
""",
            "descent_step calls `manual_gradients` of exercise 01.1, which is not written yet "
            '(it raises NotImplementedError("01.1: return (dL/dw, dL/db)")): finish 01.1 first',
        ),
        (
            """
def descent_step(w, b, x, y, lr):
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    ((w * x + b - y) ** 2).mean().backward()
    return (w - lr * w.grad).detach(), (b - lr * b.grad).detach()
""",
            "01.2 asks for the gradient by hand",
        ),
    ],
}

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "01.1": [
        """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    n = len(x)
    return 2 / n * torch.dot(r, x), 2 / n * r.sum()
""",
        """
def manual_gradients(w, b, x, y):
    x32, y32 = x.float(), y.float()  # float32 is a fair choice: the check allows for it
    r = float(w) * x32 + float(b) - y32
    return [float((2 * r * x32).mean()), float((2 * r).mean())]
""",
    ],
    "01.2": [
        # the case: w changed in place, the caller's tensor; the oracle never sees it
        """
def descent_step(w, b, x, y, lr):
    r = w * x + b - y
    gw, gb = (2 * r * x).mean(), (2 * r).mean()
    w -= lr * gw
    b -= lr * gb
    return w, b
""",
        """
def manual_gradients(w, b, x, y):
    d = 2 * (w * x + b - y) / x.numel()
    return (d * x).sum(), d.sum()

def descent_step(w, b, x, y, lr):
    grad_w, grad_b = manual_gradients(w, b, x, y)
    return (w - lr * grad_w).item(), (b - lr * grad_b).item()
""",
    ],
}
