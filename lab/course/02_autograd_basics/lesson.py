# %% [markdown]
# # 02 · Autograd basics: requires_grad, backward(), no_grad() and their pitfalls
#
# In lesson 01 we wrote `dL/dw` and `dL/db` by hand. Here autograd does it:
#
# - a tensor created with `requires_grad=True` is tracked: every operation on it records
#   how to differentiate itself;
# - `loss.backward()` walks that record backwards and **adds** `dloss/dtensor` into
#   each tracked leaf's `.grad`;
# - inside `torch.no_grad()` nothing is recorded — that is where parameter updates go.
#
# Then the pitfalls every beginner meets: gradients that pile up across `backward()` calls,
# and the difference between `.item()`, `.data` and `.detach()`. Finally we fit
# `y = 2x + 1` again, now with autograd, and get lesson 01's result step for step.

# %% tags=["parameters"]
POINTS = 64  # data points on the line y = 2x + 1
STEPS = 200  # gradient-descent steps of the autograd fit
LR = 0.1  # learning rate
BACKWARD_CALLS = 3  # backward() calls in the accumulation pitfall

# %%
import matplotlib.pyplot as plt
import torch

from lab.course import find
from lab.lessons.harness import check, open_lesson, show

# Lesson 01's functions (make_data, mse_loss, its hand-derived fit), its cells not run.
LESSON01 = find("01").load()

lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## requires_grad and backward()
#
# For `L = (w·x + b − y)²` with `x = 3, y = 10, w = 2, b = 1` the chain rule gives
# `dL/dw = 2(w·x + b − y)·x = −18` and `dL/db = 2(w·x + b − y) = −6`.


# %%
def tracked_gradients(device: str | torch.device = "cpu") -> dict[str, object]:
    """One backward() through a tracked expression, plus what autograd recorded."""
    x = torch.tensor(3.0, dtype=torch.float64, device=device)  # data: not tracked
    w = torch.tensor(2.0, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.tensor(1.0, dtype=torch.float64, device=device, requires_grad=True)
    loss = (w * x + b - 10.0) ** 2
    loss.backward()
    return {
        "x.requires_grad": x.requires_grad,
        "loss.requires_grad": loss.requires_grad,
        "loss.grad_fn": type(loss.grad_fn).__name__,
        "x.grad": x.grad,
        "w.grad": w.grad.item(),
        "b.grad": b.grad.item(),
    }


seen = tracked_gradients(device)
for key, value in seen.items():
    print(f"  {key:<18} {value}")
check(
    not seen["x.requires_grad"]
    and seen["loss.requires_grad"]
    and seen["loss.grad_fn"] == "PowBackward0",
    "a result of tracked inputs is tracked and remembers its grad_fn",
)
check(seen["x.grad"] is None, "an untracked input gets no .grad")
check(
    seen["w.grad"] == -18.0 and seen["b.grad"] == -6.0,
    "backward() gives dL/dw = 2(wx+b−y)x = −18 and dL/db = −6",
)

# %% [markdown]
# ## no_grad(): updates that autograd must not record
#
# A parameter update `w -= lr * w.grad` is not part of the model, so it must not become
# part of the graph. Done in place on a leaf that requires grad, outside `no_grad()`,
# PyTorch refuses; inside `no_grad()` it works, and results computed there are untracked.


# %%
def in_place_update_outside_no_grad(device: str | torch.device = "cpu") -> str | None:
    """The error an in-place update of a tracked leaf raises (None: it was allowed)."""
    w = torch.tensor(2.0, dtype=torch.float64, device=device, requires_grad=True)
    try:
        w -= 0.1
    except RuntimeError as exc:
        return str(exc)
    return None


def update_inside_no_grad(device: str | torch.device = "cpu") -> tuple[float, bool, bool]:
    """(new w, does w still require grad, is a result computed under no_grad tracked)."""
    w = torch.tensor(2.0, dtype=torch.float64, device=device, requires_grad=True)
    with torch.no_grad():
        w -= 0.5
        doubled = w * 2
    return w.item(), w.requires_grad, doubled.requires_grad


message = in_place_update_outside_no_grad(device)
print(f"w -= 0.1 outside no_grad(): RuntimeError: {message}")
check(
    message is not None and "leaf Variable that requires grad" in message,
    "an in-place update of a tracked leaf outside no_grad() is refused",
)
w_new, still_tracked, result_tracked = update_inside_no_grad(device)
print(
    f"after w -= 0.5 inside no_grad(): w = {w_new}, w.requires_grad = {still_tracked}, "
    f"(w * 2).requires_grad = {result_tracked}"
)
check(
    w_new == 1.5 and still_tracked and not result_tracked,
    "inside no_grad() the update works, w stays a parameter, results are untracked",
)

# %% [markdown]
# ## The gradient-accumulation pitfall
#
# `backward()` *adds* into `.grad`; it never overwrites. Two `backward()` calls on the same
# loss leave twice the gradient. That is handy for accumulating over micro-batches
# (lesson 06), and a bug in an ordinary training loop that forgets to zero the gradient.
# Fix: `w.grad = None` (what `optimizer.zero_grad()` does by default) or `w.grad.zero_()`.
#
# Probe: `L = (3w − 10)²` at `w = 2`, so `dL/dw = 2(3w − 10)·3 = −24` each time.


# %%
def grads_over_backward_calls(
    calls: int, zero_between: bool, device: str | torch.device = "cpu"
) -> list[float]:
    """w.grad after each of `calls` backward() passes of L = (3w − 10)² at w = 2."""
    w = torch.tensor(2.0, dtype=torch.float64, device=device, requires_grad=True)
    seen = []
    for _ in range(calls):
        if zero_between:
            w.grad = None
        ((3.0 * w - 10.0) ** 2).backward()
        seen.append(w.grad.item())
    return seen


piled = grads_over_backward_calls(BACKWARD_CALLS, zero_between=False, device=device)
zeroed = grads_over_backward_calls(BACKWARD_CALLS, zero_between=True, device=device)
print(f"w.grad after each of {BACKWARD_CALLS} backward() calls, never zeroed: {piled}")
print(f"w.grad after each of {BACKWARD_CALLS} backward() calls, zeroed first:  {zeroed}")
single = 2 * (3 * 2.0 - 10) * 3  # dL/dw = 2(3w − 10)·3 at w = 2
check(
    piled == [k * single for k in range(1, BACKWARD_CALLS + 1)],
    "without zeroing, .grad after k backward() calls is k times the gradient",
)
check(zeroed == [single] * BACKWARD_CALLS, "zeroing .grad before each backward() fixes it")
for step, (p, z) in enumerate(zip(piled, zeroed, strict=True)):
    lesson.writer.add_scalar("pitfall/grad_not_zeroed", p, step)
    lesson.writer.add_scalar("pitfall/grad_zeroed", z, step)

# %% [markdown]
# ## .item(), .data and .detach()
#
# - `.item()` turns a one-element tensor into a Python number (for printing and logging).
# - `.detach()` gives a tensor that **shares storage** with the original but is cut out
#   of the graph. If you change it in place, autograd notices: every tensor has a version
#   counter, and `backward()` refuses to use a saved tensor that was modified since.
# - `.data` also shares storage, but changes through it are **invisible** to autograd: no
#   version bump, no error — just a silently wrong gradient. Prefer `.detach()`.
#
# Our probe: `out = sigmoid(a)`. Sigmoid's backward uses its saved *output*:
# `d out/da = out·(1 − out)`. We zero `out` in place after the forward pass.


# %%
def sigmoid_then_zero_output(via: str, device: str | torch.device = "cpu"):
    """Zero sigmoid's output through `.detach()` or `.data`, then backward.

    Returns (a.grad or None, error message or None, storage shared with out).
    """
    a = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64, device=device, requires_grad=True)
    out = torch.sigmoid(a)
    alias = out.detach() if via == "detach" else out.data
    shared = alias.data_ptr() == out.data_ptr()
    alias.zero_()
    try:
        out.sum().backward()
    except RuntimeError as exc:
        return None, str(exc), shared
    return a.grad, None, shared


def true_sigmoid_grad(a: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1 - s)


a = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64, device=device)
grad, error, shared = sigmoid_then_zero_output("detach", device)
print(f"zeroed through .detach(): backward() raised: {str(error).split('. Hint')[0]}")
check(
    shared and grad is None and "modified by an inplace operation" in str(error),
    ".detach() shares storage and the version counter catches the in-place edit",
)
grad, error, shared = sigmoid_then_zero_output("data", device)
print(
    f"zeroed through .data: no error, a.grad = {grad.tolist()}, "
    f"true gradient = {[round(v, 4) for v in true_sigmoid_grad(a).tolist()]}"
)
check(
    shared
    and error is None
    and torch.equal(grad, torch.zeros_like(a))
    and not torch.allclose(grad, true_sigmoid_grad(a)),
    ".data shares storage too, but the edit goes unnoticed: a silently wrong gradient",
)

# %% [markdown]
# `.item()` matters in training loops too: `total += loss` keeps every step's graph alive
# (memory grows each step), `total += loss.item()` keeps a number.


# %%
def running_total(steps: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, float]:
    """The same losses summed as tensors and as .item() numbers."""
    x, y = LESSON01.make_data(8, device=device)
    w = torch.tensor(0.5, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, device=device, requires_grad=True)
    as_tensor = torch.zeros((), dtype=torch.float64, device=device)
    as_number = 0.0
    for step in range(steps):
        loss = LESSON01.mse_loss(w + 0.1 * step, b, x, y)
        as_tensor = as_tensor + loss
        as_number += loss.item()
    return as_tensor, as_number


as_tensor, as_number = running_total(3, device)
print(f"losses summed as tensors: {as_tensor!r}")
print(f"losses summed as .item(): {as_number!r}")
check(
    as_tensor.requires_grad
    and isinstance(as_number, float)
    and abs(as_tensor.item() - as_number) < 1e-12,
    "summing losses as tensors keeps their graphs alive; summing .item() keeps numbers",
)

# %% [markdown]
# ## Fitting y = 2x + 1 with autograd
#
# Lesson 01's loop, with the hand-written gradient replaced by `loss.backward()`, the
# update inside `no_grad()`, and the gradient cleared before each step. Same data, same
# start, same learning rate — so it must follow lesson 01's trajectory exactly. The loss,
# the parameters and (every 10th step) the gradients go to TensorBoard.


# %%
def fit_with_autograd(
    x: torch.Tensor, y: torch.Tensor, lr: float = 0.1, steps: int = 200, writer=None
) -> tuple[float, float, list[float]]:
    """Gradient descent from w = b = 0 with autograd; w, b and the loss after each step."""
    w = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    losses = []
    for step in range(steps):
        w.grad = None
        b.grad = None
        LESSON01.mse_loss(w, b, x, y).backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
            losses.append(LESSON01.mse_loss(w, b, x, y).item())  # after the update, as logged
        if writer is not None:
            writer.add_scalar("loss", losses[-1], step)
            writer.add_scalar("params/w", w.item(), step)
            writer.add_scalar("params/b", b.item(), step)
            if step % 10 == 0:  # the gradient this step used; every 10th keeps the lesson fast
                writer.add_scalar("grad/w", w.grad.item(), step)
                writer.add_scalar("grad/b", b.grad.item(), step)
    return w.item(), b.item(), losses


x, y = LESSON01.make_data(POINTS, device)
w, b, losses = fit_with_autograd(x, y, LR, STEPS, writer=lesson.writer)
print(f"after {STEPS} steps with autograd: w = {w:.4f}, b = {b:.4f}, loss = {losses[-1]:.2e}")
check(abs(w - 2.0) < 1e-3 and abs(b - 1.0) < 1e-3, "autograd descent recovers w = 2, b = 1")
manual_w, manual_b, manual_losses = LESSON01.fit(x, y, LR, STEPS)
gap = max(abs(m - a) for m, a in zip(manual_losses, losses, strict=True))
print(f"by hand (lesson 01): w = {manual_w:.4f}, b = {manual_b:.4f}; largest loss gap {gap:.1e}")
check(
    all(
        abs(m - a) <= 1e-12 * max(1.0, abs(m))
        for m, a in zip((manual_w, manual_b, *manual_losses), (w, b, *losses), strict=True)
    ),
    "autograd follows lesson 01's hand-derived descent step for step, to 1e-12 (float64)",
)

# %% [markdown]
# ## Look at it
#
# The two loss curves lie on top of each other: autograd computed exactly the gradient we
# derived by hand.

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.4))
ax.semilogy(manual_losses, color="tab:blue", lw=4, alpha=0.4, label="lesson 01: by hand")
ax.semilogy(losses, "--", color="tab:red", label="lesson 02: autograd")
ax.set(title="the same descent, two ways", xlabel="step", ylabel="MSE (log scale)")
ax.legend()
fig.tight_layout()
show(fig, "loss_by_hand_vs_autograd")

# %% [markdown]
# ## What to take away
#
# - `requires_grad=True` tracks, `backward()` adds into `.grad`, `no_grad()` keeps updates
#   out of the graph.
# - Zero the gradients every step (`optimizer.zero_grad()`), unless you mean to accumulate.
# - Use `.item()` to log, `.detach()` to cut the graph; avoid `.data`.

# %%
lesson.done()
