"""Lesson 07: custom autograd Functions checked against built-in ops and gradcheck."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from support.tbutil import read_scalars, single_run_dir
from torch.autograd import gradcheck

from lab.lessons import lesson07_custom_autograd_function as lesson

F64 = torch.float64


def random(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=F64).requires_grad_(True)


def test_relu_gradient_matches_builtin_including_exactly_zero():
    x = torch.tensor([-3.0, -1e-300, 0.0, 1e-300, 3.0], dtype=F64)
    mine = lesson.input_gradient(lesson.MyReLU.apply, x)
    assert torch.equal(mine, lesson.input_gradient(torch.relu, x))
    assert mine[2].item() == 0.0
    assert torch.equal(lesson.MyReLU.apply(x), torch.relu(x))
    assert gradcheck(lesson.MyReLU.apply, (random(10),))


def test_sign_ste_forward_is_sign_and_backward_is_hardtanh_gradient():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=F64)
    assert torch.equal(lesson.SignSTE.apply(x), torch.sign(x))
    ste = lesson.input_gradient(lesson.SignSTE.apply, x)
    assert torch.equal(ste, lesson.input_gradient(torch.nn.functional.hardtanh, x))
    assert torch.equal(lesson.input_gradient(torch.sign, x), torch.zeros_like(x))
    assert not gradcheck(lesson.SignSTE.apply, (random(6),), raise_exception=False)


def test_ste_learns_signs_where_the_true_gradient_cannot():
    target = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=F64)
    assert lesson.fit_signs(target, lesson.SignSTE.apply)[-1] == 0.0
    frozen = lesson.fit_signs(target, torch.sign)
    assert frozen[0] > 0 and len(set(frozen)) == 1


def test_my_linear_gradients_equal_builtin_linear():
    x, weight, bias = random(4, 3, seed=1), random(2, 3, seed=2), random(2, seed=3)
    out = lesson.MyLinear.apply(x, weight, bias)
    assert torch.allclose(out, torch.nn.functional.linear(x, weight, bias))
    upstream = torch.randn(4, 2, dtype=F64)
    mine = torch.autograd.grad(out, (x, weight, bias), upstream)
    builtin = torch.autograd.grad(
        torch.nn.functional.linear(x, weight, bias), (x, weight, bias), upstream
    )
    assert all(torch.allclose(a, b) for a, b in zip(mine, builtin, strict=True))
    assert gradcheck(lesson.MyLinear.apply, (x, weight, bias))


def test_my_linear_skips_gradients_nobody_needs():
    x, weight = torch.randn(4, 3, dtype=F64), torch.randn(2, 3, dtype=F64)
    ctx = SimpleNamespace(saved_tensors=(x, weight), needs_input_grad=(True, False, True))
    grad_x, grad_w, grad_b = lesson.MyLinear.backward(ctx, torch.ones(4, 2, dtype=F64))
    assert grad_w is None
    assert torch.allclose(grad_x, weight.sum(0).expand(4, 3))
    assert torch.allclose(grad_b, torch.full((2,), 4.0, dtype=F64))


@pytest.mark.parametrize("scale, low, high", [(2.0, -0.5, 1.0), (-1.5, -1.0, 0.25)])
def test_scaled_clamp_matches_builtin_clamp_at_and_between_bounds(scale, low, high):
    x = torch.tensor([-2.0, low / scale, 0.0, 0.1, high / scale, 2.0], dtype=F64)
    mine = lesson.input_gradient(lambda t: lesson.ScaledClamp.apply(t, scale, low, high), x)
    builtin = lesson.input_gradient(lambda t: torch.clamp(scale * t, low, high), x)
    assert torch.equal(mine, builtin)
    assert gradcheck(lambda t: lesson.ScaledClamp.apply(t, scale, low, high), (random(8),))


def test_main_logs_ste_curves_and_gradcheck_results(runs_dir):
    lesson.main(["--device", "cpu"])
    scalars = read_scalars(single_run_dir(runs_dir, "07_custom_autograd_function"))
    assert scalars["ste/loss"][-1][1] == 0.0 < scalars["ste/loss"][0][1]
    assert len({value for _, value in scalars["true_gradient/loss"]}) == 1
    for name in ("MyReLU", "MyLinear", "ScaledClamp"):
        assert scalars[f"gradcheck/{name}"] == [(0, 1.0)]
    assert scalars["gradcheck/SignSTE"] == [(0, 0.0)]
