# %% [markdown]
# # 07 · Custom autograd Functions
#
# When an operation is not built from differentiable PyTorch ops — or when we want a
# *different* gradient than the true one — we write a `torch.autograd.Function`: a static
# `forward` that computes the output, and a static `backward` that receives `dL/d output`
# and returns one `dL/d input` per input of `forward` (`None` for inputs that need none).
# We call it through `.apply(...)`, never by instantiating it.
#
# Every Function here is checked with `torch.autograd.gradcheck` in float64: it compares our
# `backward` with central-difference derivatives of `forward`.

# %% tags=["parameters"]
STEPS = 40  # gradient steps when learning signs through sign(w)
LR = 0.05  # learning rate of those steps
SEED = 7  # seed of the random inputs gradcheck gets

# %%
import matplotlib.pyplot as plt
import torch
from torch.autograd import gradcheck

from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device
f64 = {"dtype": torch.float64, "device": device}
gradchecks = {}  # Function name -> did gradcheck pass; logged at the end

# %% [markdown]
# ## A custom ReLU, and what happens at the kink
#
# ReLU has no derivative at `x = 0`; any value in [0, 1] is a valid subgradient. The
# built-in `torch.relu` uses **0** there, so our `backward` masks with `x > 0` (not `>=`) to
# match it — the same input then gets the same gradient whichever ReLU a model uses.
# `ctx.save_for_backward` keeps the input for `backward` (and lets autograd detect
# in-place modification of it).


# %%
class MyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_output * (x > 0).to(grad_output.dtype)


def input_gradient(op, x: torch.Tensor) -> torch.Tensor:
    """d(sum op(x))/dx — the gradient each element of x receives."""
    x = x.detach().clone().requires_grad_(True)
    op(x).sum().backward()
    return x.grad


def random_input(generator: torch.Generator, *shape: int, device="cpu") -> torch.Tensor:
    """Seeded float64 input that requires grad — what gradcheck wants."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device).requires_grad_()


kink = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], **f64)
mine, builtin = input_gradient(MyReLU.apply, kink), input_gradient(torch.relu, kink)
print("x               ", kink.tolist())
print("MyReLU grad     ", mine.tolist())
print("torch.relu grad ", builtin.tolist())
check(torch.equal(MyReLU.apply(kink), torch.relu(kink)), "MyReLU's output equals torch.relu")
check(torch.equal(mine, builtin), "MyReLU's gradient equals torch.relu's, also at x = 0")
check(mine[2].item() == 0.0, "at exactly x = 0 the gradient is 0 (the built-in convention)")
generator = torch.Generator().manual_seed(SEED)
gradchecks["MyReLU"] = gradcheck(
    MyReLU.apply, (random_input(generator, 6, device=device),), raise_exception=False
)
check(gradchecks["MyReLU"], "gradcheck passes for MyReLU (random points, away from 0)")

# %% [markdown]
# ## A straight-through estimator (STE)
#
# `sign(x)` is flat almost everywhere, so its true gradient is 0 and nothing upstream of it
# can learn. An STE keeps `sign` in the forward pass but, in the backward pass, pretends the
# forward was `hardtanh(x)` (identity on (−1, 1), flat outside): gradients flow through
# where |x| < 1. It is deliberately *not* the derivative of the forward, so gradcheck must
# reject it — a useful reminder of what gradcheck tests.


# %%
class SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # hardtanh's own convention: 0 at exactly ±1.
        return grad_output * ((x > -1) & (x < 1)).to(grad_output.dtype)


points = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], **f64)
ste = input_gradient(SignSTE.apply, points)
true = input_gradient(torch.sign, points)
hardtanh = input_gradient(torch.nn.functional.hardtanh, points)
print("x              ", points.tolist())
print("STE grad       ", ste.tolist())
print("hardtanh grad  ", hardtanh.tolist())
print("true sign grad ", true.tolist())
check(torch.equal(SignSTE.apply(points), torch.sign(points)), "the STE's forward is sign(x)")
check(
    torch.equal(true, torch.zeros_like(points)),
    "autograd's gradient of sign is 0 everywhere (0 wherever the derivative exists)",
)
check(torch.equal(ste, hardtanh), "the STE's gradient is hardtanh's gradient, at ±1 too")
generator = torch.Generator().manual_seed(SEED)
gradchecks["SignSTE"] = gradcheck(
    SignSTE.apply, (random_input(generator, 6, device=device),), raise_exception=False
)
check(
    not gradchecks["SignSTE"],
    "gradcheck rejects the STE: its backward is not the forward's derivative",
)

# %% [markdown]
# ## Forward and backward, as curves
#
# Top: what each Function computes. Bottom: the gradient its `backward` hands back for an
# upstream gradient of 1. ReLU's gradient is the step `1[x > 0]`; the STE's is the box
# `1[|x| < 1]` — the slope of hardtanh (dotted, top right) — while the true derivative of
# `sign` (dashed) is 0: nothing to learn from.

# %%
grid = torch.linspace(-2.0, 2.0, 401, **f64)
curves = {
    "MyReLU": (MyReLU.apply(grid), input_gradient(MyReLU.apply, grid)),
    "SignSTE": (SignSTE.apply(grid), input_gradient(SignSTE.apply, grid)),
}
fig, axes = plt.subplots(2, 2, figsize=(8, 4.8), sharex=True)
xs = grid.cpu().numpy()
for column, (name, (forward, backward)) in enumerate(curves.items()):
    axes[0, column].plot(xs, forward.detach().cpu().numpy(), color="tab:blue")
    axes[0, column].set(title=f"{name}: forward")
    axes[1, column].plot(xs, backward.cpu().numpy(), color="tab:orange", label="our backward")
    axes[1, column].set(title=f"{name}: backward (dL/dx for dL/dy = 1)", xlabel="x")
hardtanh_curve = torch.nn.functional.hardtanh(grid).cpu().numpy()
axes[0, 1].plot(xs, hardtanh_curve, "k:", label="hardtanh: what backward pretends")
axes[0, 1].legend(fontsize=8)
axes[1, 1].plot(xs, input_gradient(torch.sign, grid).cpu().numpy(), "k--", label="true d sign/dx")
axes[1, 1].legend(fontsize=8)
fig.tight_layout()
show(fig, "relu_and_ste_curves")
check(
    torch.equal(curves["MyReLU"][1], (grid > 0).to(grid.dtype)),
    "MyReLU's backward curve is the step 1[x > 0]",
)
check(
    torch.equal(curves["SignSTE"][1], (grid.abs() < 1).to(grid.dtype)),
    "the STE's backward curve is the box 1[|x| < 1]",
)

# %% [markdown]
# ## What the STE buys: learning through `sign`
#
# Learn `w` so that `sign(w)` matches a ±1 target. With the true gradient (0) `w` never
# moves; with the STE the gradient flows while |w| < 1 and every sign flips into place.
# Both losses go to TensorBoard (`ste/loss`, `true_gradient/loss`).


# %%
def fit_signs(
    target: torch.Tensor, quantize, steps: int = 40, lr: float = 0.05, writer=None, tag: str = "ste"
) -> tuple[list[float], torch.Tensor]:
    """Learn w so that quantize(w) matches ±1 targets; returns the loss per step and w."""
    w = (
        0.1 * torch.linspace(-1.0, 1.0, target.numel(), dtype=target.dtype, device=target.device)
    ).requires_grad_(True)
    losses = []
    for step in range(steps):
        loss = ((quantize(w) - target) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= lr * grad
        losses.append(loss.item())
        if writer is not None:
            writer.add_scalar(f"{tag}/loss", loss.item(), step)
    return losses, w.detach()


target = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0], **f64)
ste_losses, _ = fit_signs(target, SignSTE.apply, STEPS, LR, writer=lesson.writer, tag="ste")
true_losses, _ = fit_signs(target, torch.sign, STEPS, LR, lesson.writer, tag="true_gradient")
print(f"STE:           loss {ste_losses[0]:.3f} → {ste_losses[-1]:.3f}")
print(f"true gradient: loss {true_losses[0]:.3f} → {true_losses[-1]:.3f}")
check(ste_losses[-1] == 0.0, "with the STE, sign(w) learns every target sign")
check(true_losses[-1] == true_losses[0] > 0, "with the true (zero) gradient, nothing learns")
# The end point alone could hide a wrong step. The first, by hand: where sign(w) is wrong,
# dL/dw = 2(sign(w) − t)/N = −2t·2/N passes the STE (|w| < 1): w moves lr·4/N towards t.
w0 = 0.1 * torch.linspace(-1.0, 1.0, target.numel(), **f64)
wrong = (torch.sign(w0) != target).to(w0.dtype)
_, w1 = fit_signs(target, SignSTE.apply, 1, LR)
check(
    torch.allclose(w1, w0 + LR * 4 / target.numel() * target * wrong),
    "the first STE step moves each wrong-signed w by lr·4/N towards its target, the rest not",
)

# %% [markdown]
# ## Several inputs, and `setup_context` instead of `ctx` in `forward`
#
# A linear layer `y = x Wᵀ + b` has three inputs, so `backward` returns three gradients:
# `dL/dx = g W`, `dL/dW = gᵀ x`, `dL/db = Σ g`. `ctx.needs_input_grad` tells which are
# wanted, so we skip the rest (returning `None`). This one uses the newer split: `forward`
# without `ctx`, and `setup_context` to save what `backward` needs.


# %%
class MyLinear(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return x @ weight.T + bias

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output @ weight
        if ctx.needs_input_grad[1]:
            grad_w = grad_output.T @ x
        if ctx.needs_input_grad[2]:
            grad_b = grad_output.sum(0)
        return grad_x, grad_w, grad_b


generator = torch.Generator().manual_seed(SEED)
x, weight, bias = (
    random_input(generator, *shape, device=device) for shape in ((5, 3), (2, 3), (2,))
)
out = MyLinear.apply(x, weight, bias)
print("MyLinear(x: 5×3, W: 2×3, b: 2) →", tuple(out.shape))
check(
    torch.allclose(out, torch.nn.functional.linear(x, weight, bias)),
    "MyLinear's output equals nn.functional.linear",
)
gradchecks["MyLinear"] = gradcheck(MyLinear.apply, (x, weight, bias), raise_exception=False)
check(gradchecks["MyLinear"], "gradcheck passes for MyLinear's three input gradients")
frozen_weight = weight.detach()
grad_x, grad_b = torch.autograd.grad(MyLinear.apply(x, frozen_weight, bias).sum(), (x, bias))
check(
    torch.allclose(grad_x, frozen_weight.sum(0).expand_as(x)),
    "with a weight that needs no grad, dL/dx = Σ rows of W is still right",
)
check(torch.allclose(grad_b, torch.full_like(bias, 5.0)), "… and dL/db = 5 (five rows of x)")
# For a Function, out.grad_fn is the ctx backward() receives: ask it what it was told.
out = MyLinear.apply(x, frozen_weight, bias)
skipped = MyLinear.backward(out.grad_fn, torch.ones_like(out))
print(
    f"needs_input_grad = {out.grad_fn.needs_input_grad}; W's gradient from backward: {skipped[1]}"
)
check(
    out.grad_fn.needs_input_grad == (True, False, True) and skipped[1] is None,
    "needs_input_grad says W needs no gradient, and backward skips it (returns None)",
)

# %% [markdown]
# ## `torch.func` needs `setup_context` — and `vmap` needs more
#
# The `torch.func` transforms (`grad`, `jacrev`, `vmap`, …) only accept a Function whose
# `forward` has no `ctx`, i.e. one with a `setup_context`: `torch.func.grad` over `MyLinear`
# works, over `MyReLU` it raises. That is *necessary but not sufficient* for `vmap`: it
# must also know how to batch the Function — either `generate_vmap_rule = True` (torch
# derives the rule by running `forward`/`backward` on batched tensors, which works when they
# use only PyTorch ops) or a hand-written `vmap` staticmethod. `MyLinear` has neither, so
# `vmap` over it raises; one line fixes that.


# %%
class BatchedLinear(MyLinear):
    """MyLinear plus a vmap rule: torch.func.vmap may now batch it."""

    generate_vmap_rule = True


def error_of(operation) -> str | None:
    """None when the operation runs, else the first sentence of the error it raises."""
    try:
        operation()
    except RuntimeError as exc:
        return str(exc).split(". ")[0]
    return None


def per_sample_weight_grads(function, x, weight, bias) -> torch.Tensor:
    """d(‖function(xᵢ, W, b)‖²)/dW for every sample xᵢ at once: vmap over torch.func.grad."""

    def loss(w, sample):
        return (function.apply(sample[None], w, bias) ** 2).sum()

    return torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(weight, x)


generator = torch.Generator().manual_seed(SEED)
x, weight, bias = (
    random_input(generator, *shape, device=device).detach() for shape in ((5, 3), (2, 3), (2,))
)
failures = {
    "func.grad(MyLinear)": error_of(
        lambda: torch.func.grad(lambda w: MyLinear.apply(x, w, bias).sum())(weight)
    ),
    "func.grad(MyReLU)": error_of(lambda: torch.func.grad(lambda t: MyReLU.apply(t).sum())(x)),
    "func.vmap(MyLinear)": error_of(
        lambda: torch.func.vmap(MyLinear.apply, in_dims=(0, None, None))(x, weight, bias)
    ),
    "func.vmap(BatchedLinear)": error_of(
        lambda: torch.func.vmap(BatchedLinear.apply, in_dims=(0, None, None))(x, weight, bias)
    ),
}
for name, failure in failures.items():
    print(f"{name:<25} {'works' if failure is None else 'RuntimeError: ' + failure}")
check(
    failures["func.grad(MyLinear)"] is None,
    "torch.func.grad works over a Function with setup_context",
)
check(
    "must override the setup_context" in (failures["func.grad(MyReLU)"] or ""),
    "torch.func.grad over MyReLU (ctx in forward) raises: setup_context is required",
)
check(
    "does not have vmap support" in (failures["func.vmap(MyLinear)"] or ""),
    "torch.func.vmap over MyLinear raises: setup_context alone is not enough",
)
check(
    failures["func.vmap(BatchedLinear)"] is None, "with generate_vmap_rule = True, vmap accepts it"
)

# %% [markdown]
# What vmap buys: per-sample gradients in one call, here `d‖W xᵢ + b‖²/dW` for each of the
# five samples — checked against a plain loop over the samples with `torch.autograd.grad`
# on the built-in `linear`.


# %%
def looped_weight_grads(x, weight, bias) -> torch.Tensor:
    """The same per-sample gradients, one autograd.grad per sample on the built-in linear."""
    grads = []
    for sample in x:
        w = weight.detach().clone().requires_grad_()
        loss = (torch.nn.functional.linear(sample[None], w, bias) ** 2).sum()
        grads.append(torch.autograd.grad(loss, w)[0])
    return torch.stack(grads)


per_sample = per_sample_weight_grads(BatchedLinear, x, weight, bias)
loop = looped_weight_grads(x, weight, bias)
print("per-sample gradients:", tuple(per_sample.shape), "(samples, *W.shape)")
check(
    torch.allclose(per_sample, loop),
    "vmap(grad(·)) over BatchedLinear equals a loop of per-sample autograd.grad",
)

# %% [markdown]
# ## Non-tensor arguments
#
# `ScaledClamp(x, scale, low, high) = clamp(scale·x, low, high)`. The floats are not tensors
# and have no gradient: `backward` returns `None` in their places — one return value per
# `forward` argument. The kink convention again follows the built-in: `torch.clamp` passes
# gradient 0 at exactly `low` and `high` in this PyTorch, so we mask with strict inequalities.


# %%
class ScaledClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float, low: float, high: float) -> torch.Tensor:
        scaled = x * scale
        ctx.save_for_backward(scaled)
        ctx.scale, ctx.low, ctx.high = scale, low, high  # plain Python values go on ctx
        return scaled.clamp(low, high)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (scaled,) = ctx.saved_tensors
        inside = (scaled > ctx.low) & (scaled < ctx.high)
        grad_x = grad_output * ctx.scale * inside.to(grad_output.dtype)
        return grad_x, None, None, None


values = torch.tensor([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0], **f64)
mine = input_gradient(lambda t: ScaledClamp.apply(t, 2.0, -0.5, 1.0), values)
builtin = input_gradient(lambda t: torch.clamp(2.0 * t, -0.5, 1.0), values)
print("2x                ", (2 * values).tolist())
print("ScaledClamp grad  ", mine.tolist())
print("torch.clamp grad  ", builtin.tolist())
check(torch.equal(mine, builtin), "ScaledClamp's gradient equals torch.clamp's, at the bounds too")
generator = torch.Generator().manual_seed(SEED)
gradchecks["ScaledClamp"] = gradcheck(
    lambda t: ScaledClamp.apply(t, 2.0, -0.5, 1.0),
    (random_input(generator, 8, device=device),),
    raise_exception=False,
)
check(gradchecks["ScaledClamp"], "gradcheck passes for ScaledClamp (floats get None)")

# %% [markdown]
# ## The gradcheck scoreboard
#
# Logged as `gradcheck/<name>` (1 = passed, 0 = rejected — as the STE must be).

# %%
for name, passed in gradchecks.items():
    print(f"{name:<12} {'passed' if passed else 'rejected'}")
    lesson.writer.add_scalar(f"gradcheck/{name}", float(passed), 0)

# %% [markdown]
# ## What to take away
#
# - `backward` returns one gradient per `forward` input (`None` for non-tensors and for
#   inputs `ctx.needs_input_grad` says nobody wants).
# - Match the built-in's convention at kinks; check every Function with `gradcheck` in
#   float64 — and expect an STE to fail it on purpose.
# - For `torch.func`: `setup_context` is required; `vmap` also needs
#   `generate_vmap_rule = True` or a `vmap` staticmethod.

# %%
lesson.done()
