# %% [markdown]
# # 01 · Manual gradient: fitting y = 2x + 1 with the chain rule by hand
#
# Before autograd does it for us, we compute the gradient ourselves. The model is
# `y_hat = w * x + b`, the loss is the mean squared error
# `L = mean((y_hat - y)^2)`. By the chain rule:
#
# - `dL/dy_hat = 2 (y_hat - y) / N`
# - `dL/dw = sum(dL/dy_hat * x)`
# - `dL/db = sum(dL/dy_hat)`
#
# We check these hand-written gradients against `torch.autograd` (in float64), then use
# them for plain gradient descent and watch `w → 2`, `b → 1` in TensorBoard.

# %%
from __future__ import annotations

import torch

from lab.lessons.harness import LessonRun, run_main

# %% [markdown]
# ## The data: points on y = 2x + 1


# %%
def make_data(
    n: int = 64, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)
    return x, 2.0 * x + 1.0


# %% [markdown]
# ## Forward pass and the gradient written by hand


# %%
def mse_loss(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((w * x + b - y) ** 2).mean()


def manual_gradients(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dw and dL/db by the chain rule, no autograd involved."""
    d_yhat = 2.0 * (w * x + b - y) / x.numel()
    return (d_yhat * x).sum(), d_yhat.sum()


# %% [markdown]
# ## Is the hand-written gradient right? Ask autograd.


# %%
def autograd_gradients(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    w = w.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    mse_loss(w, b, x, y).backward()
    return w.grad, b.grad


# %% [markdown]
# ## Gradient descent with the manual gradient


# %%
def fit(
    x: torch.Tensor, y: torch.Tensor, lr: float = 0.1, steps: int = 200, writer=None
) -> tuple[float, float, float]:
    """Plain gradient descent; logs loss, w and b after each update."""
    w = torch.zeros((), dtype=x.dtype, device=x.device)
    b = torch.zeros((), dtype=x.dtype, device=x.device)
    for step in range(steps):
        grad_w, grad_b = manual_gradients(w, b, x, y)
        w = w - lr * grad_w
        b = b - lr * grad_b
        loss = mse_loss(w, b, x, y)  # measured after the update, as logged
        if writer is not None:
            writer.add_scalar("loss", loss.item(), step)
            writer.add_scalar("params/w", w.item(), step)
            writer.add_scalar("params/b", b.item(), step)
    return w.item(), b.item(), loss.item()


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    x, y = make_data(device=run.device)
    w0 = torch.tensor(0.3, dtype=torch.float64, device=run.device)
    b0 = torch.tensor(-0.7, dtype=torch.float64, device=run.device)
    manual = manual_gradients(w0, b0, x, y)
    auto = autograd_gradients(w0, b0, x, y)
    print(f"manual dL/dw={manual[0].item():.6f} dL/db={manual[1].item():.6f}")
    print(f"auto   dL/dw={auto[0].item():.6f} dL/db={auto[1].item():.6f}")
    run.check(
        all(torch.allclose(m, a) for m, a in zip(manual, auto, strict=True)),
        "the chain-rule gradient equals autograd's (float64)",
    )

    w, b, loss = fit(x, y, writer=run.writer)
    print(f"after 200 steps: w={w:.4f} b={b:.4f} loss={loss:.2e}")
    run.check(abs(w - 2.0) < 1e-3 and abs(b - 1.0) < 1e-3, "gradient descent recovers w = 2, b = 1")


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("01_manual_gradient", run_lesson, argv)


# %%
if __name__ == "__main__":
    main()
