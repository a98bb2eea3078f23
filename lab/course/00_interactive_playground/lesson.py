# %% [markdown]
# # 00 · Interactive playground: your environment, a first backward(), a Jacobian
#
# Three small things before the real lessons:
#
# 1. **Where am I running?** Which PyTorch, which CUDA build, and whether a GPU is visible.
# 2. **A first `backward()`.** For `f(x) = x² + 3x` the derivative is `f′(x) = 2x + 3`;
#    autograd computes the same numbers without being told the formula.
# 3. **A Jacobian.** For a function from ℝⁿ to ℝᵐ the derivative is an m × n matrix;
#    `torch.autograd.functional.jacobian` builds it, and we compare it with one worked out
#    by hand.
#
# Run the cells one at a time (Shift+Enter); each one shows what it did.

# %% tags=["parameters"]
X0 = 2.0  # the point where the first backward() differentiates f
POINTS = 61  # points in [-3, 3] where f' is computed (and plotted) in one backward()

# %%
import platform
from unittest import mock

import matplotlib.pyplot as plt
import torch
from torch.autograd.functional import jacobian

from lab.lessons.harness import check, open_lesson, pick_device, show

lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## 1. The environment
#
# `torch.version.cuda` is the CUDA version PyTorch was *built* for (`None` for a CPU-only
# build); a CUDA build reports it even on a machine without a GPU. Whether a GPU can
# actually be used is `torch.cuda.is_available()`, which needs a driver and a visible
# device. Lessons put their tensors on `lesson.device`: the GPU when there is one, the CPU
# otherwise. To check that rule on any machine, we fake `is_available()`'s answer both ways
# (`unittest.mock`) and ask again. The same table goes to TensorBoard (tab *Text*), so a
# run records the environment it came from.


# %%
def environment_report(device: torch.device) -> dict[str, str]:
    """What this process runs on, as text (one entry per line of the report)."""
    cuda_ok = torch.cuda.is_available()
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch built for CUDA": str(torch.version.cuda),
        "cuDNN bundled": str(torch.backends.cudnn.version()),  # None on CPU-only builds
        "CUDA available": str(cuda_ok),
        "GPU count": str(torch.cuda.device_count() if cuda_ok else 0),
        "CPU threads used by torch": str(torch.get_num_threads()),
        "lesson device": str(device),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        report["GPU name"] = torch.cuda.get_device_name(index)
    return report


def as_markdown_table(report: dict[str, str]) -> str:
    rows = [f"| {key} | {value} |" for key, value in report.items()]
    return "\n".join(["| what | value |", "|---|---|", *rows])


def as_if_cuda_available(answer: bool) -> tuple[torch.device, dict[str, str]]:
    """pick_device("auto") and the report on a machine where torch.cuda.is_available()
    answers `answer` (faked), so both cases run on any machine."""
    with mock.patch.object(torch.cuda, "is_available", return_value=answer):
        return pick_device("auto"), environment_report(torch.device("cpu"))


report = environment_report(device)
for key, value in report.items():
    print(f"  {key:<26} {value}")
lesson.writer.add_text("environment", as_markdown_table(report))

faked = {answer: as_if_cuda_available(answer) for answer in (True, False)}
for answer, (chosen, said) in faked.items():
    print(f"  is_available() faked {answer}: 'auto' → {chosen}, report {said['CUDA available']}")
check(
    faked[True][0].type == "cuda" and faked[False][0].type == "cpu",
    "device 'auto' picks cuda exactly when torch.cuda.is_available() (faked both ways)",
)
check(
    all(faked[answer][1]["CUDA available"] == str(answer) for answer in faked),
    f"'CUDA available' follows is_available(), not the build ({torch.version.cuda = })",
)
check(torch.ones(2).device.type == "cpu", "without device=, a tensor is made on the CPU")

# %% [markdown]
# ## 2. A first `backward()`
#
# Mark the input with `requires_grad=True`, compute, call `backward()` on the scalar
# result, and read the derivative from `x.grad`. float64, so that "equal" means equal.


# %%
def f(x: torch.Tensor) -> torch.Tensor:
    return x**2 + 3 * x


def f_prime(x: torch.Tensor) -> torch.Tensor:
    """The derivative worked out by hand."""
    return 2 * x + 3


def first_backward(x0: float, device: str | torch.device = "cpu") -> tuple[float, float]:
    """f(x0) and autograd's df/dx at x0."""
    x = torch.tensor(x0, dtype=torch.float64, device=device, requires_grad=True)
    y = f(x)
    y.backward()
    return y.item(), x.grad.item()


y0, dy0 = first_backward(X0, device)
print(f"f({X0}) = {y0}, autograd's df/dx at {X0} = {dy0}   (by hand: 2·{X0} + 3 = {2 * X0 + 3})")
check(y0 == X0**2 + 3 * X0, f"f({X0}) = {X0}² + 3·{X0} = {X0**2 + 3 * X0}")
check(dy0 == 2 * X0 + 3, f"backward() gives f'({X0}) = 2·{X0} + 3 = {2 * X0 + 3}")

# %% [markdown]
# ## The whole curve f′(x) with one `backward()`
#
# When `f` acts element by element, the sum `Σ f(xᵢ)` has `∂/∂xᵢ = f′(xᵢ)`: one
# `backward()` on the sum gives the derivative at every point at once. Each point is also
# logged to TensorBoard (`first_backward/f`, `…/df_dx`, `…/x`; step i is the i-th point).


# %%
def derivative_curve(xs: torch.Tensor) -> torch.Tensor:
    """f'(x) at every point of xs with one backward() over Σ f(xᵢ)."""
    x = xs.detach().clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad


xs = torch.linspace(-3.0, 3.0, POINTS, dtype=torch.float64, device=device)
curve = derivative_curve(xs)
print(" x      f(x)    autograd f'(x)   2x + 3")
for i in range(0, POINTS, max(1, POINTS // 6)):
    x_i, f_i = (round(t.item(), 9) + 0.0 for t in (xs[i], f(xs[i])))  # no "-0.00"
    print(f"{x_i:5.2f}  {f_i:7.3f}  {curve[i].item():10.3f}  {f_prime(xs[i]).item():9.3f}")
check(
    torch.allclose(curve, f_prime(xs)),
    f"one backward() over Σ f(xᵢ) gives f'(xᵢ) = 2xᵢ + 3 at all {POINTS} points",
)
for i, (x, fx, dfx) in enumerate(zip(xs.tolist(), f(xs).tolist(), curve.tolist(), strict=True)):
    lesson.writer.add_scalar("first_backward/f", fx, i)
    lesson.writer.add_scalar("first_backward/df_dx", dfx, i)
    lesson.writer.add_scalar("first_backward/x", x, i)

# %% [markdown]
# ## Look at it: f and f′ on one plot
#
# Where f′ crosses zero (x = −1.5) f has its minimum; where f′ is positive f rises. The
# dashed line is the tangent at `X0`: its slope is the number `backward()` gave us.

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.6))
xs_cpu = xs.cpu().numpy()
ax.plot(xs_cpu, f(xs).cpu().numpy(), label="f(x) = x² + 3x", color="tab:blue")
ax.plot(xs_cpu, f_prime(xs).cpu().numpy(), label="f′(x) = 2x + 3 (by hand)", color="tab:orange")
ax.plot(xs_cpu[::4], curve.cpu().numpy()[::4], "o", ms=4, color="tab:red", label="f′ by autograd")
ax.plot(xs_cpu, y0 + dy0 * (xs_cpu - X0), "--", color="tab:gray", lw=1, label=f"tangent at {X0}")
ax.axhline(0, color="black", lw=0.5)
ax.plot([X0], [y0], "o", color="black", ms=5)  # the point of the first backward()
ax.set(xlabel="x", ylim=(-5, 20), title="f and its derivative")
ax.legend(fontsize=8)
fig.tight_layout()
show(fig, "f_and_derivative")
check(
    (curve[xs < -1.5] < 0).all() and (curve[xs > -1.5] > 0).all(),
    "f′ < 0 left of −1.5 and > 0 right of it: f falls, then rises — its minimum is at −1.5",
)

# %% [markdown]
# ## `backward()` on a non-scalar
#
# `backward()` needs a scalar: on a vector it would not know how to weight the elements'
# gradients, so PyTorch refuses (lesson 05 passes those weights explicitly).


# %%
def backward_on_vector_error(device: str | torch.device = "cpu") -> str | None:
    """The message autograd gives when backward() is called on a non-scalar (None: no error)."""
    x = torch.ones(3, dtype=torch.float64, device=device, requires_grad=True)
    try:
        f(x).backward()
    except RuntimeError as exc:
        return str(exc)
    return None


message = backward_on_vector_error(device)
print(f"f(x).backward() on a vector: RuntimeError: {message}")
check(
    message is not None and "scalar" in message,
    "backward() on a non-scalar needs an explicit gradient",
)

# %% [markdown]
# ## 3. A Jacobian
#
# Take `g(x₀, x₁) = (x₀² · x₁,  5·x₀ + sin x₁)`. Row i of the Jacobian is the gradient of
# output i:
#
# ```
# J = [[ 2·x₀·x₁ ,  x₀²   ],
#      [ 5       ,  cos x₁ ]]
# ```


# %%
def g(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[0] ** 2 * x[1], 5 * x[0] + torch.sin(x[1])])


def g_jacobian_by_hand(x: torch.Tensor) -> torch.Tensor:
    x0, x1 = x[0], x[1]
    return torch.stack(
        [
            torch.stack([2 * x0 * x1, x0**2]),
            torch.stack([torch.full_like(x0, 5.0), torch.cos(x1)]),
        ]
    )


def g_jacobian_autograd(x: torch.Tensor) -> torch.Tensor:
    return jacobian(g, x)


point = torch.tensor([1.5, -0.5], dtype=torch.float64, device=device)
by_autograd = g_jacobian_autograd(point)
by_hand = g_jacobian_by_hand(point)
print(f"Jacobian of g at {point.tolist()}")
print(f"  by autograd:\n{by_autograd.cpu().numpy()}")
print(f"  by hand:\n{by_hand.cpu().numpy()}")
check(by_autograd.shape == (2, 2), "g: ℝ² → ℝ² has a 2 × 2 Jacobian")
check(
    torch.allclose(by_autograd, by_hand),
    "functional.jacobian equals the hand-derived Jacobian (float64)",
)
for (i, j), value in zip(
    [(0, 0), (0, 1), (1, 0), (1, 1)], by_autograd.flatten().tolist(), strict=True
):
    lesson.writer.add_scalar(f"jacobian/J{i}{j}", value, 0)

# %% [markdown]
# ## What to take away
#
# - `requires_grad=True` + `backward()` + `.grad` is all it takes to differentiate.
# - One `backward()` on a sum gives the derivative at every point of an element-wise function.
# - For vector-valued functions the derivative is a matrix, the Jacobian.

# %%
lesson.done()
