# %% [markdown]
# # 00 · Interactive playground: your environment, a first backward(), a Jacobian
#
# Three small things before the real lessons:
#
# 1. **Where am I running?** Which PyTorch, which CUDA build, and whether a GPU is visible.
#    The answer is printed and also written to TensorBoard (tab *Text*), so a run records
#    the environment it came from.
# 2. **A first `backward()`.** For `f(x) = x² + 3x` the derivative is `f'(x) = 2x + 3`;
#    autograd computes the same number without being told the formula.
# 3. **A Jacobian.** For a function from ℝⁿ to ℝᵐ the derivative is an m × n matrix;
#    `torch.autograd.functional.jacobian` builds it, and we compare it with the one
#    worked out by hand.

# %%
from __future__ import annotations

import platform

import torch
from torch.autograd.functional import jacobian

from lab.lessons.harness import LessonRun, run_main

# %% [markdown]
# ## 1. The environment
#
# `torch.version.cuda` is the CUDA version PyTorch was *built* for (`None` for a CPU-only
# build); a CUDA build reports it even on a machine without a GPU. Whether a GPU can
# actually be used is `torch.cuda.is_available()`, which needs a driver and a visible
# device. Lessons put their tensors on `run.device`:
# the GPU when there is one, the CPU otherwise.


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


# %% [markdown]
# ## 2. A first `backward()`
#
# Mark the input with `requires_grad=True`, compute, call `backward()` on the scalar
# result, and read the derivative from `x.grad`.
#
# The same works for many points at once: when `f` acts element by element, the sum
# `Σ f(xᵢ)` has `∂/∂xᵢ = f'(xᵢ)`, so one `backward()` on the sum gives the whole curve
# `f'(x)`. (Calling `backward()` on a non-scalar without saying how to weight its elements
# is an error — we show that too.)


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


def derivative_curve(xs: torch.Tensor) -> torch.Tensor:
    """f'(x) at every point of xs with one backward() over Σ f(xᵢ)."""
    x = xs.detach().clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad


def backward_on_vector_error(device: str | torch.device = "cpu") -> str:
    """The message autograd gives when backward() is called on a non-scalar."""
    x = torch.ones(3, dtype=torch.float64, device=device, requires_grad=True)
    try:
        f(x).backward()
    except RuntimeError as exc:
        return str(exc)
    raise AssertionError("backward() on a vector unexpectedly succeeded")


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


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    report = environment_report(run.device)
    for key, value in report.items():
        print(f"  {key:<26} {value}")
    run.writer.add_text("environment", as_markdown_table(report))
    if run.args.device == "auto":
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        run.check(
            run.device.type == expected,
            f"--device auto picked {expected} because CUDA available = {torch.cuda.is_available()}",
        )
    probe = torch.ones(2, device=run.device)
    run.check(
        probe.device.type == run.device.type,
        f"a tensor created with device={run.device} lives there",
    )

    y, dy = first_backward(2.0, run.device)
    print(f"f(2) = {y}, autograd df/dx at 2 = {dy} (by hand: 2·2 + 3 = 7)")
    run.check(y == 10.0 and dy == 7.0, "backward() gives f'(2) = 7 for f(x) = x² + 3x")

    xs = torch.linspace(-3.0, 3.0, 61, dtype=torch.float64, device=run.device)
    curve = derivative_curve(xs)
    run.check(
        torch.allclose(curve, f_prime(xs)),
        "one backward() over Σ f(xᵢ) gives f'(xᵢ) = 2xᵢ + 3 at all 61 points",
    )
    # TensorBoard steps are integers: step i is x = -3 + 0.1·i.
    for i, (x, fx, dfx) in enumerate(zip(xs.tolist(), f(xs).tolist(), curve.tolist(), strict=True)):
        run.writer.add_scalar("first_backward/f", fx, i)
        run.writer.add_scalar("first_backward/df_dx", dfx, i)
        run.writer.add_scalar("first_backward/x", x, i)

    message = backward_on_vector_error(run.device)
    print(f"backward() on a vector: RuntimeError: {message}")
    run.check("scalar" in message, "backward() on a non-scalar needs an explicit gradient")

    point = torch.tensor([1.5, -0.5], dtype=torch.float64, device=run.device)
    by_autograd = g_jacobian_autograd(point)
    by_hand = g_jacobian_by_hand(point)
    print(f"Jacobian of g at {point.tolist()}:\n{by_autograd.cpu().numpy()}")
    run.check(
        by_autograd.shape == (2, 2) and torch.allclose(by_autograd, by_hand),
        "functional.jacobian equals the hand-derived 2 × 2 Jacobian (float64)",
    )
    for (i, j), value in zip(
        [(0, 0), (0, 1), (1, 0), (1, 1)], by_autograd.flatten().tolist(), strict=True
    ):
        run.writer.add_scalar(f"jacobian/J{i}{j}", value, 0)


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("00_interactive_playground", run_lesson, argv)


# %%
if __name__ == "__main__":
    main()
