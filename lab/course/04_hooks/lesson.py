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
# Along the way: the gradient-reversal hook, a hook on a regression model's prediction,
# and Grad-CAM, which captures a layer's activations and their gradients with module hooks
# to show *where* in an image a CNN found evidence for a class.

# %% tags=["parameters"]
SCALE = 0.5  # the scaling hook multiplies the gradient by this
CLIP = 1.0  # the clipping hook clamps the gradient to [-CLIP, CLIP]
REVERSAL = 0.3  # the gradient-reversal hook multiplies the gradient by -REVERSAL

# %%
from collections.abc import Callable

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## Tensor hooks: observe
#
# Our probe: `h = 3x`, `L = Σ h²`. So `dL/dh = 2h` and `dL/dx = 3 · dL/dh = 18x`.
# A hook that returns nothing only watches: it sees `dL/dh`, and `x.grad` is unchanged.
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


x0 = torch.tensor([0.125, -0.25, 0.5], dtype=torch.float64, device=device)
h0 = 3 * x0
plain = probe_grads(x0)
print(f"x = {x0.tolist()}, h = 3x = {h0.tolist()}")
print(f"the observer saw dL/dh = {plain['seen'][0].tolist()}   (2h = {(2 * h0).tolist()})")
print(f"x.grad = {plain['x.grad'].tolist()}   (18x = {(18 * x0).tolist()})")
check(
    len(plain["seen"]) == 1
    and torch.allclose(plain["seen"][0], 2 * h0)
    and torch.allclose(plain["x.grad"], 18 * x0),
    "an observing hook sees dL/dh = 2h and leaves x.grad = 18x unchanged",
)

# %% [markdown]
# ## Tensor hooks: change the gradient
#
# A hook on `h` that returns `g · s` changes what reaches `x`: `x.grad = 3 · s · 2h`.
# Clipping the gradient to `[−c, c]` gives `x.grad = 3 · clamp(2h, −c, c)`. A hook on the
# leaf `x` itself changes what is accumulated into `x.grad`.


# %%
def scale_hook(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda grad: grad * factor


def clip_hook(limit: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda grad: grad.clamp(-limit, limit)


scaled = probe_grads(x0, scale_hook(SCALE))
clipped = probe_grads(x0, clip_hook(CLIP))
on_leaf = probe_grads(x0, scale_hook(10.0), on_leaf=True)
print(f"×{SCALE} hook on h:      x.grad = {scaled['x.grad'].tolist()}")
print(f"clip to ±{CLIP} on h:    x.grad = {clipped['x.grad'].tolist()}")
print(f"×10 hook on the leaf: x.grad = {on_leaf['x.grad'].tolist()}")
check(
    torch.allclose(scaled["x.grad"], 3 * SCALE * 2 * h0),
    f"a hook returning {SCALE}·g on h makes x.grad = 3 · {SCALE} · 2h",
)
check(
    torch.allclose(scaled["h.grad"], SCALE * 2 * h0),
    f"retain_grad() on h stores the hooked gradient {SCALE} · 2h",
)
check(
    torch.allclose(clipped["x.grad"], 3 * (2 * h0).clamp(-CLIP, CLIP)),
    f"a hook clipping g to [−{CLIP}, {CLIP}] on h makes x.grad = 3 · clamp(2h, −{CLIP}, {CLIP})",
)
check(
    torch.allclose(on_leaf["x.grad"], 10 * 18 * x0),
    "a hook on the leaf itself changes what is accumulated into x.grad",
)

# %% [markdown]
# ## The gradient-reversal hook: −g
#
# The simplest hook that changes training is `lambda g: -λ·g`, the **gradient reversal**
# of domain-adversarial training (DANN, Ganin & Lempitsky 2015), with a strength λ
# (`REVERSAL`; not 1 here, so that a forgotten λ would show). The forward pass is
# untouched; backwards, everything *before* the hook is pushed the opposite way.
#
# In DANN a feature extractor feeds two heads: a task head (predict the label) and a
# domain head (tell source from target data). The reversal sits only on the domain head's
# branch, so the domain head learns to tell the domains apart while the features are
# pushed to make that *impossible*. A tensor hook acts on everything flowing into its
# tensor, so the branch gets a tensor of its own: `branch = features.view_as(features)`.


# %%
def gradient_reversal(strength: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The gradient-reversal hook: identity forwards, −strength · g backwards."""
    return lambda grad: -strength * grad


def dann_model(device: str | torch.device = "cpu") -> dict[str, nn.Module]:
    with torch.random.fork_rng(devices=[]):  # fixed weights, the global RNG left alone
        torch.manual_seed(0)
        parts = {"features": nn.Linear(3, 4), "task": nn.Linear(4, 1), "domain": nn.Linear(4, 1)}
    return {name: part.to(device, torch.float64) for name, part in parts.items()}


def dann_losses(model: dict, x: torch.Tensor, reverse: Callable | None):
    """(task loss, domain loss) on a fixed toy batch; `reverse` hooks the domain branch."""
    features = model["features"](x)
    branch = features.view_as(features)  # its own node: a hook here touches this branch only
    if reverse is not None:
        branch.register_hook(reverse)
    task = (model["task"](features) - 1.0).pow(2).mean()
    domain = model["domain"](branch).pow(2).mean()
    return task, domain


def dann_grads(model: dict, x: torch.Tensor, reverse: Callable | None) -> dict[str, torch.Tensor]:
    """Gradients of task + domain loss for every weight ("features.weight" …)."""
    task, domain = dann_losses(model, x, reverse)
    params = {f"{n}.{p}": t for n, part in model.items() for p, t in part.named_parameters()}
    grads = torch.autograd.grad(task + domain, list(params.values()))
    return dict(zip(params, grads, strict=True))


reversed_x = probe_grads(x0, gradient_reversal(REVERSAL))
shown = [round(v, 6) for v in reversed_x["x.grad"].tolist()]
print(f"reversal hook on h: x.grad = {shown}   (−{REVERSAL}·18x)")
check(
    torch.allclose(reversed_x["x.grad"], -REVERSAL * 18 * x0),
    f"the gradient-reversal hook (λ = {REVERSAL}) on h turns x.grad into −λ·18x",
)
model = dann_model(device)
batch = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
batch = batch.to(device)
with_reversal = dann_grads(model, batch, gradient_reversal(REVERSAL))
# The oracle: each loss differentiated on its own, no hooks at all.
task, domain = dann_losses(model, batch, reverse=None)
task_grad = torch.autograd.grad(task, list(model["features"].parameters()), retain_graph=True)
domain_grad = torch.autograd.grad(
    domain, list(model["features"].parameters()) + [model["domain"].weight]
)
print(f"features.weight grad with reversal:\n{with_reversal['features.weight'].cpu().numpy()}")
check(
    torch.allclose(with_reversal["features.weight"], task_grad[0] - REVERSAL * domain_grad[0])
    and torch.allclose(with_reversal["features.bias"], task_grad[1] - REVERSAL * domain_grad[1]),
    "with the reversal on the domain branch, the features get ∂task − λ·∂domain",
)
check(
    torch.allclose(with_reversal["domain.weight"], domain_grad[2]),
    "the domain head (between the loss and the hook) gets its ordinary gradient",
)

# %% [markdown]
# ## Look at it: one gradient, four hooks
#
# `x.grad` for each component of `x`, with no hook, the scaling hook, the clipping hook and
# the reversal hook. The norms go to TensorBoard too (`tensor_hooks/x_grad_norm/…`).

# %%
variants = {
    "no hook": plain,
    f"×{SCALE}": scaled,
    f"clip ±{CLIP}": clipped,
    f"reversal −{REVERSAL}g": reversed_x,
}
fig, ax = plt.subplots(figsize=(6.4, 3.2))
width = 0.8 / len(variants)
for k, (label, grads) in enumerate(variants.items()):
    positions = [i + (k - (len(variants) - 1) / 2) * width for i in range(len(x0))]
    ax.bar(positions, grads["x.grad"].cpu().numpy(), width, label=label)
ax.axhline(0, color="black", lw=0.5)
ax.set_xticks(range(len(x0)), [f"x[{i}] = {v}" for i, v in enumerate(x0.tolist())])
ax.set(ylabel="x.grad", title="what a hook on h = 3x does to x.grad")
ax.legend(fontsize=8)
fig.tight_layout()
show(fig, "tensor_hooks")
for name, grads in (("none", plain), ("scaled", scaled), ("clipped", clipped)):
    lesson.writer.add_scalar(f"tensor_hooks/x_grad_norm/{name}", grads["x.grad"].norm().item(), 0)

# %% [markdown]
# ## Removing a hook
#
# `register_hook` returns a handle; `handle.remove()` and the hook is gone.


# %%
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


hooked, after_remove, calls = hook_then_remove(x0)
print(f"with a ×10 hook: x.grad = {hooked.tolist()}; after remove(): {after_remove.tolist()}")
check(
    torch.allclose(hooked, torch.full_like(x0, 30.0))
    and torch.allclose(after_remove, torch.full_like(x0, 3.0))
    and calls == 1,
    "after handle.remove() the hooks no longer run: x.grad is 3 again, not 30",
)

# %% [markdown]
# ## A hook on a regression model's prediction
#
# Fit a line `pred = w·x + b` to points on `y = 3x − 1` — one of them an outlier — with
# the mean squared error. A hook on `pred` sees, per data point, `dL/dpred = 2(pred − y)/N`:
# how hard each point pulls on the fit. The outlier pulls hardest.
#
# Clip that per-point pull to `±c` and the outlier can no longer drag the line. What then
# flows from `pred` into `w` and `b` is the gradient of `(2/N)·Σ Huber_δ(pred − y)` with
# `δ = c·N/2` — the **Huber loss** (`r²/2` near 0, linear beyond `δ`), obtained without
# writing a new loss. Mind the factor: `F.huber_loss(pred, y, delta=δ)` is the *mean*
# `(1/N)·Σ Huber_δ`, so the hook gives twice its gradient (the MSE's `r²` is twice
# Huber's `r²/2`).


# %%
PRED_CLIP = 0.05  # the per-point limit c of the clipping hook on pred
LINE_LR = 0.5  # learning rate of the line fits
TRUE_W = 3.0  # the line the data come from: y = 3x − 1
TRUE_B = -1.0


def regression_data(device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """20 points on y = 3x − 1 with a little noise; point 16 is an outlier at y = 12."""
    x = torch.linspace(-1.0, 1.0, 20, dtype=torch.float64)[:, None]
    noise = 0.05 * torch.randn(20, 1, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    y = TRUE_W * x + TRUE_B + noise
    y[16] = 12.0
    return x.to(device), y.to(device)


def line_model(device: str | torch.device = "cpu") -> nn.Linear:
    model = nn.Linear(1, 1).to(device, torch.float64)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    return model


def prediction_gradients(model: nn.Linear, x, y, hook: Callable | None = None) -> dict:
    """One MSE backward with an observer (and `hook`, if given) on the prediction."""
    model.zero_grad(set_to_none=True)
    pred = model(x)
    seen: list[torch.Tensor] = []
    pred.register_hook(lambda g: seen.append(g.clone()))  # runs first: sees the plain dL/dpred
    if hook is not None:
        pred.register_hook(hook)
    F.mse_loss(pred, y).backward()
    return {
        "pred": pred.detach(),
        "dL/dpred": seen[0],
        "weight.grad": model.weight.grad.clone(),
        "bias.grad": model.bias.grad.clone(),
    }


xr, yr = regression_data(device)
model = line_model(device)
with torch.no_grad():  # a fixed point to look at: the true line
    model.weight.fill_(TRUE_W)
    model.bias.fill_(TRUE_B)
plain_fit = prediction_gradients(model, xr, yr)
pull = plain_fit["dL/dpred"].flatten()
print("per-point dL/dpred at the true line:", [round(v, 4) for v in pull.tolist()])
others = pull.abs()[:16].max().item()
print(f"the outlier (point 16) pulls with {pull[16].item():.3f}; the others ≤ {others:.4f}")
check(
    torch.allclose(plain_fit["dL/dpred"], 2 * (plain_fit["pred"] - yr) / len(yr)),
    "a hook on the prediction sees dL/dpred = 2(pred − y)/N, one value per data point",
)
check(
    (pull.abs() > PRED_CLIP).nonzero().flatten().tolist() == [16],
    f"only the outlier pulls harder than ±{PRED_CLIP}: one point on Huber's linear part",
)
clip_fit = prediction_gradients(model, xr, yr, clip_hook(PRED_CLIP))
# The oracle: the Huber loss written as a loss, no hooks.
w = model.weight.detach().clone().requires_grad_(True)
b = model.bias.detach().clone().requires_grad_(True)
delta = PRED_CLIP * len(yr) / 2
huber_w, huber_b = torch.autograd.grad(F.huber_loss(xr @ w.T + b, yr, delta=delta), (w, b))
print(f"weight.grad with no hook:                 {plain_fit['weight.grad'].item():.4f}")
print(f"weight.grad with the clipping hook:       {clip_fit['weight.grad'].item():.4f}")
print(f"weight.grad of F.huber_loss(delta={delta:g}): {huber_w.item():.4f}")
check(
    torch.allclose(clip_fit["weight.grad"], 2 * huber_w)
    and torch.allclose(clip_fit["bias.grad"], 2 * huber_b),
    f"clipping dL/dpred to ±{PRED_CLIP} gives w, b twice the gradient of "
    f"F.huber_loss(delta = c·N/2 = {delta:g}): that of (2/N)·Σ Huber",
)


# %%
def fit_line(x, y, hook: Callable | None = None, steps: int = 300, lr: float = LINE_LR):
    """Gradient descent on the MSE from w = b = 0, `hook` on every step's prediction."""
    model = line_model(x.device)
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        pred = model(x)
        if hook is not None:
            pred.register_hook(hook)
        F.mse_loss(pred, y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    return model.weight.item(), model.bias.item()


plain_w, plain_b = fit_line(xr, yr)
robust_w, robust_b = fit_line(xr, yr, clip_hook(PRED_CLIP))
print(f"plain MSE fit:          y = {plain_w:.3f}x {plain_b:+.3f}")
print(f"with the clipping hook: y = {robust_w:.3f}x {robust_b:+.3f}   (true: 3x − 1)")
check(
    abs(robust_w - TRUE_W) < abs(plain_w - TRUE_W)
    and abs(robust_b - TRUE_B) < abs(plain_b - TRUE_B),
    "with the clipping hook the fitted line stays closer to the true line than the MSE fit",
)
# The end point alone could hide a wrong step. The first, by hand: at w = b = 0, pred = 0
# and each point's pull is clamp(−2y/N, ±c), some clipped, some not.
first_pull = (-2 * yr / len(yr)).clamp(-PRED_CLIP, PRED_CLIP)
w1, b1 = fit_line(xr, yr, clip_hook(PRED_CLIP), steps=1)
check(
    abs(w1 + LINE_LR * (first_pull * xr).sum().item()) < 1e-12
    and abs(b1 + LINE_LR * first_pull.sum().item()) < 1e-12,
    "its first step from w = b = 0 is w = −lr·Σ clamp(−2y/N, ±c)·x, b = −lr·Σ clamp(−2y/N, ±c)",
)
fig, ax = plt.subplots(figsize=(6.4, 3.4))
xs = xr.flatten().cpu().numpy()
ax.scatter(xs, yr.flatten().cpu().numpy(), s=12, color="tab:gray", label="data (one outlier)")
ax.plot(xs, TRUE_W * xs + TRUE_B, color="black", lw=1, label="true: 3x − 1")
ax.plot(xs, plain_w * xs + plain_b, color="tab:red", label="MSE fit")
ax.plot(
    xs, robust_w * xs + robust_b, "--", color="tab:green", label=f"hook: clip dL/dpred ±{PRED_CLIP}"
)
ax.set(xlabel="x", ylabel="y", title="a hook on the prediction tames an outlier")
ax.legend(fontsize=8)
fig.tight_layout()
show(fig, "regression_hook")

# %% [markdown]
# ## Module hooks: forward and full backward
#
# A small MLP `Linear(4, 5) → ReLU → Linear(5, 2)` and the loss `L = Σ out²`.
# Forward hooks record every layer's output without touching the model's code. A full
# backward hook on the last `Linear` sees `grad_output = dL/d out = 2·out` and
# `grad_input = dL/d(its input) = grad_output @ W`. We check what the hooks recorded against
# the layers' maths done by hand from their weights.


# %%
def small_mlp(device: str | torch.device = "cpu") -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    return model.to(device, torch.float64)


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
        **backward,
        "calls_with_hooks": calls_with_hooks,
        "calls_after_remove": len(calls) - calls_with_hooks,
    }


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and the same values (up to float rounding)."""
    return a.shape == b.shape and torch.allclose(a, b)


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


mlp = small_mlp(device)
xm = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
seen = run_with_module_hooks(mlp, xm)
for name, out in seen["outputs"].items():
    print(
        f"forward hook on layer {name} ({type(mlp[int(name)]).__name__}): output {tuple(out.shape)}"
    )
# The layers' maths by hand, from their weights: no module is called.
with torch.no_grad():
    first, last = mlp[0], mlp[2]
    hidden_by_hand = xm @ first.weight.T + first.bias
    relu_by_hand = torch.where(hidden_by_hand > 0, hidden_by_hand, 0.0)
    out_by_hand = relu_by_hand @ last.weight.T + last.bias
check(
    same(seen["outputs"]["0"], hidden_by_hand)
    and same(seen["outputs"]["1"], relu_by_hand)
    and same(seen["outputs"]["2"], out_by_hand),
    "forward hooks record each layer's output: x Wᵀ + b, its ReLU, and the last layer's",
)
check(
    torch.allclose(seen["grad_output"][0], 2 * out_by_hand),
    "the full backward hook's grad_output is dL/d out = 2·out",
)
check(
    torch.allclose(seen["grad_input"][0], 2 * out_by_hand @ last.weight.detach()),
    "its grad_input is dL/d(input) = grad_output @ W",
)
check(
    seen["calls_with_hooks"] == 4 and seen["calls_after_remove"] == 0,
    "3 forward hooks + 1 backward hook ran; after handle.remove() none runs",
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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)  # a network whose top class for our image is not class 0
        model = TinyCNN()
    return model.to(device, torch.float64)


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


cnn = tiny_cnn(device)
image = square_image(device=device)
layer = cnn.features[3]  # the ReLU after the last convolution
result = grad_cam(cnn, layer, image)
target, gradient = result["target"], result["gradient"]
print(f"Grad-CAM for class {target} (score {result['score'].item():.4f})")
print(f"α = {[round(a, 5) for a in result['alpha'].tolist()]}")
with torch.no_grad():  # the logits by hand: average each channel, then the Linear layer
    activation = cnn.features(image)[0]
    logits = cnn.head[2].weight @ activation.mean(dim=(1, 2)) + cnn.head[2].bias
print(f"logits by hand: {[round(v, 4) for v in logits.tolist()]}")
check(
    target == int(logits.argmax()) and torch.isclose(result["score"], logits.max()),
    f"with no target given, Grad-CAM explains the top class, here {target}",
)
check(
    torch.allclose(gradient, gradient_by_autograd(cnn, image, target)),
    "the gradient captured by the backward hook equals torch.autograd.grad (float64)",
)
height, width = result["activation"].shape[1:]
expected = (cnn.head[2].weight[target] / (height * width)).detach()
check(
    torch.allclose(gradient, expected[:, None, None].expand_as(gradient)),
    "after global average pooling ∂y_k/∂A_c = W[k, c]/(H·W) at every position",
)
cam = F.relu(torch.einsum("c,chw->hw", expected, result["activation"]))
check(
    torch.allclose(result["cam"], cam) and (cam > 0).any(),
    "so Grad-CAM equals the original CAM, ReLU(Σ_c W[k, c] A_c)/(H·W) (not all zero)",
)
check(hook_count(layer) == 0, "grad_cam removed its hooks from the layer")
lesson.writer.add_scalar("gradcam/score", result["score"].item(), 0)
for channel, alpha in enumerate(result["alpha"].tolist()):
    lesson.writer.add_scalar("gradcam/alpha", alpha, channel)

# %% [markdown]
# ## Look at it: where the evidence for class k lies

# %%
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(9, 3.2))
picture = image[0, 0].cpu().numpy()
left.imshow(picture, cmap="gray", vmin=0, vmax=1)
left.set_title("input")
middle.imshow(result["cam"].cpu().numpy(), cmap="inferno")
middle.set_title(f"Grad-CAM, class {target}")
right.imshow(picture, cmap="gray", vmin=0, vmax=1)
right.imshow(result["cam"].cpu().numpy(), cmap="inferno", alpha=0.5)
right.set_title("overlay")
for axis in (left, middle, right):
    axis.set_axis_off()
fig.tight_layout()
show(fig, "gradcam")

# %% [markdown]
# ## Where the hooks sit, seen by the inspector
#
# `inspect` from `lab.inspector` records a `backward()` through the engine's own node hooks:
# what each node received and what it sent along each edge. A tensor hook runs between the
# two, so on the DANN model the reversal shows on the edge into the domain branch: the head
# sends `∂domain/∂branch`, the branch node receives its negative (the edge reads `hook ×−1`).
# In JupyterLab press *step ▶* until that node lights up.

# %%
from lab.inspector import inspect, record

model = dann_model(device)
named = {f"{n}.{p}": t for n, part in model.items() for p, t in part.named_parameters()}
task, domain = dann_losses(model, batch, gradient_reversal())
view = inspect(task + domain, named, tag="inspector/gradient_reversal")
branch_node = next(node for node in view.nodes if node.op == "ViewBackward0")
sent, received = view.hook_change(branch_node.index)
print(f"into the branch: sent {sent[0].tolist()} …")
print(f"      received there: {received[0].tolist()} …")
# The oracle: ∂domain/∂branch by autograd.grad, on a graph with no hook at all.
features = model["features"](batch)
branch = features.view_as(features)
(d_branch,) = torch.autograd.grad(model["domain"](branch).pow(2).mean(), branch)
check(
    torch.allclose(sent, d_branch) and torch.allclose(received, -d_branch),
    "the inspector sees ∂domain/∂branch sent into the branch and its negative received there",
)

# %% [markdown]
# A module's full backward hook is a node of the graph too: `register_full_backward_hook`
# wraps the module's output and input in a `BackwardHookFunctionBackward` node each, and the
# hook runs when the gradient reaches them. `record(mlp)` around the forward tags every node
# with the layer that made it, so the picture groups them by layer.

# %%
mlp = small_mlp(device)
grad_outputs = []
handle = mlp[2].register_full_backward_hook(lambda m, g_in, g_out: grad_outputs.append(g_out[0]))
with record(mlp):
    out = mlp(xm)
view = inspect((out**2).sum(), mlp, tag="inspector/module_hooks")
handle.remove()
hook_nodes = [node for node in view.nodes if node.op == "BackwardHookFunctionBackward"]
print("hook nodes:", [(node.module, node.outputs[0][0]) for node in hook_nodes])
check(
    len(hook_nodes) == 2 and all(node.module == "2" for node in hook_nodes),
    "the full backward hook on layer 2 sits in the graph as two nodes, both in layer 2's group",
)
with torch.no_grad():  # the oracle: the MLP's output by hand, from its weights
    hidden = (xm @ mlp[0].weight.T + mlp[0].bias).clamp(min=0)
    out_by_hand = hidden @ mlp[2].weight.T + mlp[2].bias
at_output = view.received(hook_nodes[0].index)[0]  # the first one backward() reaches
check(
    torch.allclose(at_output, 2 * out_by_hand) and torch.allclose(grad_outputs[0], at_output),
    "the gradient reaching layer 2's output-side hook node is the hook's grad_output, 2·out",
)

# %% [markdown]
# ## What to take away
#
# - Tensor hooks see (and may replace) a gradient on its way back: scale, clip, reverse.
# - Put a hook on the tensor whose gradient you mean: the prediction, one branch, a leaf.
# - Module hooks watch a network from outside; Grad-CAM is two of them and an average.

# %%
lesson.done()
