"""Lesson 20: detect_anomaly, stable softplus/log-sum-exp, vanishing and exploding gradients,
gradgradcheck, grad modes, multi-grad and post-accumulate hooks, GradScaler."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support import answers
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_histograms, read_scalars, single_run_dir
from torch import nn
from torch.autograd import gradgradcheck

from lab.exercises.checking import PASSED

F64 = torch.float64
lesson = definitions("20")

# Small slips the lesson's own checks must catch.
MUTATIONS = [
    # the "fix" that still exponentiates a positive number
    (
        "torch.maximum(x, torch.zeros_like(x)) + torch.log1p(torch.exp(-x.abs()))",
        "torch.log1p(torch.exp(x))",
    ),
    # log-sum-exp without the shift: exp(1000) overflows again
    ("m = x.max(-1, keepdim=True).values.detach()", "m = torch.zeros_like(x[..., :1])"),
    # the residual connection dropped: the sigmoid net's gradient vanishes again
    ("x = x + h if self.residual else h", "x = h"),
    # a backward that detaches its result: no second derivative
    (
        "return grad_output * 3 * x**2  # torch ops on a saved tensor: differentiable again",
        "return (grad_output * 3 * x**2).detach()",
    ),
    # a hook that leaks: never removed, it keeps stepping at every later backward()
    ("for handle in handles:\n    handle.remove()\n", ""),
    # clipping the scaled gradients: unscale_ forgotten before clip_grad_norm_
    ("    scaler.unscale_(optimizer)\n", ""),
    # blaming the node the NaN arrives at (the next step) instead of the one that made it
    (
        "culprit = view.nodes[bad.node] if bad",
        "culprit = view.nodes[view.order[bad.step]] if bad",
    ),
    # the "stable" graph inspected is the where one: it has a NaN step
    ("inspect(stable_softplus(steady)", "inspect(where_softplus(steady)"),
]


def test_where_softplus_is_finite_forward_but_nan_backward_and_anomaly_mode_names_exp():
    x = torch.tensor([0.0, 50.0, 800.0], dtype=F64)
    assert torch.isfinite(lesson.where_softplus(x)).all()
    assert lesson.gradient(lesson.where_softplus, x)[-1].isnan()
    error, traceback = lesson.anomaly_report(lesson.where_softplus, x)
    assert "ExpBackward0" in error
    assert "in where_softplus" in traceback and "torch.exp(x)" in traceback


def test_anomaly_report_is_empty_without_a_nan():
    assert lesson.anomaly_report(torch.sin, torch.linspace(-3, 3, 5, dtype=F64)) == ("", "")


def test_stable_softplus_and_logsumexp_equal_torch_and_have_the_right_gradients():
    x = torch.tensor([-1e4, -40.0, -1.0, 0.0, 1.0, 40.0, 1e4], dtype=F64)
    assert torch.allclose(lesson.stable_softplus(x), F.softplus(x))
    assert torch.allclose(lesson.gradient(lesson.stable_softplus, x), torch.sigmoid(x))
    logits = torch.randn(4, 6, dtype=F64, generator=torch.Generator().manual_seed(0)) * 500
    logits[1, 2] = 800.0  # e^800 overflows float64 (e^709 is about its largest)
    assert torch.isinf(lesson.naive_logsumexp(logits)).tolist() == [False, True, False, False]
    assert torch.allclose(lesson.stable_logsumexp(logits), torch.logsumexp(logits, -1))
    assert torch.allclose(
        lesson.gradient(lesson.stable_logsumexp, logits), torch.softmax(logits, -1)
    )


@pytest.mark.parametrize("residual", [False, True])
def test_layer_gradients_match_autograd_on_the_weights(residual):
    torch.manual_seed(0)
    model = lesson.DeepMLP(4, 5, torch.tanh, residual=residual).to(F64)
    x = torch.randn(3, 5, dtype=F64)
    norms, hidden = lesson.layer_gradients(model, x)
    weights = [layer.weight for layer in model.layers]
    expected = torch.autograd.grad(model(x).pow(2).mean(), weights)
    assert norms == pytest.approx([g.norm().item() for g in expected])
    assert len(hidden) == 4 and all(h.shape == (3, 5) for h in hidden)


def test_the_quarter_bound_holds_for_sigmoid_and_is_not_vacuous():
    x = torch.randn(16, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(1)
    sigmoid = lesson.DeepMLP(6, 8, torch.sigmoid, gain=2.0).to(F64)
    assert lesson.sigmoid_bound_holds(sigmoid, lesson.layer_gradients(sigmoid, x)[1])
    torch.manual_seed(1)
    tanh = lesson.DeepMLP(6, 8, torch.tanh, gain=2.0).to(F64)  # slope up to 1, not ¼
    assert not lesson.sigmoid_bound_holds(tanh, lesson.layer_gradients(tanh, x)[1])


def test_closer_to_one_on_a_log_scale():
    assert lesson.closer_to_one(2.0, 0.1) and lesson.closer_to_one(0.5, 10.0)
    assert not lesson.closer_to_one(100.0, 0.1)


def test_cube_is_twice_differentiable_and_cube_once_refuses():
    x = torch.tensor([-1.5, 0.5, 2.0], dtype=F64, requires_grad=True)
    assert gradgradcheck(lesson.Cube.apply, (x,))
    assert torch.allclose(lesson.second_derivative(lesson.Cube.apply, x), 6 * x.detach())
    assert lesson.double_backward_error(lesson.Cube.apply, x) == ""
    assert "once_differentiable" in lesson.double_backward_error(lesson.CubeOnce.apply, x)


def test_saliency_records_inside_no_grad_and_leaves_the_mode_alone():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(F64)
    x = torch.randn(5, 3, dtype=F64)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(leaf).sum(), leaf)
    with torch.no_grad():
        got = lesson.saliency(model, x)
        assert not torch.is_grad_enabled()
    assert torch.allclose(got, expected)


@pytest.mark.parametrize("mode", ["all", "any"])
def test_multi_grad_hook_fires_once_per_backward(mode):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).to(F64)
    x = torch.randn(4, 2, dtype=F64)
    calls = lesson.multi_hook_calls(model, x, mode)
    assert len(calls) == 1
    if mode == "all":
        assert [g.shape for g in calls[0]] == [p.shape for p in model.parameters()]
    model.zero_grad()
    model(x).pow(2).sum().backward()  # the handle was removed: no second call
    assert len(calls) == 1


def test_optimizer_in_backward_equals_sgd_and_keeps_one_grad_alive():
    torch.manual_seed(4)
    fused = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).to(F64)
    plain = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).to(F64)
    plain.load_state_dict(fused.state_dict())
    x, alive = torch.randn(6, 3, dtype=F64), []
    handles = lesson.optimizer_in_backward(fused, 0.05, alive)
    lesson.loss_of(fused, x).backward()
    for handle in handles:
        handle.remove()
    lesson.loss_of(plain, x).backward()
    torch.optim.SGD(plain.parameters(), lr=0.05).step()
    assert all(
        torch.equal(a, b) for a, b in zip(fused.parameters(), plain.parameters(), strict=True)
    )
    assert alive == [1, 1, 1, 1]


def test_float16_gradients_vanish_unscaled_and_survive_scaled():
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    exact = (x.sum(0) * 1e-8).expand(2, 3)
    assert torch.equal(lesson.float16_weight_grad(x, None), torch.zeros(2, 3, dtype=F64))
    assert torch.allclose(lesson.float16_weight_grad(x, 2.0**16), exact, rtol=1e-2, atol=0)


def test_scaled_step_clips_the_true_gradient():
    torch.manual_seed(6)
    model = nn.Linear(3, 2).to(F64)
    x = torch.randn(5, 3, dtype=F64) * 10
    true = torch.cat(
        [
            g.flatten()
            for g in torch.autograd.grad(lesson.loss_of(model, x), list(model.parameters()))
        ]
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    seen = lesson.scaled_step(model, scaler, optimizer, lesson.loss_of(model, x), max_norm=0.5)
    assert torch.allclose(seen, true.norm())
    assert torch.allclose(
        torch.cat([p.grad.flatten() for p in model.parameters()]).norm(),
        torch.tensor(0.5, dtype=F64),
    )


def test_scaler_run_follows_the_rule_written_out():
    x = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(7))
    scales, moved = lesson.scaler_run(x, 16)
    assert scales == lesson.expected_scales(16)
    assert moved == [step not in lesson.OVERFLOW_STEPS for step in range(16)]
    assert len(set(scales)) >= 3  # it both grew and shrank


def test_cells_log_histograms_per_layer_the_scale_and_both_figures(runs_dir):
    ns = run_lesson("20", "--depth", "8", "--width", "16", "--batch", "16", "--scaler-steps", "7")
    assert len(ns.lesson.checks) == 43
    assert ns.lesson.figures == [
        "inspector/where_softplus",  # the first NaN of backward, named by the inspector
        "gradient_norm_per_layer",
        "grad_scaler_scale",
    ]
    run = single_run_dir(runs_dir, "20_debugging_gradients")
    histograms = read_histograms(run)
    for name in ns.CONFIGS:
        assert [step for step, *_ in histograms[f"weight_grad/{name}"]] == list(range(8))
    scalars = read_scalars(run)
    assert [value for _, value in scalars["grad_scaler/scale"]] == lesson.expected_scales(7)
    sigmoid = [value for _, value in scalars["weight_grad_norm/sigmoid"]]
    assert sigmoid[0] < sigmoid[-1] * 1e-3  # vanishing, as logged


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "unstable-softplus",
        "unshifted-lse",
        "no-residual",
        "detached-backward",
        "leaking-hook",
        "clip-scaled",
        "nan-blames-next-node",
        "stable-is-where",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("20", old, new, "--depth", "10", "--scaler-steps", "6")


TANH_FORWARD = """
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y
"""


def tanh_backward(*lines: str) -> str:
    """MyTanh saving its output y, with a backward of these lines after (y,) = saved_tensors."""
    head = "\n    @staticmethod\n    def backward(ctx, grad_output):\n"
    body = ["(y,) = ctx.saved_tensors", *lines]
    return TANH_FORWARD + head + "".join(f"        {line}\n" for line in body)


# Typical wrong answers to 20's exercises, and what the check must say about each.
WRONG = {
    "20.1": [
        (
            """
def stable_bce(z, t):
    s = torch.sigmoid(z)
    return -(t * torch.log(s) + (1 - t) * torch.log(1 - s))
""",
            "the loss is inf at z = 800, t = 0: σ(z) rounds to exactly 0 or 1 and its log "
            "overflows; work from the logit: log σ(z) = −softplus(−z)",
        ),
        (
            """
def stable_bce(z, t):
    s = torch.sigmoid(z).clamp(1e-12, 1 - 1e-12)
    return -(t * torch.log(s) + (1 - t) * torch.log(1 - s))
""",
            "the loss at z = -800, t = 1 should be 800 but is 27.63: a clamp (of σ(z) or of z) "
            "or an ε added inside the log caps the loss",
        ),
        (
            """
def stable_bce(z, t):
    return z - z * t + torch.log(1 + torch.exp(-z))
""",
            "the loss is inf at z = -800, t = 1: exp(−z) overflows when z is very negative",
        ),
        (
            """
def stable_bce(z, t):
    safe = torch.where(z > 0, z + torch.log1p(torch.exp(-z)), torch.log1p(torch.exp(z)))
    return safe - t * z
""",
            "the loss is finite but its gradient is nan at z = -800, t = 1: torch.where still "
            "runs backward through the branch it did not pick",
        ),
        (
            """
def stable_bce(z, t):
    return torch.nn.functional.softplus(-z) - t * z
""",
            "the sign inside softplus is flipped: the loss is softplus(z) − t·z",
        ),
        (
            """
def stable_bce(z, t):
    return (torch.nn.functional.softplus(z) - t * z).mean()
""",
            "stable_bce returned shape (): return one loss per element, shape (7,) (no mean or "
            "sum)",
        ),
        (
            """
from torch.nn.functional import binary_cross_entropy_with_logits as bce

def stable_bce(z, t):
    return bce(z, t, reduction="none")
""",
            "that calls the built-in binary_cross_entropy_with_logits",
        ),
        (
            """
def stable_bce(z, t):
    return torch.nn.BCEWithLogitsLoss(reduction="none")(z, t)
""",
            "that calls the built-in binary_cross_entropy_with_logits",
        ),
        (
            """
def stable_bce(z, t):
    return torch.log(1 + torch.exp(z)) - t * z
""",
            "the loss is inf at z = 800, t = 0: exp(z) overflows when z is very large; use |z|",
        ),
        (
            """
def stable_bce(z, t):  # stable for the first term only
    return -(t * torch.nn.functional.logsigmoid(z) + (1 - t) * torch.log(1 - torch.sigmoid(z)))
""",
            "the loss is inf at z = 800, t = 0: σ(z) rounds to exactly 0 or 1 and its log "
            "overflows; work from the logit: log σ(z) = −softplus(−z), log(1 − σ(z)) = "
            "−softplus(z)",
        ),
        (
            """
def stable_bce(z, t):
    return torch.nn.functional.softplus(z) + t * z
""",
            "the sign of t·z is flipped: the loss is softplus(z) − t·z",
        ),
        (
            """
def stable_bce(z, t):
    return torch.nn.functional.softplus(z)
""",
            "the loss differs at index 0 (expected 800, got 0) for z = [-800.0, -30.0, -2.0, 0.5, "
            "3.0, 30.0, 800.0], t = [1.0, 0.0, 1.0, 0.25, 1.0, 1.0, 0.0]: the −t·z term is "
            "missing",
        ),
        (
            """
def stable_bce(z, t):
    s = torch.sigmoid(z.clamp(-30, 30))
    return -(t * torch.log(s) + (1 - t) * torch.log(1 - s))
""",
            "the loss at z = -800, t = 1 should be 800 but is 30: a clamp (of σ(z) or of z) or an "
            "ε added inside the log caps the loss",
        ),
        (
            """
def stable_bce(z, t):  # the built-in without logits clamps its log at −100
    return torch.nn.functional.binary_cross_entropy(torch.sigmoid(z), t, reduction="none")
""",
            "the loss at z = -800, t = 1 should be 800 but is 100: a clamp",
        ),
        (
            """
def stable_bce(z, t):
    loss = torch.nn.functional.softplus(z) - t * z
""",
            "stable_bce returned None: return the loss (a missing return?)",
        ),
    ],
    "20.2": [
        (
            """
from torch.autograd.function import once_differentiable

class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y**2)
""",
            "backward is marked @once_differentiable, so a second derivative raises",
        ),
        (
            """
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.y = y.clone()
        return y

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * (1 - ctx.y**2)
""",
            "the second derivative d/dx is missing: save tensors with ctx.save_for_backward",
        ),
        (
            tanh_backward("with torch.no_grad():", "    return grad_output * (1 - y**2)"),
            "the gradient your backward returns is cut off from the graph",
        ),
        (
            tanh_backward("return grad_output * (1 - y)"),
            "gradcheck fails: analytic dL/dx[0] = 1.964, numerical 0.07065",
        ),
        (
            tanh_backward("return 1 - y**2"),
            "`backward` ignored grad_output",
        ),
        (
            tanh_backward("y = y.detach()", "return grad_output * (1 - y**2)"),
            "the second derivative d/dx is missing",
        ),
        (
            """
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)  # the input: the lesson's Cube, not this exercise
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output / torch.cosh(x) ** 2
""",
            "gradcheck and gradgradcheck pass, but forward saved the input x, not its output: "
            "the exercise is a backward that uses the saved output y",
        ),
        (
            tanh_backward("return grad_output.mul_(1 - y**2)"),
            "backward changed grad_output in place (grad_output.mul_(), *=)",
        ),
        (
            tanh_backward("y.pow_(2)", "return grad_output * (1 - y)"),
            # gradcheck's repeated backward meets the changed y first
            "a tensor saved with save_for_backward was modified in place afterwards",
        ),
        (
            """
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y**2)
""",
            "forward saved nothing for backward (ctx.saved_tensors is empty): call "
            "ctx.save_for_backward(y) in forward",
        ),
        (
            """
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        raise NotImplementedError("20.2: write forward")

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y**2)
""",
            "backward is written; forward still raises NotImplementedError",
        ),
        (
            """
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y**2)
""",
            "forward returned None: return y = torch.tanh(x) (a missing return?)",
        ),
    ],
}

# Correct answers that differ from the reference solution: each must pass.
RIGHT = {
    "20.1": [
        # by hand: max(z, 0) − t·z + log1p(exp(−|z|)), no softplus
        """
def stable_bce(z, t):
    return torch.clamp(z, min=0) - t * z + torch.log1p(torch.exp(-z.abs()))
""",
        # the symmetric form with logaddexp: t·log(1 + e^−z) + (1 − t)·log(1 + e^z)
        """
def stable_bce(z, t):
    zero = torch.zeros_like(z)
    return t * torch.logaddexp(zero, -z) + (1 - t) * torch.logaddexp(zero, z)
""",
        # log-sigmoid, stable by itself
        """
def stable_bce(z, t):
    return -(t * torch.nn.functional.logsigmoid(z) + (1 - t) * torch.nn.functional.logsigmoid(-z))
""",
        # a torch.where whose two branches are both safe
        """
def stable_bce(z, t):
    tail = torch.log1p(torch.exp(-z.abs()))
    return torch.where(z > 0, z + tail, tail) - t * z
""",
        # computed in float32, given back in z's dtype
        """
def stable_bce(z, t):
    loss = torch.nn.functional.softplus(z.float()) - t.float() * z.float()
    return loss.to(z.dtype)
""",
    ],
    "20.2": [
        # the new-style Function: forward without ctx, setup_context saves the output
        """
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y**2)
""",
        # tanh from exp, the derivative written as grad − grad·y²
        """
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        e = torch.exp(2 * x)
        y = (e - 1) / (e + 1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        y = ctx.saved_tensors[0]
        return grad_output - grad_output * y.pow(2)
""",
    ],
}


@pytest.mark.parametrize(("key", "source"), answers.cases(RIGHT))
def test_a_different_correct_answer_passes_in_the_notebook_and_lab_check(key, source, tmp_path):
    in_cell, from_file = answers.verdicts(key, source, tmp_path)
    assert in_cell.status == from_file.status == PASSED, (in_cell.message, from_file.message)
