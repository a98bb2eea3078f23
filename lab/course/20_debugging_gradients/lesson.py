# %% [markdown]
# # 20 · Debugging gradients
#
# Sooner or later a loss turns into `nan`, a deep network stops learning, or a custom
# Function breaks the moment someone asks for a second derivative. This lesson is the
# toolbox: `torch.autograd.detect_anomaly` names the op whose backward produced a NaN (and
# shows where its forward ran), numerically stable rewrites remove the cause, per-layer
# gradient norms show vanishing and exploding gradients, `gradgradcheck` tests double
# backward, grad-mode switches and the newer hooks (`register_multi_grad_hook`,
# `register_post_accumulate_grad_hook`) control what autograd does and when, and
# `GradScaler` keeps float16 gradients from vanishing. Each claim is checked in float64
# against a closed form, a built-in or a plain computation.

# %% tags=["parameters"]
SEED = 20  # seed of the deep networks' weights and data
DEPTH = 20  # layers of the deep MLPs (5 or more for vanishing gradients to show)
WIDTH = 32  # units per layer of the deep MLPs
BATCH = 64  # samples the deep MLPs see
SCALER_STEPS = 12  # optimizer steps in the GradScaler run (gradients overflow at steps 4, 5, 9)

# %%
import warnings

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.autograd.function import once_differentiable
from torch.autograd.graph import register_multi_grad_hook

from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device
f64 = {"dtype": torch.float64, "device": device}

# %% [markdown]
# ## A NaN that only backward sees
#
# `softplus(x) = log(1 + eˣ)` overflows for large `x`, so a common "fix" picks `x` itself
# there with `torch.where`. The forward is now finite everywhere — and the gradient at
# `x = 1000` is still `nan`: `torch.where` runs backward through **both** branches (the
# unselected one gets a zero gradient), and `exp`'s backward computes `0 · e¹⁰⁰⁰ = 0 · ∞`.


# %%
def where_softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 20, x, torch.log1p(torch.exp(x)))


def gradient(func, x: torch.Tensor) -> torch.Tensor:
    """d(Σ func(x))/dx, on a fresh leaf."""
    x = x.detach().clone().requires_grad_(True)
    func(x).sum().backward()
    return x.grad


x = torch.tensor([-5.0, 0.0, 5.0, 1000.0], **f64)
print("x                     ", x.tolist())
print("where_softplus(x)     ", where_softplus(x).tolist())
print("d where_softplus / dx ", gradient(where_softplus, x).tolist())
check(torch.isfinite(where_softplus(x)).all(), "the forward is finite everywhere, even at x = 1000")
check(gradient(where_softplus, x)[-1].isnan(), "… yet the gradient at x = 1000 is nan")

# %% [markdown]
# ## `detect_anomaly`: which op, and where its forward ran
#
# Inside `torch.autograd.detect_anomaly()` autograd records each op's forward traceback and
# checks every backward result: the first one holding a NaN stops backward with an error that
# names the op (`ExpBackward0`), and a warning carries the traceback of the forward call
# that created it — the line to fix. It slows everything down: a debugging tool, not a
# setting to leave on.


# %%
def anomaly_report(func, x: torch.Tensor) -> tuple[str, str]:
    """(the error, the forward traceback) that detect_anomaly reports for backward through func;
    two empty strings when backward finds no NaN."""
    x = x.detach().clone().requires_grad_(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autograd.detect_anomaly():
                func(x).sum().backward()
        except RuntimeError as error:
            forward = [
                str(w.message) for w in caught if "Traceback of forward call" in str(w.message)
            ]
            return str(error), forward[0] if forward else ""
    return "", ""


error, forward_traceback = anomaly_report(where_softplus, x)
frames = [line for line in forward_traceback.splitlines() if line.strip()]
print("error:", error)
print("forward traceback, last frame:\n" + "\n".join(frames[-3:-1]))
check(
    "ExpBackward0" in error and "nan" in error,
    "detect_anomaly names the op: ExpBackward0 returned nan",
)
check(
    "in where_softplus" in frames[-3] and "torch.exp(x)" in frames[-2],
    "its forward traceback ends in where_softplus, on the torch.exp(x) line",
)

# %% [markdown]
# ## The fix: never compute the huge number
#
# `softplus(x) = max(x, 0) + log1p(e^{−|x|})`: the exponent is never positive, so nothing
# overflows in either pass, and the gradient is `sigmoid(x)`. The same idea makes
# `log Σ eˣⁱ` safe: subtract the maximum first, `m + log Σ e^{xᵢ − m}` (its gradient is
# `softmax(x)`). The naive log-sum-exp is `inf` at `x = [1000, 0]` already in the forward.


# %%
def stable_softplus(x: torch.Tensor) -> torch.Tensor:
    # maximum, not clamp: at the tie x = 0 it splits the gradient, giving sigmoid(0) = ½
    return torch.maximum(x, torch.zeros_like(x)) + torch.log1p(torch.exp(-x.abs()))


def naive_logsumexp(x: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.exp(x).sum(-1))


def stable_logsumexp(x: torch.Tensor) -> torch.Tensor:
    m = x.max(-1, keepdim=True).values.detach()  # a constant shift: its gradient would cancel
    return m.squeeze(-1) + torch.log(torch.exp(x - m).sum(-1))


wide = torch.tensor([-1000.0, -5.0, 0.0, 5.0, 1000.0], **f64)
check(
    torch.allclose(stable_softplus(wide), F.softplus(wide)),
    "stable_softplus equals torch's softplus, at ±1000 too",
)
check(
    torch.allclose(gradient(stable_softplus, wide), torch.sigmoid(wide)),
    "its gradient is sigmoid(x), finite everywhere",
)
check(anomaly_report(stable_softplus, wide) == ("", ""), "detect_anomaly finds nothing to report")

logits = torch.tensor([[1000.0, 0.0, -3.0], [1.0, 2.0, 3.0]], **f64)
print("naive log-sum-exp: ", naive_logsumexp(logits).tolist())
print("stable log-sum-exp:", stable_logsumexp(logits).tolist())
check(naive_logsumexp(logits)[0].isinf(), "the naive log-sum-exp overflows to inf at [1000, 0, −3]")
check(
    torch.allclose(stable_logsumexp(logits), torch.logsumexp(logits, -1)),
    "the max-shifted one equals torch.logsumexp",
)
check(
    torch.allclose(gradient(stable_logsumexp, logits), torch.softmax(logits, -1)),
    "… and its gradient is softmax(x)",
)

# %% [markdown]
# The inspector (`lab.inspector`) finds the node without anomaly mode: it records each step of
# one `backward()` and names the first node whose result holds a NaN. At `x = 1000`, `exp`'s
# node receives 0 (the branch `where` did not pick) and multiplies it by its derivative
# `e¹⁰⁰⁰ = ∞`. In JupyterLab step to it: it turns red. The stable softplus has no such step.

# %%
from lab.inspector import inspect

leaf = x.detach().clone().requires_grad_(True)
view = inspect(where_softplus(leaf).sum(), {"x": leaf}, tag="inspector/where_softplus")
bad = view.first_nonfinite
culprit = view.nodes[bad.node] if bad else None
check(
    culprit is not None and bad.produced and culprit.op in anomaly_report(where_softplus, x)[0],
    "the first node to make a NaN, by the inspector, is the one detect_anomaly named",
)
received, made = view.step(culprit.index).received[0], view.step(culprit.index).produced[0]
print(f"first NaN at step {bad.step}: {culprit.op}")
print(f"  received {received.tolist()}\n  made     {made.tolist()}")
check(
    made.isnan().tolist() == [False, False, False, True]
    and received[-1] == 0
    and torch.exp(x[-1]).isinf(),
    "it made the NaN at x = 1000 only, where it received 0 and its derivative eˣ is ∞",
)
steady = wide.detach().clone().requires_grad_(True)
stable_view = inspect(stable_softplus(steady).sum(), {"x": steady}, show=False)
check(
    stable_view.first_nonfinite is None,
    "backward through stable_softplus: no NaN or inf at any step",
)

# %% [markdown]
# ## Vanishing and exploding gradients, layer by layer
#
# Backward through a layer `x → act(W x + b)` multiplies the gradient by `Wᵀ` and by
# `act′`. Sigmoid's slope is at most ¼, so through `DEPTH` sigmoid layers the gradient
# shrinks roughly like `(¼‖W‖)^DEPTH` — it **vanishes**; with large weights (gain 3) tanh's
# slope near 0 is 1 and `‖W‖ ≈ 6`, so it **grows** toward the input. A residual connection
# `x + act(W x + b)` adds an identity path the gradient passes unchanged; LayerNorm keeps the
# pre-activations where tanh is not flat. Four networks, same depth, same data.


# %%
class DeepMLP(nn.Module):
    def __init__(self, depth, width, activation, gain=1.0, residual=False, norm=False):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=gain / width**0.5)
            nn.init.zeros_(layer.bias)
        norms = (nn.LayerNorm(width) if norm else nn.Identity() for _ in range(depth))
        self.norms = nn.ModuleList(norms)
        self.activation, self.residual = activation, residual

    def forward(self, x):
        self.hidden = []  # each layer's output, kept so its gradient can be asked for
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = self.activation(norm(layer(x)))
            x = x + h if self.residual else h
            self.hidden.append(x)
        return x


def layer_gradients(model: DeepMLP, x: torch.Tensor) -> tuple[list, list]:
    """(‖dL/dW‖ per layer, dL/d(output of layer l) per layer) for L = mean of the output²."""
    model.zero_grad()
    loss = model(x).pow(2).mean()
    hidden_grads = torch.autograd.grad(loss, model.hidden, retain_graph=True)
    loss.backward()
    return [layer.weight.grad.norm().item() for layer in model.layers], list(hidden_grads)


CONFIGS = {
    "sigmoid": {"activation": torch.sigmoid},
    "tanh, gain 3": {"activation": torch.tanh, "gain": 3.0},
    "tanh, gain 3 + LayerNorm": {"activation": torch.tanh, "gain": 3.0, "norm": True},
    "sigmoid + residual": {"activation": torch.sigmoid, "residual": True},
}
data = torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(SEED), **f64)
norms, models, hidden_grads = {}, {}, {}
for name, config in CONFIGS.items():
    torch.manual_seed(SEED)
    models[name] = DeepMLP(DEPTH, WIDTH, **config).to(**f64)
    norms[name], hidden_grads[name] = layer_gradients(models[name], data)
    for number, layer in enumerate(models[name].layers):
        lesson.writer.add_histogram(f"weight_grad/{name}", layer.weight.grad, number)
        lesson.writer.add_scalar(f"weight_grad_norm/{name}", norms[name][number], number)
ratio = {name: each[0] / each[-1] for name, each in norms.items()}
for name, value in ratio.items():
    print(f"{name:<26} ‖dL/dW₁‖ / ‖dL/dW_last‖ = {value:.2e}")

fig, ax = plt.subplots(figsize=(7, 3.6))
for name, each in norms.items():
    ax.semilogy(range(1, DEPTH + 1), each, marker=".", label=name)
ax.set(title="gradient norm per layer (input → output)", xlabel="layer", ylabel="‖dL/dW‖")
ax.legend(fontsize=8)
fig.tight_layout()
show(fig, "gradient_norm_per_layer")

# %% [markdown]
# The sigmoid network's numbers are not an accident: every layer obeys
# `‖dL/dxₗ‖ ≤ ¼ · ‖Wₗ₊₁‖₂ · ‖dL/dxₗ₊₁‖` (sigmoid′ ≤ ¼, `‖·‖₂` the largest singular value),
# a bound computed here without autograd. In TensorBoard's Histograms tab,
# `weight_grad/sigmoid` shows the distribution shrinking layer by layer (step = layer).


# %%
def sigmoid_bound_holds(model: DeepMLP, hidden_grads: list) -> bool:
    """‖dL/dxₗ‖ ≤ ¼ ‖W_{l+1}‖₂ ‖dL/dx_{l+1}‖ for every layer of a plain sigmoid net."""
    for layer, here, after in zip(
        model.layers[1:], hidden_grads[:-1], hidden_grads[1:], strict=True
    ):
        limit = 0.25 * torch.linalg.matrix_norm(layer.weight.detach(), 2) * after.norm()
        if here.norm() > limit * (1 + 1e-12):
            return False
    return True


check(
    sigmoid_bound_holds(models["sigmoid"], hidden_grads["sigmoid"]),
    "sigmoid: every layer obeys the ¼‖W‖₂ bound",
)
check(
    ratio["sigmoid"] < 1e-3,
    "sigmoid: the first layer's gradient is < 1/1000 of the last's (vanishing)",
)
check(
    ratio["tanh, gain 3"] > 1, "tanh with gain 3: the gradient grows toward the input (exploding)"
)


def closer_to_one(a: float, b: float) -> bool:
    """a is nearer 1 than b on a log scale."""
    return abs(torch.tensor(a).log10()) < abs(torch.tensor(b).log10())


check(
    closer_to_one(ratio["tanh, gain 3 + LayerNorm"], ratio["tanh, gain 3"]),
    "LayerNorm brings the first/last ratio closer to 1",
)
check(
    closer_to_one(ratio["sigmoid + residual"], ratio["sigmoid"]),
    "a residual connection does too: the gradient no longer vanishes",
)

# %% [markdown]
# ## Double backward through a custom Function: `gradgradcheck`
#
# A custom Function's `backward` is itself differentiated when someone asks for a second
# derivative (a gradient penalty, a Hessian-vector product). Written with ordinary torch ops
# on saved tensors it just works, and `gradgradcheck` confirms it numerically. A `backward`
# that cannot be differentiated (NumPy inside, in-place tricks) should say so with
# `@once_differentiable`: a second derivative then raises an error instead of being silently
# wrong.


# %%
class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 3 * x**2  # torch ops on a saved tensor: differentiable again


class CubeOnce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 3 * x**2


def second_derivative(apply, x: torch.Tensor) -> torch.Tensor:
    """d²(Σ f(x))/dx² elementwise, by differentiating the first derivative again."""
    x = x.detach().clone().requires_grad_(True)
    (first,) = torch.autograd.grad(apply(x).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    return second


def double_backward_error(apply, x: torch.Tensor) -> str:
    """The error a second backward through `apply` raises ('' when it works). The upstream
    gradient needs grad, as gradgradcheck makes it."""
    x = x.detach().clone().requires_grad_(True)
    upstream = torch.ones_like(x, requires_grad=True)
    (first,) = torch.autograd.grad(apply(x), x, upstream, create_graph=True)
    try:
        first.sum().backward()
    except RuntimeError as error:
        return str(error)
    return ""


generator = torch.Generator().manual_seed(SEED)
sample = torch.randn(5, generator=generator, dtype=torch.float64).to(device).requires_grad_()
check(
    gradcheck(Cube.apply, (sample,), raise_exception=False)
    and gradgradcheck(Cube.apply, (sample,), raise_exception=False),
    "Cube passes gradcheck and gradgradcheck",
)
check(
    torch.allclose(second_derivative(Cube.apply, sample), 6 * sample.detach()),
    "its second derivative is 6x (by hand)",
)
check(
    gradcheck(CubeOnce.apply, (sample,), raise_exception=False),
    "CubeOnce passes gradcheck: its first derivative is right",
)
check(
    not gradgradcheck(CubeOnce.apply, (sample,), raise_exception=False), "… and fails gradgradcheck"
)


check(double_backward_error(Cube.apply, sample) == "", "a second backward through Cube runs")
refused = double_backward_error(CubeOnce.apply, sample)
print("second derivative of CubeOnce:", refused)
check(
    "once_differentiable" in refused,
    "a second derivative through CubeOnce raises, naming once_differentiable",
)

# %% [markdown]
# ## Grad mode inside `no_grad`: `enable_grad` and `set_grad_enabled`
#
# An evaluation loop runs under `torch.no_grad()`, yet a saliency map needs `d output / d
# input`. `torch.enable_grad()` switches recording back on for a block; `set_grad_enabled(flag)`
# takes a bool, so one code path serves training and evaluation. `inference_mode` is
# stricter: tensors made inside it can never join a graph, and `enable_grad` does not change
# that.


# %%
def saliency(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d(Σ model(x))/dx, even when the caller is inside no_grad."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        (grad_x,) = torch.autograd.grad(model(x).sum(), x)
    return grad_x


torch.manual_seed(SEED)
linear = nn.Linear(3, 1).to(**f64)
inputs = torch.randn(4, 3, **f64)
with torch.no_grad():
    in_eval = linear(inputs)
    grad_x = saliency(linear, inputs)
check(not in_eval.requires_grad, "under no_grad, outputs record nothing")
check(
    torch.allclose(grad_x, linear.weight.detach().expand(4, 3)),
    "enable_grad inside it: d(wᵀx + b)/dx = w",
)
for training in (True, False):
    with torch.set_grad_enabled(training):
        recorded = linear(inputs).requires_grad
    check(recorded == training, f"set_grad_enabled({training}): the output records = {recorded}")
with torch.inference_mode(), torch.enable_grad():
    inferred = linear(inputs)
check(
    not inferred.requires_grad and inferred.is_inference(),
    "inside inference_mode, enable_grad records nothing",
)

# %% [markdown]
# ## `register_multi_grad_hook`: one call when several gradients are ready
#
# A tensor hook fires per tensor. `torch.autograd.graph.register_multi_grad_hook(tensors,
# fn)` fires **once**, after the gradients of all of them are computed, with all of them —
# the moment to, say, send a whole layer's gradients off (`mode="any"`: once, at the first).


# %%
def multi_hook_calls(model: nn.Module, x: torch.Tensor, mode: str) -> list:
    """What a multi-grad hook on the model's parameters receives during one backward."""
    calls = []
    handle = register_multi_grad_hook(list(model.parameters()), calls.append, mode=mode)
    model(x).pow(2).sum().backward()
    handle.remove()
    return calls


torch.manual_seed(SEED)
mlp = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(**f64)
expected = torch.autograd.grad(mlp(inputs).pow(2).sum(), list(mlp.parameters()))
all_calls = multi_hook_calls(mlp, inputs, "all")
mlp.zero_grad()
any_calls = multi_hook_calls(mlp, inputs, "any")
mlp.zero_grad()
print(f"mode='all': {len(all_calls)} call, {len(all_calls[0])} gradients in it")
print(f"mode='any': {len(any_calls)} call, with a {tuple(any_calls[0].shape)} gradient")
check(len(all_calls) == 1, "mode='all': one call per backward, not one per parameter")
check(
    all(torch.allclose(got, want) for got, want in zip(all_calls[0], expected, strict=True)),
    "… holding every parameter's gradient, equal to autograd.grad's",
)
check(
    len(any_calls) == 1
    and any(
        want.shape == any_calls[0].shape and torch.allclose(any_calls[0], want) for want in expected
    ),
    "mode='any': one call, with the first gradient computed",
)

# %% [markdown]
# ## `register_post_accumulate_grad_hook`: the optimizer step inside backward
#
# This hook runs on a parameter right after its `.grad` has been accumulated. Stepping there
# and dropping `.grad` at once means no full set of gradients ever exists: memory for one
# parameter's gradient at a time. The oracle: the same model trained the ordinary way,
# `backward()` then an SGD step. The handles must be removed afterwards — a forgotten hook
# keeps stepping at every later `backward()`.


# %%
def optimizer_in_backward(model: nn.Module, lr: float, alive: list) -> list:
    """SGD inside backward; `alive` records how many .grad exist when each step runs."""

    def step(param):
        alive.append(sum(p.grad is not None for p in model.parameters()))
        with torch.no_grad():
            param.add_(param.grad, alpha=-lr)
        param.grad = None  # used: free it now

    return [p.register_post_accumulate_grad_hook(step) for p in model.parameters()]


def loss_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).pow(2).sum()


torch.manual_seed(SEED)
fused = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(**f64)
plain = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(**f64)
plain.load_state_dict(fused.state_dict())
alive = []
handles = optimizer_in_backward(fused, 0.1, alive)
loss_of(fused, inputs).backward()
for handle in handles:
    handle.remove()
loss_of(plain, inputs).backward()
torch.optim.SGD(plain.parameters(), lr=0.1).step()
check(
    all(torch.equal(a, b) for a, b in zip(fused.parameters(), plain.parameters(), strict=True)),
    "the step inside backward gives exactly the parameters of backward() + SGD.step()",
)
check(
    max(alive) == 1 and all(p.grad is None for p in fused.parameters()),
    "at most one .grad alive at a time",
)
before = [p.detach().clone() for p in fused.parameters()]
loss_of(fused, inputs).backward()
check(
    all(torch.equal(a, b) for a, b in zip(before, fused.parameters(), strict=True))
    and all(p.grad is not None for p in fused.parameters()),
    "hooks removed: a later backward() only fills .grad again",
)

# %% [markdown]
# ## Mixed precision: `GradScaler`
#
# float16 has a tiny range: a gradient of 1e-8 rounds to 0. `GradScaler` multiplies the
# loss by a large power of two before `backward()` (so the float16 gradients survive) and
# divides the gradients by it again before the step. Three rules: `unscale_` **before**
# clipping (a clip threshold is for the real gradient); a step whose gradients hold `inf` or
# `nan` is **skipped** and the scale halved; after `growth_interval` good steps it doubles.
# `GradScaler("cpu")` exists in this torch, so without a GPU the same code runs on the CPU
# (float16 math on a CPU is slow — bfloat16 needs no scaler — but the mechanism is the same).


# %%
amp_device = device.type
print(
    f"GradScaler({amp_device!r})"
    + ("" if amp_device == "cuda" else ": no CUDA device, so the CPU scaler and CPU autocast")
)
check(torch.tensor(1e-8, dtype=torch.float16) == 0, "float16: 1e-8 rounds to 0")


def float16_weight_grad(x: torch.Tensor, scale: float | None) -> torch.Tensor:
    """dL/dW of a Linear run under float16 autocast, L = 1e-8 · Σ output (unscaled at the end)."""
    layer = nn.Linear(x.shape[1], 2).to(x.device)
    with torch.autocast(x.device.type, dtype=torch.float16):
        out = layer(x.float())
    loss = out.float().sum() * 1e-8
    (loss * (scale or 1.0)).backward()
    return layer.weight.grad.double() / (scale or 1.0)


exact = (inputs.sum(0) * 1e-8).expand(2, 3)  # d(1e-8 Σ Wx + b)/dW, in float64
check(
    torch.equal(float16_weight_grad(inputs, None), torch.zeros_like(exact)),
    "unscaled, the float16 gradient is all zeros",
)
check(
    torch.allclose(float16_weight_grad(inputs, 2.0**16), exact, rtol=1e-2, atol=0),
    "scaled by 2¹⁶ it survives: within 1 % of the float64 gradient",
)

# %% [markdown]
# The three rules, on a float64 model so every number can be compared exactly (powers of
# two scale exactly). Clip the *real* gradient to norm 1: `unscale_` first.


# %%
def scaled_step(model, scaler, optimizer, loss, max_norm=None) -> torch.Tensor | None:
    """One GradScaler step; returns the gradient norm clipping saw (None without clipping)."""
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    seen = None
    if max_norm is not None:
        seen = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()
    return seen


torch.manual_seed(SEED)
net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(**f64)
reference = torch.autograd.grad(loss_of(net, inputs), list(net.parameters()))
true_norm = torch.cat([g.flatten() for g in reference]).norm()
scaler = torch.amp.GradScaler(amp_device, init_scale=2.0**10, growth_interval=3)
optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: look at the gradients only
loss = loss_of(net, inputs)
check(torch.equal(scaler.scale(loss), loss * 2.0**10), "scale(loss) = loss · 2¹⁰")
seen = scaled_step(net, scaler, optimizer, loss, max_norm=1.0)
clipped = torch.cat([p.grad.flatten() for p in net.parameters()]).norm()
print(f"true gradient norm {true_norm:.4f}; clipping saw {seen:.4f}; after clipping {clipped:.4f}")
check(
    torch.allclose(seen, true_norm),
    "unscale_ before clipping: the clip sees the true gradient norm",
)
check(torch.allclose(clipped, torch.ones((), **f64)), "… and clips it to norm 1")

# %% [markdown]
# Now `SCALER_STEPS` real steps, with an `inf` in the gradients at steps 4, 5 and 9 (an
# overflow, as float16 produces). The oracle is the rule itself, written out: halve on inf
# and skip; double after `growth_interval` (3) finite steps in a row.


# %%
OVERFLOW_STEPS = (4, 5, 9)  # steps whose input holds an inf, so do their gradients


def scaler_run(x: torch.Tensor, steps: int, lr: float = 0.1) -> tuple[list, list]:
    """(scale before each step, whether the parameters moved)."""
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(x)
    scaler = torch.amp.GradScaler(x.device.type, init_scale=2.0**10, growth_interval=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scales, moved = [], []
    for step in range(steps):
        blowup = float("inf") if step in OVERFLOW_STEPS else 1.0
        before = [p.detach().clone() for p in model.parameters()]
        scales.append(scaler.get_scale())
        scaled_step(model, scaler, optimizer, loss_of(model, x * blowup))
        moved.append(
            any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        )
    return scales, moved


def expected_scales(steps: int, start: float = 2.0**10, interval: int = 3) -> list:
    """GradScaler's documented rule, by hand."""
    scales, scale, good = [], start, 0
    for step in range(steps):
        scales.append(scale)
        if step in OVERFLOW_STEPS:
            scale, good = scale * 0.5, 0
        else:
            good += 1
            if good == interval:
                scale, good = scale * 2.0, 0
    return scales


scales, moved = scaler_run(inputs, SCALER_STEPS)
for step, (scale, took) in enumerate(zip(scales, moved, strict=True)):
    lesson.writer.add_scalar("grad_scaler/scale", scale, step)
    print(f"step {step:2d}: scale {scale:7.0f}  {'step taken' if took else 'skipped (inf)'}")
check(
    scales == expected_scales(SCALER_STEPS), "the scale halves on inf, doubles after 3 good steps"
)
check(
    moved == [step not in OVERFLOW_STEPS for step in range(SCALER_STEPS)],
    "steps with inf are skipped, the others taken",
)

fig, ax = plt.subplots(figsize=(7, 3))
ax.step(range(SCALER_STEPS), scales, where="post", label="scale")
skipped = [step for step, took in enumerate(moved) if not took]
ax.plot(skipped, [scales[step] for step in skipped], "rx", markersize=10, label="inf: step skipped")
ax.set(title="GradScaler's scale", xlabel="optimizer step", ylabel="scale")
ax.set_yscale("log", base=2)
ax.legend()
fig.tight_layout()
show(fig, "grad_scaler_scale")

# %% [markdown]
# ## What to take away
#
# - `detect_anomaly` names the backward op that produced a NaN and shows where its forward
#   ran; the fix is a formula that never computes the huge number (softplus with `−|x|`,
#   log-sum-exp minus the max) — `torch.where` around an unsafe branch is not a fix.
# - Per-layer gradient norms show vanishing (sigmoid: ≤ ¼ per layer) and exploding gradients;
#   residual connections and normalization keep them in range.
# - `gradgradcheck` tests double backward; `@once_differentiable` makes a second derivative
#   fail loudly. `enable_grad` works inside `no_grad`, not inside `inference_mode`.
# - Multi-grad hooks fire once for a group; post-accumulate hooks can step the optimizer
#   inside backward (remove them afterwards). `GradScaler`: unscale before clipping; inf
#   skips the step and halves the scale.

# %%
lesson.done()
