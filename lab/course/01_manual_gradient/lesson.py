# %% [markdown]
# # 01 · Manual gradient: fitting y = 2x + 1 with the chain rule by hand
#
# Before autograd does it for us, we compute a gradient ourselves, check it against
# `torch.autograd`, and then use it to fit a line. Run the cells one at a time
# (Shift+Enter); each one shows what it did. Change a setting below and re-run from there.

# %% tags=["parameters"]
POINTS = 64  # data points on the line
STEPS = 200  # gradient-descent steps
LR = 0.1  # learning rate

# %%
import matplotlib.pyplot as plt
import torch

from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## The data: points on y = 2x + 1
#
# float64 throughout: we are going to compare two ways of computing the same gradient, and
# want the comparison to be about the maths, not rounding.


# %%
def make_data(n: int, device="cpu", dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)
    return x, 2.0 * x + 1.0


x, y = make_data(POINTS, device)
print("x[:4] =", x[:4].tolist())
print("y[:4] =", y[:4].tolist())

# %% [markdown]
# ## The model and its loss
#
# `y_hat = w * x + b`, and the mean squared error `L = mean((y_hat - y)^2)`.


# %%
def mse_loss(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((w * x + b - y) ** 2).mean()


w0 = torch.tensor(0.3, dtype=torch.float64, device=device)
b0 = torch.tensor(-0.7, dtype=torch.float64, device=device)
print(f"L(w={w0.item()}, b={b0.item()}) = {mse_loss(w0, b0, x, y).item():.6f}")

# %% [markdown]
# ## The gradient, by hand
#
# The chain rule through `y_hat`:
#
# - `dL/dy_hat = 2 (y_hat - y) / N`
# - `dL/dw = Σ dL/dy_hat · x`  (since `dy_hat/dw = x`)
# - `dL/db = Σ dL/dy_hat`      (since `dy_hat/db = 1`)


# %%
def manual_gradients(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dw and dL/db by the chain rule, no autograd involved."""
    d_yhat = 2.0 * (w * x + b - y) / x.numel()
    return (d_yhat * x).sum(), d_yhat.sum()


manual_w, manual_b = manual_gradients(w0, b0, x, y)
print(f"by hand:  dL/dw = {manual_w.item():.6f}   dL/db = {manual_b.item():.6f}")

# %% [markdown]
# ## Is it right? Ask autograd.
#
# Mark `w` and `b` with `requires_grad=True`, compute the same loss, call `backward()`, and
# read `.grad`. Autograd is our oracle: if the two disagree, our chain rule is wrong.


# %%
def autograd_gradients(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    w = w.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    mse_loss(w, b, x, y).backward()
    return w.grad, b.grad


auto_w, auto_b = autograd_gradients(w0, b0, x, y)
print(f"autograd: dL/dw = {auto_w.item():.6f}   dL/db = {auto_b.item():.6f}")
check(torch.allclose(manual_w, auto_w), "dL/dw by the chain rule equals autograd's (float64)")
check(torch.allclose(manual_b, auto_b), "dL/db by the chain rule equals autograd's (float64)")

# %% [markdown]
# ## Gradient descent with our own gradient
#
# Step against the gradient: `w ← w − lr · dL/dw`, `b ← b − lr · dL/db`. The loss and the
# parameters go to TensorBoard (`loss`, `params/w`, `params/b`) after every step.


# %%
def fit(x, y, lr: float, steps: int, writer=None) -> tuple[float, float, list[float]]:
    """Plain gradient descent from w = b = 0; returns w, b and the loss after each step."""
    w = torch.zeros((), dtype=x.dtype, device=x.device)
    b = torch.zeros((), dtype=x.dtype, device=x.device)
    losses = []
    for step in range(steps):
        grad_w, grad_b = manual_gradients(w, b, x, y)
        w = w - lr * grad_w
        b = b - lr * grad_b
        losses.append(mse_loss(w, b, x, y).item())  # measured after the update, as logged
        if writer is not None:
            writer.add_scalar("loss", losses[-1], step)
            writer.add_scalar("params/w", w.item(), step)
            writer.add_scalar("params/b", b.item(), step)
    return w.item(), b.item(), losses


w, b, losses = fit(x, y, LR, STEPS, writer=lesson.writer)
print(f"after {STEPS} steps: w = {w:.4f}, b = {b:.4f}, loss = {losses[-1]:.2e}")
check(abs(w - 2.0) < 1e-3 and abs(b - 1.0) < 1e-3, "gradient descent recovers w = 2, b = 1")
# The end point alone could hide a wrong step; the first one, by hand: at w = b = 0,
# dL/dw = −(2/N)·Σ y·x and dL/db = −(2/N)·Σ y.
w1, b1, _ = fit(x, y, LR, steps=1)
by_hand = (LR * 2 / POINTS * (y * x).sum().item(), LR * 2 / POINTS * y.sum().item())
print(
    f"first step: w = {w1:.6f}, b = {b1:.6f}; by hand: w = {by_hand[0]:.6f}, b = {by_hand[1]:.6f}"
)
check(
    abs(w1 - by_hand[0]) < 1e-12 and abs(b1 - by_hand[1]) < 1e-12,
    "the first step from w = b = 0 is w = lr·(2/N)·Σ y·x, b = lr·(2/N)·Σ y (float64)",
)

# %% [markdown]
# ## Look at it
#
# Left: the loss falls geometrically (a straight line on a log scale) — the hallmark of
# gradient descent on a quadratic. Right: the fitted line over the data.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
left.semilogy(losses)
left.set(title="loss per step", xlabel="step", ylabel="MSE (log scale)")
right.scatter(x.cpu(), y.cpu(), s=8, label="data", color="tab:gray")
right.plot(x.cpu(), (w * x + b).cpu(), color="tab:red", label=f"fit: {w:.3f}x + {b:.3f}")
right.set(title="the fitted line", xlabel="x", ylabel="y")
right.legend()
fig.tight_layout()
show(fig, "fit")
ratios = [later / earlier for earlier, later in zip(losses, losses[1:], strict=False)]
print(f"loss ratio per step: first {ratios[0]:.4f}, last {ratios[-2]:.6f}, {ratios[-1]:.6f}")
check(all(r < 1 for r in ratios), "the loss falls at every step")
check(
    abs(ratios[-1] - ratios[-2]) < 1e-6,
    "late in the run each step shrinks the loss by the same factor: a straight line on a log scale",
)

# %% [markdown]
# ## What to take away
#
# - A gradient is the chain rule applied backwards through the computation.
# - `torch.autograd` computes exactly what we wrote by hand — which is what the next lesson
#   lets it do for us.

# %%
lesson.done()
