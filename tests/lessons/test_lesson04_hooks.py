"""Lesson 04: tensor hooks, module hooks and Grad-CAM, with torch.autograd as the oracle."""

from __future__ import annotations

import pytest
import torch
from support.tbutil import read_image_sizes, read_scalars, single_run_dir

from lab.lessons import lesson04_hooks as lesson

F64 = torch.float64
X0 = torch.tensor([0.3, -0.05, 1.1, -0.7], dtype=F64)


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


def test_hook_on_the_leaf_changes_its_grad():
    out = lesson.probe_grads(X0, lesson.scale_hook(10.0), on_leaf=True)
    assert torch.allclose(out["x.grad"], oracle_x_grad(X0, 10.0))


def test_removed_hooks_no_longer_run():
    hooked, after, calls = lesson.hook_then_remove(X0)
    assert torch.allclose(hooked, torch.full_like(X0, 30.0))
    assert torch.allclose(after, torch.full_like(X0, 3.0))
    assert calls == 1


def test_module_hooks_capture_what_autograd_computes():
    model = lesson.small_mlp()
    x = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    seen = lesson.run_with_module_hooks(model, x)
    hidden = model[1](model[0](x))
    out = model[2](hidden)
    grad_out, grad_hidden = torch.autograd.grad((out**2).sum(), (out, hidden))
    assert torch.allclose(seen["outputs"]["1"], hidden)
    assert torch.allclose(seen["grad_output"][0], grad_out)
    assert torch.allclose(seen["grad_input"][0], grad_hidden)
    assert seen["calls_with_hooks"] == 4 and seen["calls_after_remove"] == 0
    assert all(lesson.hook_count(layer) == 0 for layer in model)


@pytest.mark.parametrize("layer_index", [1, 3])  # first ReLU, last ReLU
@pytest.mark.parametrize("target", [None, 2])
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


def test_main_logs_hook_effects_and_the_cam(runs_dir):
    lesson.main(["--device", "cpu"])
    run_dir = single_run_dir(runs_dir, "04_hooks")
    scalars = read_scalars(run_dir)
    norms = {
        name: scalars[f"tensor_hooks/x_grad_norm/{name}"][0][1]
        for name in ("none", "scaled_0.5", "clipped_1")
    }
    assert norms["scaled_0.5"] == pytest.approx(0.5 * norms["none"])
    assert norms["clipped_1"] < norms["none"]
    assert [step for step, _ in scalars["gradcam/alpha"]] == list(range(8))
    assert "gradcam/score" in scalars
    images = read_image_sizes(run_dir)
    assert images["gradcam/cam"] == [(0, 128, 128)]
    assert images["gradcam/input"] == [(0, 128, 128)]
