"""Lesson 04: tensor hooks (scale, clip, reversal, on a regression's prediction), module hooks
and Grad-CAM, with torch.autograd and closed forms as the oracles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_image_sizes, read_scalars, single_run_dir

F64 = torch.float64
X0 = torch.tensor([0.3, -0.05, 1.1, -0.7], dtype=F64)
lesson = definitions("04")

# Small slips a learner (or an author) makes; the lesson's own checks must catch each.
MUTATIONS = [
    ("lambda grad: -strength * grad", "lambda grad: strength * grad"),  # reversal forgotten
    ("outputs[name] = output.detach()", "outputs[name] = inputs[0].detach()"),  # input recorded
    ("alpha = gradient.mean(dim=(1, 2))", "alpha = gradient.sum(dim=(1, 2))"),  # sum for mean
    ("    branch = features.view_as(features)", "    branch = features"),  # hits both heads
    ("        h.register_hook(hook)\n", "        x.register_hook(hook)\n"),  # hook on the leaf
    ("            pred.register_hook(hook)\n", "            pass\n"),  # the fit ignores the hook
    ("lambda grad: -strength * grad", "lambda grad: -grad"),  # the strength λ forgotten
    # Huber's δ without the /2 of dL/dpred = 2r/N: the clipping no longer matches it
    ("delta = PRED_CLIP * len(yr) / 2", "delta = PRED_CLIP * len(yr)"),
    # Grad-CAM's default target: class 0 instead of the top class
    (
        "target = int(logits[0].argmax()) if target is None else target",
        "target = 0 if target is None else target",
    ),
    # the line fits step twice as far: still closer than the MSE fit, a wrong first step
    ("                p -= lr * p.grad", "                p -= 2 * lr * p.grad"),
    (
        "handle = mlp[2].register_full_backward_hook(",
        "handle = mlp[0].register_full_backward_hook(",
    ),
]
FIGURES = [
    "tensor_hooks",
    "regression_hook",
    "gradcam",
    "inspector/gradient_reversal",  # the inspector's pictures of the DANN model and the MLP
    "inspector/module_hooks",
]


def oracle_x_grad(x0, scale=1.0):
    """d/dx of scale · Σ (3x)²: what a hook multiplying h's gradient by `scale` must give."""
    x = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(scale * ((3 * x) ** 2).sum(), x)
    return grad


def test_observer_hook_sees_the_gradient_and_changes_nothing():
    out = lesson.probe_grads(X0)
    assert len(out["seen"]) == 1
    assert torch.allclose(out["seen"][0], 2 * 3 * X0)
    assert torch.allclose(out["x.grad"], oracle_x_grad(X0))


@pytest.mark.parametrize("factor", [0.5, -2.0, 0.0])
def test_scaling_hook_scales_what_reaches_the_leaf(factor):
    out = lesson.probe_grads(X0, lesson.scale_hook(factor))
    assert torch.allclose(out["x.grad"], oracle_x_grad(X0, factor))
    assert torch.allclose(out["h.grad"], factor * 2 * 3 * X0)  # retain_grad sees the hooked grad


def test_clipping_hook_clips_the_gradient_at_h():
    out = lesson.probe_grads(X0, lesson.clip_hook(1.0))
    assert torch.allclose(out["x.grad"], 3 * (6 * X0).clamp(-1, 1))
    assert not torch.allclose(out["x.grad"], oracle_x_grad(X0))  # the clip did bite


@pytest.mark.parametrize("strength", [1.0, 0.3])
def test_gradient_reversal_negates_what_flows_through_it(strength):
    out = lesson.probe_grads(X0, lesson.gradient_reversal(strength))
    assert torch.allclose(out["x.grad"], oracle_x_grad(X0, -strength))
    g = torch.randn(3, dtype=F64)
    assert torch.allclose(lesson.gradient_reversal(strength)(g), -strength * g)


def test_reversal_on_the_domain_branch_only_flips_the_features_domain_gradient():
    model = lesson.dann_model()
    x = torch.randn(7, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    got = lesson.dann_grads(model, x, lesson.gradient_reversal(0.3))
    feats, task_head, domain_head = model["features"], model["task"], model["domain"]
    f = F.linear(x, feats.weight, feats.bias)  # the oracle builds the network itself
    task = (F.linear(f, task_head.weight, task_head.bias) - 1).pow(2).mean()
    domain = F.linear(f, domain_head.weight, domain_head.bias).pow(2).mean()
    params = [feats.weight, feats.bias, task_head.weight, domain_head.weight]
    d_task = torch.autograd.grad(task, params, allow_unused=True, retain_graph=True)
    d_domain = torch.autograd.grad(domain, params, allow_unused=True)
    assert torch.allclose(got["features.weight"], d_task[0] - 0.3 * d_domain[0])
    assert torch.allclose(got["features.bias"], d_task[1] - 0.3 * d_domain[1])
    assert torch.allclose(got["task.weight"], d_task[2])
    assert torch.allclose(got["domain.weight"], d_domain[3])
    plain = lesson.dann_grads(model, x, None)
    assert torch.allclose(plain["features.weight"], d_task[0] + d_domain[0])


def test_hook_on_the_leaf_changes_its_grad():
    out = lesson.probe_grads(X0, lesson.scale_hook(10.0), on_leaf=True)
    assert torch.allclose(out["x.grad"], oracle_x_grad(X0, 10.0))


def test_removed_hooks_no_longer_run():
    hooked, after, calls = lesson.hook_then_remove(X0)
    assert torch.allclose(hooked, torch.full_like(X0, 30.0))
    assert torch.allclose(after, torch.full_like(X0, 3.0))
    assert calls == 1


@pytest.mark.parametrize("w0", [0.0, 3.0, -1.5])
def test_hook_on_the_prediction_sees_residuals_and_clipping_is_huber(w0):
    x, y = lesson.regression_data()
    model = lesson.line_model()
    with torch.no_grad():
        model.weight.fill_(w0)
    plain = lesson.prediction_gradients(model, x, y)
    pred = x * w0  # bias 0: the oracle's own prediction
    assert torch.allclose(plain["dL/dpred"], 2 * (pred - y) / len(y))
    assert torch.allclose(plain["weight.grad"], (2 * (pred - y) / len(y) * x).sum())
    clipped = lesson.prediction_gradients(model, x, y, lesson.clip_hook(0.05))
    # Huber's derivative is clamp(r, −δ, δ): with δ = c·N/2, (2/N)·clamp(r, −δ, δ) = clamp(2r/N, ±c)
    r = pred - y
    huber_pull = (2 / len(y)) * r.clamp(-0.05 * len(y) / 2, 0.05 * len(y) / 2)
    assert torch.allclose(clipped["weight.grad"], (huber_pull * x).sum())
    assert torch.allclose(clipped["bias.grad"], huber_pull.sum())
    assert torch.allclose(clipped["dL/dpred"], plain["dL/dpred"])  # the observer ran first


def test_fit_line_with_and_without_the_hook():
    x = torch.linspace(-1, 1, 15, dtype=F64)[:, None]
    y = -2.0 * x + 0.5
    w, b = lesson.fit_line(x, y, steps=400)
    assert (w, b) == pytest.approx((-2.0, 0.5), abs=1e-4)
    y[3] = 30.0
    plain, robust = lesson.fit_line(x, y), lesson.fit_line(x, y, lesson.clip_hook(0.05))
    assert abs(robust[0] + 2.0) < 0.2 < abs(plain[0] + 2.0)


def test_module_hooks_capture_what_autograd_computes():
    model = lesson.small_mlp()
    x = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    seen = lesson.run_with_module_hooks(model, x)
    hidden = model[1](model[0](x))
    out = model[2](hidden)
    grad_out, grad_hidden = torch.autograd.grad((out**2).sum(), (out, hidden))
    assert torch.allclose(seen["outputs"]["1"], hidden)
    assert torch.allclose(seen["outputs"]["2"], out)
    assert torch.allclose(seen["grad_output"][0], grad_out)
    assert torch.allclose(seen["grad_input"][0], grad_hidden)
    assert seen["calls_with_hooks"] == 4 and seen["calls_after_remove"] == 0
    assert all(lesson.hook_count(layer) == 0 for layer in model)


@pytest.mark.parametrize("layer_index", [1, 3])  # first ReLU, last ReLU
@pytest.mark.parametrize("target", [None, 1])  # the top class is 2
def test_grad_cam_gradient_equals_autograd_on_any_layer(layer_index, target):
    cnn = lesson.tiny_cnn()
    image = lesson.square_image()
    result = lesson.grad_cam(cnn, cnn.features[layer_index], image, target)
    activation = cnn.features[: layer_index + 1](image)
    logits = cnn.head(cnn.features[layer_index + 1 :](activation))
    k = int(logits[0].argmax()) if target is None else target
    (expected,) = torch.autograd.grad(logits[0, k], activation)
    assert result["target"] == k
    assert torch.allclose(result["gradient"], expected[0])
    assert torch.allclose(result["activation"], activation[0].detach())
    alpha = expected[0].mean(dim=(1, 2))
    assert torch.allclose(result["cam"], torch.relu((alpha[:, None, None] * activation[0]).sum(0)))
    assert (result["cam"] >= 0).all()
    assert lesson.hook_count(cnn.features[layer_index]) == 0


def test_lesson_oracle_agrees_with_hooks_for_every_class():
    cnn = lesson.tiny_cnn()
    image = lesson.square_image()
    for k in range(3):
        result = lesson.grad_cam(cnn, cnn.features[3], image, k)
        assert torch.allclose(result["gradient"], lesson.gradient_by_autograd(cnn, image, k))


def test_cells_log_hook_effects_and_the_figures(runs_dir):
    ns = run_lesson("04", "--scale", "-2.0", "--clip", "0.5")
    assert len(ns.lesson.checks) == 26
    assert ns.lesson.figures == FIGURES
    run_dir = single_run_dir(runs_dir, "04_hooks")
    scalars = read_scalars(run_dir)
    norms = {
        name: scalars[f"tensor_hooks/x_grad_norm/{name}"][0][1]
        for name in ("none", "scaled", "clipped")
    }
    assert norms["scaled"] == pytest.approx(2.0 * norms["none"])  # the settings took effect
    x = torch.tensor([0.125, -0.25, 0.5], dtype=F64)
    assert norms["clipped"] == pytest.approx(3 * (6 * x).clamp(-0.5, 0.5).norm().item())
    assert [step for step, _ in scalars["gradcam/alpha"]] == list(range(8))
    assert "gradcam/score" in scalars
    assert set(read_image_sizes(run_dir)) == set(FIGURES)


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "no-reversal",
        "input-for-output",
        "sum-for-mean",
        "reversal-on-trunk",
        "hook-on-x-not-h",
        "fit-without-hook",
        "reversal-strength-ignored",
        "huber-delta-no-half",
        "gradcam-default-class-0",
        "fit-lr-doubled",
        "module-hook-on-another-layer",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("04", old, new)


# Typical wrong answers to 04's exercises, and what the check must say about each.
WRONG = {
    "04.1": [
        (
            """
def make_clip_hook(limit):
    def hook(grad):
        grad.clamp_(-limit, limit)
        return grad
    return hook
""",
            "the hook changed its argument in place: return a new tensor",
        ),
        (
            """
def make_clip_hook(limit):
    def hook(grad):
        clipped = grad.clamp(-limit, limit)
    return hook
""",
            "the hook returned None, so autograd keeps the gradient unchanged",
        ),
        (
            """
def make_clip_hook(limit):
    return lambda grad: grad.clamp(max=limit)
""",
            "the clipped gradient differs at index 0 (expected -0.75, got -3) for grad = [-3.0, "
            "-0.5, 0.2, 2.5], limit = 0.75: only the upper side was clipped",
        ),
        (
            """
def make_clip_hook(limit):
    return lambda grad: grad.clamp(-1, 1)
""",
            "the hook clips to [-1, 1] whatever limit it was made with: use `limit`",
        ),
        (
            """
def make_clip_hook(limit):
    return lambda grad: grad * limit / grad.norm()
""",
            "that rescales by the norm; clip each value instead",
        ),
    ],
    "04.2": [
        (
            """
def linear_output_means(model, x):
    means = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(
                lambda m, inputs, output, name=name: means.__setitem__(name, output.mean())
            )
    model(x)
    return means
""",
            "2 forward hook(s) still registered after your function returned",
        ),
        (
            """
def linear_output_means(model, x):
    means, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(
                lambda m, inputs, output, name=name: means.__setitem__(name, inputs[0].mean())
            ))
    model(x)
    for handle in handles:
        handle.remove()
    return means
""",
            "that is the layer's input: a forward hook is called as hook(module, inputs, output)",
        ),
        (
            """
def linear_output_means(model, x):
    means, handles = {}, []
    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(
            lambda m, inputs, output, name=name: means.__setitem__(name, output.mean())
        ))
    model(x)
    for handle in handles:
        handle.remove()
    return means
""",
            "keys ['', '0', '1', '2'], expected the Linear layers' names ['0', '2']",
        ),
        (
            """
def linear_output_means(model, x):
    means, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(
                lambda m, inputs, output: means.__setitem__(name, output.mean())
            ))
    model(x)
    for handle in handles:
        handle.remove()
    return means
""",
            "only '2' has a mean, expected ['0', '2']: every hook wrote under the same name — a "
            "function defined in a loop sees the loop variable's last value",
        ),
        (
            """
def linear_output_means(model, x):
    names = {module: name for name, module in model.named_modules()}
    means = {}

    def record(module, inputs, output):
        if isinstance(module, nn.Linear):
            means[names[module]] = output.mean()

    nn.modules.module.register_module_forward_hook(record)
    model(x)
    return means
""",
            "1 forward hook(s) still registered after your function returned",
        ),
    ],
}

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "04.1": [
        """
def make_clip_hook(limit):
    return lambda grad: torch.where(grad.abs() > limit, grad.sign() * limit, grad)
""",
        """
from functools import partial

def _clip(grad, limit):
    return torch.clamp(grad, min=-limit, max=limit)

def make_clip_hook(limit):
    return partial(_clip, limit=limit)
""",
    ],
    "04.2": [
        """
from functools import partial

def linear_output_means(model, x):
    means = {}

    def record(name, module, inputs, output):
        means[name] = output.mean()

    handles = [
        module.register_forward_hook(partial(record, name))
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return means
""",
        """
def linear_output_means(model, x):
    names = {module: name for name, module in model.named_modules()}
    means = {}

    def record(module, inputs, output):
        if isinstance(module, nn.Linear):
            means[names[module]] = float(output.mean())

    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        model(x)
    finally:
        handle.remove()
    return means
""",
    ],
}
