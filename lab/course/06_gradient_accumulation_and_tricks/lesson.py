# %% [markdown]
# # 06 · Gradient accumulation, clipping, gradient checks and frozen parameters
#
# Tools every training loop uses, each verified as we go (float64):
#
# 1. **Accumulation** — `backward()` adds into `.grad`, so k micro-batches can stand in for
#    one big batch when each micro-batch loss is weighted by its share of the batch.
# 2. **Clipping** — `clip_grad_norm_` rescales all gradients together so their total norm is
#    at most `max_norm` (it returns the norm measured *before* clipping);
#    `clip_grad_value_` clamps each element.
# 3. **Numerical gradient check** — central differences `(f(x+h) − f(x−h)) / 2h`.
# 4. **`torch.autograd.gradcheck`** — the same idea, done thoroughly by PyTorch.
# 5. **Freezing** — `requires_grad_(False)`, and an optimizer over the trainable parameters.
# 6. **The `zero_grad` trap** — what moves a frozen parameter anyway.
# 7. **`no_grad()` vs `inference_mode()`** — what each lets you do with its results.
# 8. **All together** — accumulate, clip, step, and watch the gradient norm.

# %% tags=["parameters"]
STEPS = 40  # optimizer steps in the final training loop
LR = 0.1  # learning rate of that loop
MICRO_BATCH = 8  # micro-batch size: gradients of 32 samples accumulate over 32 / this
MAX_NORM = 1.0  # clip_grad_norm_ threshold in that loop

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## A small model and data
#
# A 4 → 8 → 1 network with a tanh, and 32 samples of a noise-free linear target. Seeds are
# fixed, so every re-run of a cell starts from the same numbers.


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


def same_gradients(grads_a, grads_b, factor: float = 1.0) -> bool:
    return all(torch.allclose(a, factor * b) for a, b in zip(grads_a, grads_b, strict=True))


x, y = make_data(device=device)
print(make_model(device))
print("x:", tuple(x.shape), " y:", tuple(y.shape))

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


model = make_model(device)
big = big_batch_gradient(model, x, y)
even = accumulated_gradient(model, x, y, micro_batch=8)
uneven = accumulated_gradient(model, x, y, micro_batch=12)  # sizes 12, 12, 8
unscaled = accumulated_gradient(model, x, y, micro_batch=8, scale=False)
print("first-layer weight gradient, element [0, 0]:")
for name, grads in (
    ("big batch", big),
    ("4 × 8", even),
    ("12, 12, 8", uneven),
    ("unweighted", unscaled),
):
    print(f"  {name:<11} {grads[0][0, 0].item():+.6f}")
check(
    same_gradients(even, big),
    "4 micro-batches of 8, losses weighted 1/4, give the 32-sample gradient",
)
check(
    same_gradients(uneven, big), "uneven micro-batches (12, 12, 8) weighted by size/N give it too"
)
check(same_gradients(unscaled, big, factor=4.0), "without the weight the gradient is 4× too large")

# %% [markdown]
# ## 2 · Clipping
#
# The total norm is the 2-norm of all gradients concatenated. If it exceeds `max_norm`
# every gradient is multiplied by `max_norm / (total + 1e-6)`: the direction is kept.
# `clip_grad_value_` instead clamps each element on its own (the direction changes).


# %%
def total_grad_norm(parameters) -> float:
    return torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in parameters)).item()


model = make_model(device)
before = big_batch_gradient(model, x, y)
norm_before = total_grad_norm(model.parameters())
max_norm = norm_before / 2
returned = nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
norm_after = total_grad_norm(model.parameters())  # measured again, after clipping
print(f"total norm {norm_before:.4f}; max_norm {max_norm:.4f}; clip returned {returned:.4f}")
print(f"total norm after clipping: {norm_after:.4f}")
check(
    abs(returned - norm_before) < 1e-12,
    "clip_grad_norm_ returns the total norm from before clipping",
)
check(norm_after <= max_norm, "after clipping the total norm is ≤ max_norm")
ratio = max_norm / (norm_before + 1e-6)
check(
    same_gradients(gradients(model), before, factor=ratio),
    "clipping rescales every gradient by the same factor (direction kept)",
)
before_value_clip = gradients(model)
nn.utils.clip_grad_value_(model.parameters(), clip_value=0.05)
inside = sum((g.abs() <= 0.05).sum().item() for g in before_value_clip)
outside = sum((g.abs() > 0.05).sum().item() for g in before_value_clip)
print(
    "largest |element| after clip_grad_value_(0.05):",
    max(p.grad.abs().max().item() for p in model.parameters()),
    f"({outside} elements were beyond ±0.05, {inside} within)",
)
check(
    all(p.grad.abs().max() <= 0.05 for p in model.parameters()),
    "after clip_grad_value_(0.05) every element lies in [-0.05, 0.05]",
)
check(
    inside > 0
    and outside > 0
    and all(
        torch.equal(p.grad, g.clamp(-0.05, 0.05))
        for p, g in zip(model.parameters(), before_value_clip, strict=True)
    ),
    "each element is clamped on its own: those within ±0.05 unchanged, the rest set to ±0.05",
)

# %% [markdown]
# ## 3 · Numerical gradient by central differences
#
# The error of central differences is O(h²) from the formula plus about ε·|f|/h from
# rounding, where ε is the dtype's precision. In float64 (ε ≈ 1e-16) `h = 1e-6` keeps both
# tiny. In float32 (ε ≈ 1e-7) the rounding term is about 0.1·|f|: the "check" is noise. So
# `numerical_gradient` refuses anything but float64, with a one-line reason.


# %%
def central_differences(func, x: torch.Tensor, step: float = 1e-6) -> torch.Tensor:
    """(f(x + h eᵢ) − f(x − h eᵢ)) / 2h for every element i, in x's own dtype."""
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


def numerical_gradient(func, x: torch.Tensor, step: float = 1e-6) -> torch.Tensor:
    """Central differences, float64 only: in lower precision rounding swamps the result."""
    if x.dtype != torch.float64:
        raise TypeError(
            f"numerical_gradient needs float64 input, got {x.dtype}: with h = {step:g} "
            "rounding swamps the difference; pass x.double() (and compute f in float64)"
        )
    return central_differences(func, x, step)


def autograd_gradient(func, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(func(x), x)
    return grad


def first_layer_loss(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor):
    """The loss as a function of the first layer's weight alone (the rest held fixed)."""
    bias, head = model[0].bias.detach(), model[2]

    def loss(weight: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(head(torch.tanh(x @ weight.T + bias)), y)

    return loss


model = make_model(device)
loss_of_weight = first_layer_loss(model, x, y)
weight = model[0].weight.detach()
error64 = (
    (numerical_gradient(loss_of_weight, weight) - autograd_gradient(loss_of_weight, weight))
    .abs()
    .max()
    .item()
)
model32 = make_model(device).float()
loss32 = first_layer_loss(model32, x.float(), y.float())
weight32 = model32[0].weight.detach()
error32 = (
    (central_differences(loss32, weight32) - autograd_gradient(loss32, weight32)).abs().max().item()
)
print("central differences vs autograd, max abs difference:")
print(f"  float64 {error64:.1e}   float32 {error32:.1e}")
try:
    numerical_gradient(loss32, weight32)
    refusal = None
except TypeError as exc:
    refusal = str(exc)
print("numerical_gradient(float32) ->", refusal)
check(error64 < 1e-7, "central differences (h = 1e-6, float64) match autograd")
check(error32 > 1e-3, "the same differences in float32 are off by more than 1e-3")
check(
    refusal is not None and "float64" in refusal,
    "numerical_gradient refuses float32 input, naming float64",
)

# %% [markdown]
# ## 4 · `torch.autograd.gradcheck`
#
# `gradcheck` compares autograd's Jacobian with finite differences for every input element
# and output, with tolerances chosen for float64 (it warns on anything else).

# %%
model = make_model(device)
inputs = torch.randn(3, 4, dtype=torch.float64, device=device, requires_grad=True)
passed = torch.autograd.gradcheck(lambda t: model(t).sum(), (inputs,))
print("gradcheck on the model's input gradient:", passed)
check(passed, "torch.autograd.gradcheck passes for the model's input gradient (float64)")

# %% [markdown]
# ## 5 · Freezing parameters
#
# `requires_grad_(False)` keeps a parameter out of the backward pass: its `.grad` stays
# `None`. Build the optimizer *after* freezing, over the trainable parameters only —
# `filter(lambda p: p.requires_grad, model.parameters())` — and the frozen ones are not even
# in it: nothing the optimizer does (momentum, weight decay) can touch them.


# %%
def train_step_with_frozen_first_layer(
    model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, lr: float = 0.1
) -> torch.optim.Optimizer:
    model[0].requires_grad_(False)
    trainable = filter(lambda p: p.requires_grad, model.parameters())
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=0.9)
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
    return optimizer


def optimized_parameters(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


model = make_model(device)
frozen_before = [p.detach().clone() for p in model[0].parameters()]
trainable_before = [p.detach().clone() for p in model[2].parameters()]
optimizer = train_step_with_frozen_first_layer(model, x, y)
in_optimizer = sum(len(group["params"]) for group in optimizer.param_groups)
print(f"parameter tensors in the optimizer: {in_optimizer} of {len(list(model.parameters()))}")
print("first layer .grad:", [p.grad for p in model[0].parameters()])
check(
    optimized_parameters(optimizer) == {id(p) for p in model[2].parameters()},
    "the filtered optimizer holds exactly the trainable (last-layer) parameters",
)
check(
    all(p.grad is None for p in model[0].parameters()),
    "frozen parameters get no gradient (.grad is None)",
)
check(
    all(torch.equal(p, q) for p, q in zip(model[0].parameters(), frozen_before, strict=True)),
    "the frozen layer is unchanged after the step",
)
check(
    all(
        not torch.equal(p, q) for p, q in zip(model[2].parameters(), trainable_before, strict=True)
    ),
    "the trainable layer did change",
)

# %% [markdown]
# ## 6 · Freezing mid-training: the `zero_grad` trap
#
# Now freeze a layer *after* an optimizer over all parameters has taken a step (momentum
# buffers exist). `optimizer.zero_grad()` sets every `.grad` to `None` by default
# (`set_to_none=True`), and SGD skips parameters whose `.grad` is `None` — the frozen layer
# stays put. The trap is `zero_grad(set_to_none=False)`: it leaves a *zero tensor* in
# `.grad`, SGD treats that as a gradient, and momentum (or weight decay) keeps moving the
# "frozen" layer. Building the optimizer over the trainable parameters avoids both.


# %%
def freeze_after_one_step(model: nn.Sequential, x, y, set_to_none: bool) -> dict:
    """One SGD+momentum step on everything, freeze layer 0, zero_grad(set_to_none=…), step
    again. Returns the frozen weight's .grad after zero_grad and whether the weight moved."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
    model[0].requires_grad_(False)
    weight_before = model[0].weight.detach().clone()
    optimizer.zero_grad(set_to_none=set_to_none)
    grad_after_zero = model[0].weight.grad
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
    return {"grad": grad_after_zero, "moved": not torch.equal(model[0].weight, weight_before)}


default = freeze_after_one_step(make_model(device), x, y, set_to_none=True)
trap = freeze_after_one_step(make_model(device), x, y, set_to_none=False)
zeros = trap["grad"] is not None and not trap["grad"].any()
for name, seen in (("zero_grad()", default), ("zero_grad(set_to_none=False)", trap)):
    grad = "zeros" if seen is trap and zeros else seen["grad"]
    print(f"{name:<29} .grad {grad}, frozen layer moved: {seen['moved']}")
check(default["grad"] is None, "zero_grad() sets .grad to None (set_to_none=True by default)")
check(not default["moved"], "so SGD skips the frozen layer: it stays put")
check(zeros, "zero_grad(set_to_none=False) leaves a zero tensor in .grad instead")
check(trap["moved"], "with a zero .grad, momentum moves the 'frozen' layer anyway")

# %% [markdown]
# ## 7 · `no_grad()` vs `inference_mode()`
#
# Both stop recording: results come out with `requires_grad=False`. The difference is what
# you may do with them *afterwards*. A `no_grad()` result is an ordinary tensor: later it
# can feed a computation autograd records, and it can be changed in place. An
# `inference_mode()` result is an *inference tensor* (`is_inference()`): torch skipped the
# bookkeeping (version counter, view tracking) that would make that safe, so outside
# inference mode it may not be saved for backward or modified in place. `.clone()` turns it
# into an ordinary tensor. Use `inference_mode()` for pure evaluation, `no_grad()` when
# results flow back into training.


# %%
def made_under(context) -> torch.Tensor:
    with context():
        return torch.arange(1.0, 4.0, dtype=torch.float64) * 2


def attempt(operation) -> str:
    """'ok', or the first sentence of the RuntimeError the operation raises."""
    try:
        operation()
    except RuntimeError as exc:
        return "RuntimeError: " + str(exc).split(".")[0]
    return "ok"


def use_in_autograd(t: torch.Tensor) -> torch.Tensor:
    """d(Σ t·w)/dw: the product saves t for the backward pass."""
    w = torch.ones_like(t, requires_grad=True)
    (t * w).sum().backward()
    return w.grad


results = {}
for name, context in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
    t = made_under(context)
    results[name] = {
        "requires_grad": t.requires_grad,
        "is_inference": t.is_inference(),
        "used in autograd": attempt(lambda t=t: use_in_autograd(t)),
        "modified in place": attempt(lambda t=t: t.add_(1)),
        ".clone() in autograd": attempt(lambda t=t: use_in_autograd(t.clone())),
    }
print(f"{'':<21} {'no_grad()':<10} inference_mode()")
for row, value in results["no_grad"].items():
    print(f"{row:<21} {value!s:<10} {results['inference_mode'][row]}")
check(
    not results["no_grad"]["requires_grad"] and not results["inference_mode"]["requires_grad"],
    "both contexts produce tensors with requires_grad=False",
)
check(
    results["inference_mode"]["is_inference"] and not results["no_grad"]["is_inference"],
    "only inference_mode() makes inference tensors",
)
check(
    results["no_grad"]["used in autograd"] == "ok",
    "a no_grad() result can be used in autograd later",
)
check(
    results["no_grad"]["modified in place"] == "ok",
    "a no_grad() result can be modified in place later",
)
check(
    results["inference_mode"]["used in autograd"].startswith(
        "RuntimeError: Inference tensors cannot be saved for backward"
    ),
    "an inference tensor cannot be saved for backward outside inference mode",
)
check(
    results["inference_mode"]["modified in place"].startswith(
        "RuntimeError: Inplace update to inference tensor outside InferenceMode"
    ),
    "an inference tensor cannot be modified in place outside inference mode",
)
check(
    results["inference_mode"][".clone() in autograd"] == "ok",
    ".clone() of an inference tensor is an ordinary tensor autograd accepts",
)

# %% [markdown]
# ## 8 · All together: accumulate, clip, step — and watch the gradient norm
#
# The order matters: clip once the accumulation is complete, just before
# `optimizer.step()`. We log the norm before clipping (what `clip_grad_norm_` returns) and
# after it (measured again) as `grad_norm/pre_clip` and `grad_norm/post_clip`, plus the
# loss.


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
    """SGD with accumulation over micro-batches and clipping; returns (pre, post) norms."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    norms = []
    for step in range(steps):
        optimizer.zero_grad()
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


norms = train(make_model(device), x, y, STEPS, LR, MICRO_BATCH, MAX_NORM, writer=lesson.writer)
clipped = sum(pre > MAX_NORM for pre, _ in norms)
print(f"clipping was active on {clipped} of {len(norms)} steps")
check(
    all(post <= MAX_NORM + 1e-9 for _, post in norms),
    f"every post-clip norm is ≤ max_norm = {MAX_NORM}",
)
check(0 < clipped < len(norms), "clipping was active on some steps and idle on others")
check(
    all(abs(post - pre) < 1e-12 for pre, post in norms if pre <= MAX_NORM),
    "once the norm is below max_norm, clipping leaves the gradients alone",
)
# The end of the run alone could hide a wrong step. The first, by hand: the big-batch
# gradient g of section 1 (one backward() over all 32 samples), clipped, times lr.
g = big_batch_gradient(make_model(device), x, y)
g_norm = torch.sqrt(sum((t**2).sum() for t in g)).item()
factor = min(1.0, MAX_NORM / (g_norm + 1e-6))
model = make_model(device)
start = [p.detach().clone() for p in model.parameters()]
((first_pre, _),) = train(model, x, y, 1, LR, MICRO_BATCH, MAX_NORM)
print(f"step 1: pre-clip norm {first_pre:.6f}, big-batch gradient norm {g_norm:.6f}")
check(
    abs(first_pre - g_norm) < 1e-12
    and all(
        torch.allclose(p, p0 - LR * factor * grad)
        for p, p0, grad in zip(model.parameters(), start, g, strict=True)
    ),
    "step 1 by hand: the accumulated norm is the big batch's, θ₁ = θ₀ − lr·min(1, max/‖g‖)·g",
)

# %% [markdown]
# Early on the gradient is large and clipping caps it at `max_norm`; as the loss falls the
# norm drops below the line and clipping stops doing anything (the two curves coincide).

# %%
pre, post = zip(*norms, strict=True)
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.semilogy(pre, "o-", markersize=3, label="before clipping (clip_grad_norm_ returns this)")
ax.semilogy(post, "s-", markersize=3, label="after clipping (measured)")
ax.axhline(MAX_NORM, color="tab:red", linestyle="--", label=f"max_norm = {MAX_NORM:g}")
ax.set(title="total gradient norm per step", xlabel="step", ylabel="norm (log scale)")
ax.legend(loc="upper right", fontsize=8)
fig.tight_layout()
show(fig, "grad_norm_clipping")

# %% [markdown]
# ## What to take away
#
# - Accumulate with each micro-batch loss weighted by its share of the batch.
# - Clip after accumulating, before stepping; `clip_grad_norm_` returns the pre-clip norm.
# - Check gradients numerically in float64 only (or with `gradcheck`).
# - Freeze with `requires_grad_(False)` and an optimizer over the trainable parameters;
#   never `zero_grad(set_to_none=False)` with frozen parameters in the optimizer.
# - `inference_mode()` for evaluation only; `no_grad()` when the results go back into
#   training.

# %%
lesson.done()
