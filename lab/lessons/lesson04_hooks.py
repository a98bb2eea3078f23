# %% [markdown]
# # 04 · Hooks: watching and changing gradients, module hooks, and the Grad-CAM idea
#
# A **hook** is a function autograd (or a module) calls for you at a fixed moment:
#
# - `tensor.register_hook(fn)`: `fn(grad)` runs when the gradient w.r.t. that tensor has
#   been computed. Returning nothing just observes; returning a tensor **replaces** the
#   gradient that flows on to the tensor's inputs.
# - `module.register_forward_hook(fn)`: `fn(module, inputs, output)` after each forward.
# - `module.register_full_backward_hook(fn)`: `fn(module, grad_input, grad_output)` once
#   the gradients w.r.t. the module's inputs are known.
#
# Every `register_*` returns a handle; `handle.remove()` takes the hook away again.
# Grad-CAM puts the module hooks to work: it captures a layer's activations and their
# gradients to show *where* in an image a CNN found evidence for a class.

# %%
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lab.lessons.harness import LessonRun, run_main

# %% [markdown]
# ## Tensor hooks: observe, then modify
#
# Our probe: `h = 3x`, `L = Σ h²`. So `dL/dh = 2h` and `dL/dx = 3 · dL/dh = 18x`.
# A hook on `h` that returns `g · s` changes what reaches `x`: `x.grad = 3 · s · 2h`.
# Clipping the gradient to `[−c, c]` gives `x.grad = 3 · clamp(2h, −c, c)`.
# `h.retain_grad()` stores `h`'s gradient *after* its hooks have run (autograd always
# runs the retain-grad hook last, whenever it was registered).


# %%
def probe_grads(
    x0: torch.Tensor, hook: Callable | None = None, on_leaf: bool = False
) -> dict[str, torch.Tensor | list]:
    """x.grad, h.grad and what an observer saw, with `hook` on h (or on the leaf x)."""
    x = x0.detach().clone().requires_grad_(True)
    if on_leaf and hook is not None:
        x.register_hook(hook)
    h = 3 * x
    h.retain_grad()  # registered first on purpose: it still sees the hooked gradient
    seen: list[torch.Tensor] = []
    h.register_hook(lambda g: seen.append(g.clone()))  # observer: returns None
    if hook is not None and not on_leaf:
        h.register_hook(hook)
    (h**2).sum().backward()
    return {"x.grad": x.grad, "h.grad": h.grad, "seen": seen, "h": h.detach()}


def scale_hook(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda grad: grad * factor


def clip_hook(limit: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda grad: grad.clamp(-limit, limit)


def hook_then_remove(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """x.grad with a ×10 hook on the leaf, then after handle.remove(); and the observer's
    call count (it was removed too)."""
    x = x0.detach().clone().requires_grad_(True)
    calls = []
    handles = [x.register_hook(scale_hook(10.0)), x.register_hook(lambda g: calls.append(1))]
    (3 * x).sum().backward()
    hooked = x.grad.clone()
    for handle in handles:
        handle.remove()
    x.grad = None
    (3 * x).sum().backward()
    return hooked, x.grad, len(calls)


# %% [markdown]
# ## Module hooks: forward and full backward
#
# A small MLP `Linear(4, 5) → ReLU → Linear(5, 2)` and the loss `L = Σ out²`.
# Forward hooks record every layer's output without touching the model's code. A full
# backward hook on the last `Linear` sees `grad_output = dL/d out = 2·out` and
# `grad_input = dL/d(its input) = grad_output @ W`.


# %%
def small_mlp(device: str | torch.device = "cpu") -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).to(device, torch.float64)


def run_with_module_hooks(model: nn.Sequential, x: torch.Tensor) -> dict[str, object]:
    """One forward + backward with hooks on every layer; the hooks are removed afterwards."""
    outputs: dict[str, torch.Tensor] = {}
    backward: dict[str, tuple] = {}
    calls = []

    def remember_output(name):
        def hook(module, inputs, output):
            calls.append(name)
            outputs[name] = output.detach()

        return hook

    def remember_grads(module, grad_input, grad_output):
        calls.append("backward")
        backward["grad_input"] = tuple(g.detach() for g in grad_input)
        backward["grad_output"] = tuple(g.detach() for g in grad_output)

    handles = [
        layer.register_forward_hook(remember_output(name)) for name, layer in model.named_children()
    ]
    handles.append(model[2].register_full_backward_hook(remember_grads))
    out = model(x)
    (out**2).sum().backward()
    calls_with_hooks = len(calls)
    for handle in handles:
        handle.remove()
    (model(x) ** 2).sum().backward()  # once more, hooks gone: nothing may be recorded
    return {
        "outputs": outputs,
        "out": out.detach(),
        **backward,
        "calls_with_hooks": calls_with_hooks,
        "calls_after_remove": len(calls) - calls_with_hooks,
    }


def hook_count(module: nn.Module) -> int:
    """Hooks registered on a module (PyTorch has no public accessor for this)."""
    return sum(
        len(hooks)
        for hooks in (
            module._forward_pre_hooks,
            module._forward_hooks,
            module._backward_pre_hooks,
            module._backward_hooks,
        )
    )


# %% [markdown]
# ## The Grad-CAM idea
#
# Pick a convolutional layer with activations `A` (channels × H × W) and a class score
# `y_k`. Grad-CAM weighs each channel by how much the score depends on it,
# `α_c = mean over positions of ∂y_k/∂A_c`, and keeps the positive evidence:
# `CAM = ReLU(Σ_c α_c · A_c)`. A forward hook captures `A`, a full backward hook captures
# `∂y_k/∂A` — no change to the network's code.
#
# Our tiny CNN ends in global average pooling and one `Linear`, so
# `∂y_k/∂A_c[i, j] = W[k, c] / (H·W)` at every position, and Grad-CAM reduces to the
# original CAM `ReLU(Σ_c W[k, c] · A_c) / (H·W)`: an analytic answer to check against.
# Its convolutions keep the 16 × 16 size, so the map lies over the image without the
# upsampling Grad-CAM usually needs.
# (Its weights are random, not trained: the map shows where *this* network's evidence for
# class k lies; the mechanics are the same for a trained network.)


# %%
class TinyCNN(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


def tiny_cnn(device: str | torch.device = "cpu") -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().to(device, torch.float64)


def square_image(size: int = 16, device: str | torch.device = "cpu") -> torch.Tensor:
    """A 1×1×size×size image: a bright square in the upper left on faint noise."""
    generator = torch.Generator().manual_seed(0)
    image = 0.1 * torch.rand(1, 1, size, size, generator=generator, dtype=torch.float64)
    image[..., 2:7, 2:7] = 1.0
    return image.to(device)


def grad_cam(
    model: TinyCNN, layer: nn.Module, image: torch.Tensor, target: int | None = None
) -> dict[str, torch.Tensor | int]:
    """Grad-CAM on `layer` for class `target` (default: the top class), via hooks."""
    captured: dict[str, torch.Tensor] = {}

    def keep_activation(module, inputs, output):
        captured["activation"] = output.detach()

    def keep_gradient(module, grad_input, grad_output):
        captured["gradient"] = grad_output[0].detach()

    handles = [
        layer.register_forward_hook(keep_activation),
        layer.register_full_backward_hook(keep_gradient),
    ]
    try:
        model.zero_grad(set_to_none=True)
        logits = model(image)
        target = int(logits[0].argmax()) if target is None else target
        logits[0, target].backward()
    finally:
        for handle in handles:
            handle.remove()
    activation, gradient = captured["activation"][0], captured["gradient"][0]
    alpha = gradient.mean(dim=(1, 2))  # one weight per channel
    cam = F.relu((alpha[:, None, None] * activation).sum(dim=0))
    return {
        "cam": cam,
        "alpha": alpha,
        "activation": activation,
        "gradient": gradient,
        "target": target,
        "score": logits[0, target].detach(),
    }


def gradient_by_autograd(model: TinyCNN, image: torch.Tensor, target: int) -> torch.Tensor:
    """The oracle: d score / d features(image), computed explicitly, no hooks."""
    activation = model.features(image)
    score = model.head(activation)[0, target]
    (gradient,) = torch.autograd.grad(score, activation)
    return gradient[0]


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    x0 = torch.tensor([0.125, -0.25, 0.5], dtype=torch.float64, device=run.device)
    h = 3 * x0
    plain = probe_grads(x0)
    print(
        f"no hook: dL/dh seen by the observer = {plain['seen'][0].tolist()}, "
        f"x.grad = {plain['x.grad'].tolist()}"
    )
    run.check(
        len(plain["seen"]) == 1
        and torch.allclose(plain["seen"][0], 2 * h)
        and torch.allclose(plain["x.grad"], 18 * x0),
        "an observing hook sees dL/dh = 2h and leaves x.grad = 18x unchanged",
    )
    scaled = probe_grads(x0, scale_hook(0.5))
    run.check(
        torch.allclose(scaled["x.grad"], 3 * 0.5 * 2 * h),
        "a hook returning 0.5·g on h makes x.grad = 3 · 0.5 · 2h",
    )
    run.check(
        torch.allclose(scaled["h.grad"], 0.5 * 2 * h),
        "retain_grad() on h stores the hooked gradient 0.5 · 2h",
    )
    clipped = probe_grads(x0, clip_hook(1.0))
    print(
        f"clip hook on h: x.grad = {clipped['x.grad'].tolist()} (unclipped: "
        f"{plain['x.grad'].tolist()})"
    )
    run.check(
        torch.allclose(clipped["x.grad"], 3 * (2 * h).clamp(-1.0, 1.0)),
        "a hook clipping g to [−1, 1] on h makes x.grad = 3 · clamp(2h, −1, 1)",
    )
    on_leaf = probe_grads(x0, scale_hook(10.0), on_leaf=True)
    run.check(
        torch.allclose(on_leaf["x.grad"], 10 * 18 * x0),
        "a hook on the leaf itself changes what is accumulated into x.grad",
    )
    for name, grads in (("none", plain), ("scaled_0.5", scaled), ("clipped_1", clipped)):
        run.writer.add_scalar(f"tensor_hooks/x_grad_norm/{name}", grads["x.grad"].norm().item(), 0)

    hooked, after_remove, calls = hook_then_remove(x0)
    print(
        f"with a ×10 hook: x.grad = {hooked.tolist()}; after handle.remove(): "
        f"{after_remove.tolist()}"
    )
    run.check(
        torch.allclose(hooked, torch.full_like(x0, 30.0))
        and torch.allclose(after_remove, torch.full_like(x0, 3.0))
        and calls == 1,
        "after handle.remove() the hooks no longer run: x.grad is 3 again, not 30",
    )

    model = small_mlp(run.device)
    x = torch.randn(
        6,
        4,
        dtype=torch.float64,
        device=run.device,
        generator=torch.Generator(run.device).manual_seed(1),
    )
    seen = run_with_module_hooks(model, x)
    print(
        "forward hooks saw outputs of shape "
        + ", ".join(f"{name}: {tuple(out.shape)}" for name, out in seen["outputs"].items())
    )
    first = model[0]
    run.check(
        torch.allclose(seen["outputs"]["0"], x @ first.weight.T + first.bias)
        and torch.equal(seen["outputs"]["2"], seen["out"]),
        "forward hooks record each layer's output: Linear 0 = x Wᵀ + b, last = model(x)",
    )
    last = model[2]
    run.check(
        torch.allclose(seen["grad_output"][0], 2 * seen["out"]),
        "the full backward hook's grad_output is dL/d out = 2·out",
    )
    run.check(
        torch.allclose(seen["grad_input"][0], seen["grad_output"][0] @ last.weight),
        "its grad_input is dL/d(input) = grad_output @ W",
    )
    run.check(
        seen["calls_with_hooks"] == 4 and seen["calls_after_remove"] == 0,
        "3 forward hooks + 1 backward hook ran; after handle.remove() none runs",
    )

    cnn = tiny_cnn(run.device)
    image = square_image(device=run.device)
    layer = cnn.features[3]  # the ReLU after the last convolution
    result = grad_cam(cnn, layer, image)
    target, gradient = result["target"], result["gradient"]
    print(
        f"Grad-CAM for class {target} (score {result['score'].item():.4f}); "
        f"α = {[round(a, 5) for a in result['alpha'].tolist()]}"
    )
    run.check(
        torch.allclose(gradient, gradient_by_autograd(cnn, image, target)),
        "the gradient captured by the backward hook equals torch.autograd.grad (float64)",
    )
    height, width = result["activation"].shape[1:]
    expected = (cnn.head[2].weight[target] / (height * width)).detach()
    run.check(
        torch.allclose(gradient, expected[:, None, None].expand_as(gradient)),
        "after global average pooling ∂y_k/∂A_c = W[k, c]/(H·W) at every position",
    )
    cam = F.relu(torch.einsum("c,chw->hw", expected, result["activation"]))
    run.check(
        torch.allclose(result["cam"], cam),
        "so Grad-CAM equals the original CAM, ReLU(Σ_c W[k, c] A_c)/(H·W)",
    )
    run.check(hook_count(layer) == 0, "grad_cam removed its hooks from the layer")
    run.writer.add_scalar("gradcam/score", result["score"].item(), 0)
    for channel, alpha in enumerate(result["alpha"].tolist()):
        run.writer.add_scalar("gradcam/alpha", alpha, channel)
    peak = result["cam"].max()
    heatmap = result["cam"] / peak if peak > 0 else result["cam"]
    for tag, picture in (("gradcam/input", image[0]), ("gradcam/cam", heatmap[None])):
        # 16×16 is tiny on screen: enlarge 8× (nearest keeps the pixels honest)
        big = F.interpolate(picture[None], scale_factor=8, mode="nearest")[0]
        run.writer.add_image(tag, big.clamp(0, 1).cpu(), 0)


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("04_hooks", run_lesson, argv)


# %%
if __name__ == "__main__":
    main()
