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

# %%
from __future__ import annotations

import torch
from torch.autograd import gradcheck

from lab.lessons.harness import LessonRun, run_main

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


def fit_signs(
    target: torch.Tensor, quantize, steps: int = 40, lr: float = 0.05, writer=None, tag: str = "ste"
) -> list[float]:
    """Learn w so that quantize(w) matches ±1 targets; returns the loss per step."""
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
    return losses


# %% [markdown]
# ## Several inputs, and `setup_context` instead of `ctx` in `forward`
#
# A linear layer `y = x Wᵀ + b` has three inputs, so `backward` returns three gradients:
# `dL/dx = g W`, `dL/dW = gᵀ x`, `dL/db = Σ g`. `ctx.needs_input_grad` tells which are
# wanted, so we skip the rest (returning `None`). This one uses the newer split: `forward`
# without `ctx`, and `setup_context` to save what `backward` needs. The split is optional —
# `MyReLU` above does both in one `forward(ctx, ...)` — but `torch.func` transforms
# (grad, jacrev, vmap…) accept only Functions written this way.


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


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    f64 = {"dtype": torch.float64, "device": run.device}
    writer = run.writer
    generator = torch.Generator().manual_seed(7)

    def random(*shape):  # seeded, float64, requires grad — what gradcheck wants
        return (
            torch.randn(*shape, generator=generator, dtype=torch.float64)
            .to(run.device)
            .requires_grad_(True)
        )

    kink = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], **f64)
    mine, builtin = input_gradient(MyReLU.apply, kink), input_gradient(torch.relu, kink)
    print(
        f"x = {kink.tolist()}\n  MyReLU grad {mine.tolist()}\n  torch.relu grad {builtin.tolist()}"
    )
    run.check(
        torch.equal(MyReLU.apply(kink), torch.relu(kink)), "MyReLU's output equals torch.relu"
    )
    run.check(torch.equal(mine, builtin), "MyReLU's gradient equals torch.relu's, also at x = 0")
    run.check(mine[2].item() == 0.0, "at exactly x = 0 the gradient is 0 (the built-in convention)")
    passed = {"MyReLU": gradcheck(MyReLU.apply, (random(6),), raise_exception=False)}
    run.check(passed["MyReLU"], "gradcheck passes for MyReLU (away from 0)")

    points = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], **f64)
    ste = input_gradient(SignSTE.apply, points)
    true = input_gradient(torch.sign, points)
    hardtanh = input_gradient(torch.nn.functional.hardtanh, points)
    print(f"x = {points.tolist()}\n  STE grad {ste.tolist()}\n  true sign grad {true.tolist()}")
    run.check(
        torch.equal(SignSTE.apply(points), torch.sign(points)), "the STE's forward is sign(x)"
    )
    run.check(
        torch.equal(true, torch.zeros_like(points)),
        "autograd's gradient of sign is 0 everywhere (0 wherever the derivative exists)",
    )
    run.check(torch.equal(ste, hardtanh), "the STE's gradient is hardtanh's gradient")
    passed["SignSTE"] = gradcheck(SignSTE.apply, (random(6),), raise_exception=False)
    run.check(
        not passed["SignSTE"],
        "gradcheck rejects the STE: its backward is not the forward's derivative",
    )

    target = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0], **f64)
    ste_losses = fit_signs(target, SignSTE.apply, writer=writer, tag="ste")
    true_losses = fit_signs(target, torch.sign, writer=writer, tag="true_gradient")
    print(
        f"sign fit loss: STE {ste_losses[0]:.3f} → {ste_losses[-1]:.3f}, "
        f"true gradient {true_losses[0]:.3f} → {true_losses[-1]:.3f}"
    )
    run.check(ste_losses[-1] == 0.0, "with the STE, sign(w) learns every target sign")
    run.check(
        true_losses[-1] == true_losses[0] > 0, "with the true (zero) gradient, nothing learns"
    )

    x, weight, bias = random(5, 3), random(2, 3), random(2)
    run.check(
        torch.allclose(
            MyLinear.apply(x, weight, bias), torch.nn.functional.linear(x, weight, bias)
        ),
        "MyLinear's output equals nn.functional.linear",
    )
    passed["MyLinear"] = gradcheck(MyLinear.apply, (x, weight, bias), raise_exception=False)
    run.check(passed["MyLinear"], "gradcheck passes for MyLinear's three input gradients")
    frozen_weight = weight.detach()
    out = MyLinear.apply(x, frozen_weight, bias)
    (grad_x, grad_b) = torch.autograd.grad(out.sum(), (x, bias))
    run.check(
        torch.allclose(grad_x, frozen_weight.sum(0).expand_as(x))
        and torch.allclose(grad_b, torch.full_like(bias, 5.0)),
        "with a weight that needs no grad, dL/dx and dL/db are still right",
    )

    values = torch.tensor([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0], **f64)
    mine = input_gradient(lambda t: ScaledClamp.apply(t, 2.0, -0.5, 1.0), values)
    builtin = input_gradient(lambda t: torch.clamp(2.0 * t, -0.5, 1.0), values)
    print(f"2x = {(2 * values).tolist()}\n  ScaledClamp grad {mine.tolist()}")
    run.check(
        torch.equal(mine, builtin), "ScaledClamp's gradient equals torch.clamp's, at the bounds too"
    )
    passed["ScaledClamp"] = gradcheck(
        lambda t: ScaledClamp.apply(t, 2.0, -0.5, 1.0), (random(8),), raise_exception=False
    )
    run.check(passed["ScaledClamp"], "gradcheck passes for ScaledClamp (floats get None)")

    for name, ok in passed.items():  # 1 = passed, 0 = rejected (as the STE must be)
        writer.add_scalar(f"gradcheck/{name}", float(ok), 0)


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("07_custom_autograd_function", run_lesson, argv)


# %%
if __name__ == "__main__":
    main()
