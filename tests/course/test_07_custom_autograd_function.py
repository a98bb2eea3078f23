"""Lesson 07: custom autograd Functions against built-in ops, gradcheck and torch.func."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_scalars, single_run_dir
from torch.autograd import gradcheck

F64 = torch.float64
lesson = definitions("07")

# Small slips the lesson's own checks must catch.
MUTATIONS = [
    # subgradient 1 at the kink: no longer the built-in's convention
    ("(x > 0).to(grad_output.dtype)", "(x >= 0).to(grad_output.dtype)"),
    # the STE passing gradient at exactly ±1, unlike hardtanh
    ("((x > -1) & (x < 1))", "(x.abs() <= 1)"),
    # dL/db averaged instead of summed over the batch
    ("grad_b = grad_output.sum(0)", "grad_b = grad_output.mean(0)"),
    # setup_context without a vmap rule: vmap refuses
    ("    generate_vmap_rule = True\n", "    generate_vmap_rule = False\n"),
    # the chain rule's inner factor dropped
    ("grad_x = grad_output * ctx.scale * inside", "grad_x = grad_output * inside"),
    # needs_input_grad ignored: W's gradient computed though nobody wants it
    ("        if ctx.needs_input_grad[1]:\n", "        if True:\n"),
    # steps twice as long: the signs are still all learned, the first step is wrong
    ("            w -= lr * grad\n", "            w -= 2 * lr * grad\n"),
]


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
    assert not gradcheck(lesson.SignSTE.apply, (random(6),), raise_exception=False)


def test_ste_learns_signs_where_the_true_gradient_cannot():
    target = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=F64)
    losses, w = lesson.fit_signs(target, lesson.SignSTE.apply)
    assert losses[-1] == 0.0 and torch.equal(torch.sign(w), target)
    frozen, w = lesson.fit_signs(target, torch.sign)
    assert frozen[0] > 0 and len(set(frozen)) == 1
    assert torch.equal(w, 0.1 * torch.linspace(-1.0, 1.0, 6, dtype=F64))  # w never moved


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


def test_vmap_needs_a_rule_and_batched_linear_has_one():
    x, weight, bias = (t.detach() for t in (random(6, 3), random(2, 3, seed=4), random(2)))
    with pytest.raises(RuntimeError, match="vmap support"):
        torch.func.vmap(lesson.MyLinear.apply, in_dims=(0, None, None))(x, weight, bias)
    batched = torch.func.vmap(lesson.BatchedLinear.apply, in_dims=(0, None, None))(x, weight, bias)
    assert torch.allclose(batched, torch.nn.functional.linear(x, weight, bias))


def test_per_sample_gradients_equal_the_closed_form():
    x, weight, bias = (t.detach() for t in (random(4, 3), random(2, 3, seed=5), random(2)))
    got = lesson.per_sample_weight_grads(lesson.BatchedLinear, x, weight, bias)
    # d‖W x + b‖²/dW = 2 (W x + b) xᵀ, per sample
    residual = x @ weight.T + bias
    assert torch.allclose(got, 2 * residual[:, :, None] * x[:, None, :])
    assert torch.allclose(lesson.looped_weight_grads(x, weight, bias), got)


def test_error_of_reports_the_first_sentence_or_none():
    assert lesson.error_of(lambda: None) is None
    assert lesson.error_of(lambda: torch.ones(3) + torch.ones(4)).startswith("The size of")


@pytest.mark.parametrize(("scale", "low", "high"), [(2.0, -0.5, 1.0), (-1.5, -1.0, 0.25)])
def test_scaled_clamp_matches_builtin_clamp_at_and_between_bounds(scale, low, high):
    x = torch.tensor([-2.0, low / scale, 0.0, 0.1, high / scale, 2.0], dtype=F64)
    mine = lesson.input_gradient(lambda t: lesson.ScaledClamp.apply(t, scale, low, high), x)
    builtin = lesson.input_gradient(lambda t: torch.clamp(scale * t, low, high), x)
    assert torch.equal(mine, builtin)
    assert gradcheck(lambda t: lesson.ScaledClamp.apply(t, scale, low, high), (random(8),))


def test_cells_log_ste_curves_gradchecks_and_the_figure(runs_dir):
    ns = run_lesson("07", "--steps", "25", "--seed", "3")
    assert len(ns.lesson.checks) == 25 and ns.lesson.figures == ["relu_and_ste_curves"]
    scalars = read_scalars(single_run_dir(runs_dir, "07_custom_autograd_function"))
    assert [step for step, _ in scalars["ste/loss"]] == list(range(25))  # the setting took effect
    assert scalars["ste/loss"][-1][1] == 0.0 < scalars["ste/loss"][0][1]
    assert len({value for _, value in scalars["true_gradient/loss"]}) == 1
    for name in ("MyReLU", "MyLinear", "ScaledClamp"):
        assert scalars[f"gradcheck/{name}"] == [(0, 1.0)]
    assert scalars["gradcheck/SignSTE"] == [(0, 0.0)]


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "relu-ge",
        "ste-at-one",
        "bias-mean",
        "no-vmap-rule",
        "no-scale",
        "needs-input-grad-ignored",
        "ste-step-doubled",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("07", old, new)


# Typical wrong answers to 07's exercises, and what the check must say about each.
WRONG = {
    "07.1": [
        (
            """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = 1 / (1 + torch.exp(x))
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * s * (1 - s)
""",
            "forward differs at index 0 (expected 0.04743, got 0.9526) for x = [-3.0, -1.0, "
            "-0.5, 0.0, 1.0, 2.5]: did you write exp(x) where sigmoid has exp(-x)?",
        ),
        (
            """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return s * (1 - s)
""",
            "`backward` ignored grad_output",
        ),
        (
            """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * s
""",
            "gradcheck fails: analytic dL/dx[0] = 0.04743, numerical 0.04518",
        ),
        (
            """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.neg_().exp_().add_(1).reciprocal_()

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * s * (1 - s)
""",
            "forward changed its input x in place (x[0] was -3, now 0.04743)",
        ),
    ],
    "07.2": [
        (
            """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y + x

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * (y + 1)
""",
            "`backward` returned 1 gradient(s) but `forward` takes 2 input(s)",
        ),
        (
            """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y + x

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * x, grad_output * (y + 1)
""",
            "gradcheck fails: analytic dL/dx[0] = 0.5, numerical 3",
        ),
        (
            """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * y, grad_output * x
""",
            "forward differs at index 0 (expected 1.5, got 1)",
        ),
    ],
}

WRONG["07.1"].append(
    (
        """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("07.1: write backward")
""",
        "forward works; `backward` still raises NotImplementedError",
    )
)
WRONG["07.1"] += [
    (
        """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backwards(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * s * (1 - s)
""",
        "backward: PyTorch's own `backward` ran and raised NotImplementedError(\"You must "
        "implement either the backward or vjp method for your custom autograd.Function to use "
        'it with backward mode AD."), so your class MySigmoid does not define `backward` '
        "itself: is it spelt exactly `backward`?",
    ),
]
WRONG["07.2"] += [
    (
        """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y + x

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return [grad_output * (y + 1), grad_output * x]
""",
        "`backward` returned a list of 2: return a tuple (`return grad_x, grad_y`)",
    ),
    (
        """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x.clone(), y)
        return x.mul_(y + 1)

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * (y + 1), grad_output * x
""",
        "forward changed its input x in place (x[0] was 0.5, now 1.5)",
    ),
]

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "07.1": [
        """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)  # the input, and sigmoid again in backward
        return torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = 1 / (1 + torch.exp(-x))
        return grad_output * s * (1 - s)
""",
        """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x.neg().exp().add(1).reciprocal()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * (s - s * s)
""",
    ],
    "07.2": [
        """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * (y + 1)

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        grad_x = grad_output * (y + 1) if ctx.needs_input_grad[0] else None
        grad_y = grad_output * x if ctx.needs_input_grad[1] else None
        return grad_x, grad_y
""",
        """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(x, y):
        return torch.addcmul(x, x, y)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output + grad_output * y, grad_output * x
""",
    ],
}
