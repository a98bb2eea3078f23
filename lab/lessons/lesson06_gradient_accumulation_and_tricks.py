# %% [markdown]
# # 06 · Gradient accumulation, clipping, gradient checks and frozen parameters
#
# Five tools every training loop uses, each verified as we go (float64):
#
# 1. **Accumulation** — `backward()` adds into `.grad`, so k micro-batches can stand in for
#    one big batch when each micro-batch loss is weighted by its share of the batch.
# 2. **Clipping** — `clip_grad_norm_` rescales all gradients together so their total norm is
#    at most `max_norm` (it returns the norm measured *before* clipping);
#    `clip_grad_value_` clamps each element.
# 3. **Numerical gradient check** — central differences `(f(x+h) − f(x−h)) / 2h`.
# 4. **`torch.autograd.gradcheck`** — the same idea, done thoroughly by PyTorch.
# 5. **Freezing** — `requires_grad_(False)` keeps a parameter out of the backward pass.

# %%
from __future__ import annotations

import torch
from torch import nn

from lab.lessons.harness import LessonRun, run_main

# %% [markdown]
# ## A small model and data


# %%
def make_model(device: str | torch.device = "cpu", seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).to(device, torch.float64)


def make_data(
    n: int = 32, device: str | torch.device = "cpu", seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=torch.float64) + 0.1
    return x.to(device), y.to(device)


def gradients(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


# %% [markdown]
# ## 1 · Accumulation equals the big batch
#
# The big-batch loss is the mean over N samples. A micro-batch of size `bᵢ` has mean loss
# `Lᵢ`; weighting it by `bᵢ / N` makes the weighted sum equal the big-batch mean, so the
# accumulated gradient is identical (with k equal micro-batches the weight is `1/k`).
# Forget the weight and the gradient comes out k times too large.


# %%
def big_batch_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    nn.functional.mse_loss(model(x), y).backward()
    return gradients(model)


def accumulated_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batch: int, scale: bool = True
) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    for xs, ys in zip(x.split(micro_batch), y.split(micro_batch), strict=True):
        loss = nn.functional.mse_loss(model(xs), ys)
        weight = len(xs) / len(x) if scale else 1.0
        (loss * weight).backward()  # adds into .grad
    return gradients(model)


# %% [markdown]
# ## 2 · Clipping
#
# The total norm is the 2-norm of all gradients concatenated. If it exceeds `max_norm`
# every gradient is multiplied by `max_norm / (total + 1e-6)`: the direction is kept.


# %%
def total_grad_norm(parameters) -> float:
    return torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in parameters)).item()


# %% [markdown]
# ## 3 · Numerical gradient by central differences
#
# The error of central differences is O(h²) plus rounding ~ε/h; in float64 (ε ≈ 1e-16)
# `h = 1e-6` keeps both tiny. In float32 the same h would be swamped by rounding.


# %%
def numerical_gradient(func, x: torch.Tensor, step: float = 1e-6) -> torch.Tensor:
    x = x.detach().clone()
    grad = torch.zeros_like(x)
    flat_x, flat_grad = x.view(-1), grad.view(-1)
    for i in range(flat_x.numel()):
        original = flat_x[i].item()
        flat_x[i] = original + step
        plus = func(x).item()
        flat_x[i] = original - step
        minus = func(x).item()
        flat_x[i] = original
        flat_grad[i] = (plus - minus) / (2 * step)
    return grad


def autograd_gradient(func, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(func(x), x)
    return grad


# %% [markdown]
# ## 5 · Freezing parameters
#
# A frozen parameter gets no `.grad` (it stays `None`), and optimizers skip parameters whose
# `.grad` is `None` — so it is left exactly as it was, momentum or not. (A parameter frozen
# *after* training still holds its old `.grad`: clear it with `p.grad = None`, otherwise
# SGD's momentum and weight decay keep moving it.)


# %%
def train_step_with_frozen_first_layer(
    model: nn.Sequential, x: torch.Tensor, y: torch.Tensor
) -> None:
    model[0].requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.zero_grad(set_to_none=True)
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()


# %% [markdown]
# ## Putting it together: accumulate, clip, step — and log the gradient norms
#
# The order matters: clip once the accumulation is complete, just before `optimizer.step()`.
# We log the norm before clipping (what `clip_grad_norm_` returns) and after it (measured
# again, after clipping).


# %%
def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 40,
    lr: float = 0.1,
    micro_batch: int = 8,
    max_norm: float = 1.0,
    writer=None,
) -> list[tuple[float, float]]:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    norms = []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        total_loss = 0.0
        for xs, ys in zip(x.split(micro_batch), y.split(micro_batch), strict=True):
            loss = nn.functional.mse_loss(model(xs), ys) * (len(xs) / len(x))
            loss.backward()
            total_loss += loss.item()
        pre = nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
        post = total_grad_norm(model.parameters())
        optimizer.step()
        norms.append((pre, post))
        if writer is not None:
            writer.add_scalar("loss", total_loss, step)
            writer.add_scalar("grad_norm/pre_clip", pre, step)
            writer.add_scalar("grad_norm/post_clip", post, step)
    return norms


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    x, y = make_data(device=run.device)
    model = make_model(run.device)

    big = big_batch_gradient(model, x, y)
    accumulated = accumulated_gradient(model, x, y, micro_batch=8)
    run.check(
        all(torch.allclose(a, b) for a, b in zip(accumulated, big, strict=True)),
        "4 micro-batches of 8, losses weighted 1/4, give the 32-sample gradient",
    )
    uneven = accumulated_gradient(model, x, y, micro_batch=12)  # sizes 12, 12, 8
    run.check(
        all(torch.allclose(a, b) for a, b in zip(uneven, big, strict=True)),
        "uneven micro-batches (12, 12, 8) weighted by size/N give it too",
    )
    unscaled = accumulated_gradient(model, x, y, micro_batch=8, scale=False)
    run.check(
        all(torch.allclose(a, 4 * b) for a, b in zip(unscaled, big, strict=True)),
        "without the weight the accumulated gradient is 4× too large",
    )

    big_batch_gradient(model, x, y)
    before = gradients(model)
    norm_before = total_grad_norm(model.parameters())
    max_norm = norm_before / 2
    returned = nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
    norm_after = total_grad_norm(model.parameters())  # measured after clipping
    print(f"total norm {norm_before:.4f}; clipped to {max_norm:.4f}; after: {norm_after:.4f}")
    run.check(
        abs(returned - norm_before) < 1e-12,
        "clip_grad_norm_ returns the total norm from before clipping",
    )
    run.check(norm_after <= max_norm, "after clipping the total norm is ≤ max_norm")
    ratio = max_norm / (norm_before + 1e-6)
    run.check(
        all(
            torch.allclose(p.grad, g * ratio)
            for p, g in zip(model.parameters(), before, strict=True)
        ),
        "clipping rescales every gradient by the same factor (direction kept)",
    )
    nn.utils.clip_grad_value_(model.parameters(), clip_value=0.05)
    run.check(
        all(p.grad.abs().max() <= 0.05 for p in model.parameters()),
        "after clip_grad_value_(0.05) every element lies in [-0.05, 0.05]",
    )

    weight = model[0].weight.detach()

    def loss_of_weight(w):
        hidden = torch.tanh(x @ w.T + model[0].bias.detach())
        return nn.functional.mse_loss(model[2](hidden), y)

    numeric = numerical_gradient(loss_of_weight, weight)
    exact = autograd_gradient(loss_of_weight, weight)
    error = (numeric - exact).abs().max().item()
    print(f"central differences vs autograd: max abs difference {error:.2e}")
    run.check(error < 1e-7, "central differences (h = 1e-6, float64) match autograd")
    inputs = torch.randn(3, 4, dtype=torch.float64, device=run.device, requires_grad=True)
    run.check(
        torch.autograd.gradcheck(lambda t: model(t).sum(), (inputs,)),
        "torch.autograd.gradcheck passes for the model's input gradient (float64)",
    )

    frozen_model = make_model(run.device)
    frozen_before = [p.detach().clone() for p in frozen_model[0].parameters()]
    trainable_before = [p.detach().clone() for p in frozen_model[2].parameters()]
    train_step_with_frozen_first_layer(frozen_model, x, y)
    run.check(
        all(p.grad is None for p in frozen_model[0].parameters()),
        "frozen parameters get no gradient (.grad is None)",
    )
    run.check(
        all(
            torch.equal(p, q)
            for p, q in zip(frozen_model[0].parameters(), frozen_before, strict=True)
        ),
        "the optimizer leaves frozen parameters unchanged",
    )
    run.check(
        all(
            not torch.equal(p, q)
            for p, q in zip(frozen_model[2].parameters(), trainable_before, strict=True)
        ),
        "the unfrozen layer did change",
    )

    norms = train(make_model(run.device), x, y, writer=run.writer)
    run.check(
        all(post <= 1.0 for _, post in norms), "in training, every post-clip norm is ≤ max_norm = 1"
    )
    clipped = sum(pre > 1.0 for pre, _ in norms)
    print(f"clipping was active on {clipped} of {len(norms)} steps")
    run.check(0 < clipped < len(norms), "clipping was active on some steps and idle on others")
    run.check(
        all(abs(post - pre) < 1e-12 for pre, post in norms if pre <= 1.0),
        "once the norm is below max_norm, clipping leaves the gradients alone",
    )


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("06_gradient_accumulation_and_tricks", run_lesson, argv)


# %%
if __name__ == "__main__":
    main()
