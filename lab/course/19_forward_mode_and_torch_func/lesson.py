# %% [markdown]
# # 19 · Forward mode and torch.func
#
# Reverse mode (`backward()`) pushes one vector *back* from the output: a vector-Jacobian
# product `uᵀJ`, a **row** of `J` per pass. **Forward mode** pushes one tangent *forward*
# from the input, alongside the values: a Jacobian-vector product `J v`, a **column** of `J`
# per pass, no graph kept, no backward pass. Lesson 05 got `J v` with two reverse passes;
# here it is the real thing — by hand with dual numbers, then with
# `torch.autograd.forward_ad` and `torch.func.jvp`.
#
# `torch.func` makes both modes composable functions: `jacfwd`/`jacrev` build whole
# Jacobians (which one is cheaper depends on the shape of `f`), `jacfwd(jacrev(f))` is a
# Hessian, and `vmap(grad(...))` gives one gradient *per sample* in a single call. Every
# result is checked in float64 against reverse mode, a closed form, or a plain loop.

# %% tags=["parameters"]
SEED = 19  # seed of the random points, matrices and data
TALL = 200  # the long side of the tall (R^NARROW → R^TALL) and wide (R^TALL → R^NARROW) functions
NARROW = 4  # the short side of those two functions
SAMPLES = 128  # samples in the per-sample-gradient batch
REPEATS = 3  # timing repeats (best of); times are printed, never checked

# %%
import time
import warnings
from functools import partial

import matplotlib.pyplot as plt
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vjp, vmap

from lab.course import find
from lab.lessons.harness import check, open_lesson, show

# Lesson 05's pieces: its R³ → R³ function, Jacobian by VJPs, double-backward Hessian.
LESSON05 = find("05").load()

# forward_ad's first use loads PyTorch's own decompositions through torch.jit.script, whose
# deprecation notice is about PyTorch's code, not this lesson's.
warnings.filterwarnings(
    "ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning
)

lesson = open_lesson()
device = lesson.device
f64 = {"dtype": torch.float64, "device": device}
generator = torch.Generator().manual_seed(SEED)


def random(*shape: int) -> torch.Tensor:
    """Seeded float64 numbers on the lesson's device."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)


def agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and the same numbers: a transposed Jacobian fails here, it does not crash."""
    return a.shape == b.shape and torch.allclose(a, b)


# %% [markdown]
# ## Dual numbers, by hand
#
# Write every number as `a + a′ε` with `ε² = 0`. Then
# `(a + a′ε)(b + b′ε) = ab + (a′b + ab′)ε` — the product rule falls out of the algebra —
# and `sin(a + a′ε) = sin a + cos(a)·a′ε`. Start from `x + 1·ε` and the `ε` part of any
# expression is its derivative: forward mode is this, done op by op.


# %%
class Dual:
    """a + a′ε: a value and its tangent (the derivative along one direction), together."""

    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    def __add__(self, other):
        other = other if isinstance(other, Dual) else Dual(other, 0.0)  # constants: tangent 0
        return Dual(self.value + other.value, self.tangent + other.tangent)

    def __mul__(self, other):
        other = other if isinstance(other, Dual) else Dual(other, 0.0)
        return Dual(
            self.value * other.value, self.tangent * other.value + self.value * other.tangent
        )

    __radd__ = __add__
    __rmul__ = __mul__


def dual_sin(a: Dual) -> Dual:
    return Dual(torch.sin(a.value), torch.cos(a.value) * a.tangent)  # the chain rule


def wiggle(x):
    """x·sin x + 3x: works on tensors and on Duals alike."""
    sin = dual_sin(x) if isinstance(x, Dual) else torch.sin(x)
    return x * sin + 3 * x


points = torch.linspace(-3.0, 3.0, 7, **f64)
by_duals = wiggle(Dual(points, torch.ones_like(points))).tangent
leaf = points.clone().requires_grad_(True)
(by_reverse,) = torch.autograd.grad(wiggle(leaf).sum(), leaf)
print("x                 ", points.tolist())
print("ε part of f(x + ε)", [round(v, 4) for v in by_duals.tolist()])
check(
    torch.allclose(by_duals, torch.sin(points) + points * torch.cos(points) + 3),
    "the dual part equals f′(x) = sin x + x cos x + 3 (by hand)",
)
check(torch.allclose(by_duals, by_reverse), "… and the gradient reverse mode computes")

# %% [markdown]
# ## `torch.autograd.forward_ad`: dual tensors
#
# PyTorch does the same with *dual tensors*: inside `fwAD.dual_level()`,
# `make_dual(x, v)` attaches the tangent `v` to `x`, every op computes its value and its
# tangent together, and `unpack_dual(out)` splits the result into `(primal, tangent)`.
# The tangent is `J v` — one column-combination of the Jacobian, in one forward pass.
# `f` maps R³ → R² on purpose: a `J v` (length 2) and a `uᵀJ` (length 3) cannot be mixed up.


# %%
def spiral(x: torch.Tensor) -> torch.Tensor:
    """R³ → R²: a Jacobian that is not square."""
    return torch.stack([x[0] * x[1] * torch.sin(x[2]), torch.exp(x[0]) - x[1] * x[2] ** 2])


def jvp_forward_ad(func, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), J v) in one forward pass with dual tensors."""
    with fwAD.dual_level():
        out = func(fwAD.make_dual(x, v))
        primal, tangent = fwAD.unpack_dual(out)
    return primal, tangent


x, v = random(3), random(3)
jacobian_reverse = LESSON05.jacobian_by_vjps(spiral, x)  # lesson 05: one backward per row
primal, tangent = jvp_forward_ad(spiral, x, v)
print("J (rows by reverse mode):\n", jacobian_reverse.cpu())
print("J v by forward_ad:", tangent.tolist())
check(agree(primal, spiral(x)), "the primal that comes along is f(x)")
check(agree(tangent, jacobian_reverse @ v), "forward_ad's tangent is J v (J by reverse mode)")
lesson.writer.add_scalar(
    "check/forward_ad_error", (tangent - jacobian_reverse @ v).abs().max().item(), 0
)

# %% [markdown]
# ## `torch.func.jvp` and `vjp`, and the dot-product test
#
# `torch.func.jvp(f, (x,), (v,))` is the same forward-mode product as a function call;
# `torch.func.vjp(f, x)` returns `f(x)` and a function that maps `u` to `uᵀJ`. On lesson
# 05's R³ → R³ function the Jacobian is square, so only the numbers tell `J v` from `vᵀJ`:
# they differ, because `J` is not symmetric. The two modes meet in one identity, true for
# every `u` and `v`: `u · (J v) = (uᵀJ) · v`. It needs no Jacobian at all, which makes it the
# standard test of a hand-written JVP or VJP.


# %%
def jvp_and_vjp(func, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple:
    """(J v by forward mode, uᵀJ by reverse mode), with torch.func."""
    _, jv = jvp(func, (x,), (v,))
    _, pullback = vjp(func, x)
    (ujt,) = pullback(u)
    return jv, ujt


by_hand = LESSON05.analytic_jacobian(x)
jv, vjt = jvp_and_vjp(LESSON05.vector_function, x, v, v)
print("lesson 05's f:  J v =", jv.tolist())
print("               vᵀJ =", vjt.tolist())
check(agree(jv, by_hand @ v), "torch.func.jvp gives J v (lesson 05's J by hand)")
check(agree(vjt, v @ by_hand), "torch.func.vjp gives vᵀJ, another vector: J is not symmetric")

u = random(2)
jv, ujt = jvp_and_vjp(spiral, x, u, v)
print(f"spiral: u · (J v) = {(u @ jv).item():.12f}    (uᵀJ) · v = {(ujt @ v).item():.12f}")
check(agree(jv, tangent), "torch.func.jvp equals forward_ad's tangent")
check(torch.allclose(u @ jv, ujt @ v), "u · (J v) = (uᵀJ) · v: forward and reverse mode agree")

# %% [markdown]
# ## `jacfwd` vs `jacrev`: count the passes
#
# A full Jacobian of `f: Rⁿ → Rᵐ` takes **n** forward passes (one JVP per input direction,
# a column each) or **m** reverse passes (one VJP per output, a row each). Below, both by an
# explicit loop that counts its passes, against `torch.func.jacfwd` / `jacrev` (which
# `vmap` the same products into one batched call). A *tall* function (few inputs, many
# outputs) wants forward mode; a *wide* one — every loss, one output — wants reverse mode.


# %%
def jacobian_by_columns(func, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """J from one JVP per input (forward mode); returns (J, passes)."""
    basis = torch.eye(x.numel(), dtype=x.dtype, device=x.device)
    columns = [jvp(func, (x,), (direction,))[1] for direction in basis]
    return torch.stack(columns, dim=1), len(columns)


def jacobian_by_rows(func, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """J from one VJP per output (reverse mode, one forward to record); returns (J, passes)."""
    out, pullback = vjp(func, x)
    basis = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
    rows = [pullback(direction)[0] for direction in basis]
    return torch.stack(rows), len(rows)


tall_matrix, wide_matrix = random(TALL, NARROW), random(NARROW, TALL)


def tall(x):  # R^NARROW → R^TALL
    return torch.tanh(tall_matrix @ x)


def wide(x):  # R^TALL → R^NARROW
    return torch.tanh(wide_matrix @ x)


passes = {}
for name, func, point in (("tall", tall, random(NARROW)), ("wide", wide, random(TALL))):
    by_columns, forward_passes = jacobian_by_columns(func, point)
    by_rows, reverse_passes = jacobian_by_rows(func, point)
    passes[name] = {"jacfwd": forward_passes, "jacrev": reverse_passes}
    shape = tuple(by_rows.shape)
    print(f"{name}: J {shape}, passes: forward {forward_passes}, reverse {reverse_passes}")
    check(agree(by_columns, jacfwd(func)(point)), f"{name}: columns by JVPs = jacfwd")
    check(agree(by_rows, jacrev(func)(point)), f"{name}: rows by VJPs = jacrev")
    check(agree(by_columns, by_rows), f"{name}: forward and reverse mode give the same J")
check(
    passes["tall"] == {"jacfwd": NARROW, "jacrev": TALL}
    and passes["wide"] == {"jacfwd": TALL, "jacrev": NARROW},
    "passes: forward mode one per input, reverse mode one per output",
)

# %% [markdown]
# Time is the passes' consequence (printed, not checked: it depends on the machine). The
# vmapped `jacfwd`/`jacrev` batch their passes into one call, so at the default sizes fixed
# overheads hide most of the gap; with `--tall 2000 --narrow 8` the extra passes dominate
# and the wrong mode is tens of times slower.


# %%
def synchronize() -> None:
    if torch.cuda.is_available():  # GPU work is asynchronous: wait for it before reading the clock
        torch.cuda.synchronize()


def best_time(func, *args, repeats: int = REPEATS) -> float:
    """Best wall time of `repeats` calls, in seconds (synchronised on a GPU)."""
    best = float("inf")
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        func(*args)
        synchronize()
        best = min(best, time.perf_counter() - started)
    return best


timings = {}
for name, func, point in (("tall", tall, random(NARROW)), ("wide", wide, random(TALL))):
    timings[name] = {
        mode: best_time(make(func), point)
        for mode, make in (("jacfwd", jacfwd), ("jacrev", jacrev))
    }
    ratio = timings[name]["jacrev"] / timings[name]["jacfwd"]
    print(
        f"{name}: jacfwd {timings[name]['jacfwd'] * 1e3:.2f} ms, jacrev "
        f"{timings[name]['jacrev'] * 1e3:.2f} ms (jacrev / jacfwd = {ratio:.2f})"
    )
    for mode, seconds in timings[name].items():
        lesson.writer.add_scalar(f"jacobian_ms/{name}_{mode}", seconds * 1e3, 0)

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
shapes = ["tall", "wide"]
for offset, mode in ((-0.2, "jacfwd"), (0.2, "jacrev")):
    counted = left.bar([offset, 1 + offset], [passes[s][mode] for s in shapes], 0.4, label=mode)
    left.bar_label(counted)
    right.bar([offset, 1 + offset], [timings[s][mode] * 1e3 for s in shapes], 0.4, label=mode)
labels = [f"tall: {NARROW} in, {TALL} out", f"wide: {TALL} in, {NARROW} out"]
for ax, title in ((left, "passes (counted)"), (right, "time in ms (this machine)")):
    ax.set_xticks([0, 1], labels)
    ax.set(title=title)
    ax.legend(loc="upper center", ncols=2)
    ax.set_ylim(0, 1.35 * ax.get_ylim()[1])  # room for the legend above the bars
fig.tight_layout()
show(fig, "jacfwd_vs_jacrev")

# %% [markdown]
# ## A Hessian is a Jacobian of a gradient: `jacfwd(jacrev(f))`
#
# `jacrev(f)` is the gradient (one reverse pass for a scalar `f`); its Jacobian has `n`
# columns, so forward mode over it is the cheap way: **forward-over-reverse**. We check it
# against lesson 05's function `xᵀAx + Σ sin x`, its closed-form Hessian, and a Hessian
# built row by row from lesson 05's double-backward Hessian-vector products.


# %%
def hessian_by_double_backward(func, x: torch.Tensor) -> torch.Tensor:
    """Row i of H is H eᵢ: lesson 05's Hessian-vector product (two reverse passes) per row."""
    basis = torch.eye(x.numel(), dtype=x.dtype, device=x.device)
    return torch.stack([LESSON05.hessian_vector_product(func, x, e) for e in basis])


matrix, point, direction = random(5, 5), random(5), random(5)
f = partial(LESSON05.quadratic_plus_sin, matrix=matrix)
forward_over_reverse = jacfwd(jacrev(f))(point)
double_backward = hessian_by_double_backward(f, point)
print("H = jacfwd(jacrev(f)):\n", forward_over_reverse.cpu())
check(
    agree(forward_over_reverse, LESSON05.analytic_hessian(point, matrix)),
    "jacfwd(jacrev(f)) = A + Aᵀ − diag(sin x), lesson 05's closed form",
)
check(agree(forward_over_reverse, double_backward), "… = lesson 05's double-backward H")
check(
    agree(hessian(f)(point), forward_over_reverse),
    "torch.func.hessian is that same composition",
)

# One Hessian-vector product, forward over reverse: a JVP of the gradient function.
_, hvp_forward = jvp(grad(f), (point,), (direction,))
check(
    agree(hvp_forward, LESSON05.hessian_vector_product(f, point, direction)),
    "jvp(grad(f)) gives H v, as lesson 05's double backward does",
)

# %% [markdown]
# With two arguments the order of the derivatives matters. For
# `g(x, y) = xᵀ B tanh(y)` with `B` of shape 3 × 4, differentiating first in `x` and then in
# `y` gives the 3 × 4 matrix of mixed partials `∂²g/∂xᵢ∂yⱼ = Bᵢⱼ (1 − tanh² yⱼ)`; the other
# order gives its transpose.


# %%
def bilinear(x: torch.Tensor, y: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return x @ matrix @ torch.tanh(y)


def mixed_partials(func, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[i, j] = ∂/∂yⱼ (∂g/∂xᵢ): reverse in x, then forward in y."""
    return jacfwd(jacrev(func, argnums=0), argnums=1)(x, y)


mixing, x3, y4 = random(3, 4), random(3), random(4)
mixed = mixed_partials(partial(bilinear, matrix=mixing), x3, y4)
print("∂²g/∂x∂y:\n", mixed.cpu())
check(
    agree(mixed, mixing * (1 - torch.tanh(y4) ** 2)),
    "∂²g/∂xᵢ∂yⱼ = Bᵢⱼ (1 − tanh² yⱼ), a 3 × 4 matrix (by hand)",
)

# %% [markdown]
# ## Per-sample gradients: `functional_call` + `vmap(grad(...))`
#
# `loss.backward()` on a batch gives the gradient of the *mean* loss; the gradient of each
# sample's own loss is lost in the sum. `torch.func` gets them all at once: `functional_call`
# runs a module with parameters passed in as a dict (so they can be an argument of a
# function), `grad` differentiates the loss of **one** sample with respect to that dict, and
# `vmap` maps it over the batch dimension — one call, no Python loop. The oracle is that
# loop: one `backward()` per sample.


# %%
def classifier(device, features: int = 5, hidden: int = 16, classes: int = 3) -> nn.Module:
    torch.manual_seed(SEED)
    layers = nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, classes)
    return nn.Sequential(*layers).to(dtype=torch.float64, device=device)


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """{name: [samples, *param.shape]}: each sample's own loss gradient, in one vmap call."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def sample_loss(params, sample, target):
        logits = functional_call(model, params, (sample.unsqueeze(0),))  # a batch of one
        return F.cross_entropy(logits, target.unsqueeze(0))

    return vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)


def looped_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same, one backward() per sample."""
    grads = {name: [] for name, _ in model.named_parameters()}
    for sample, target in zip(x, y, strict=True):
        model.zero_grad()
        F.cross_entropy(model(sample[None]), target[None]).backward()
        for name, p in model.named_parameters():
            grads[name].append(p.grad.clone())
    model.zero_grad()
    return {name: torch.stack(each) for name, each in grads.items()}


model = classifier(device)
inputs = random(SAMPLES, 5)
labels = torch.randint(0, 3, (SAMPLES,), generator=generator).to(device)
vmapped = per_sample_grads(model, inputs, labels)
looped = looped_grads(model, inputs, labels)
print({name: tuple(g.shape) for name, g in vmapped.items()})
check(
    all(torch.allclose(vmapped[name], looped[name]) for name in looped),
    f"vmap(grad(·)) equals a loop of {SAMPLES} backward() calls, for every parameter",
)
model.zero_grad()
F.cross_entropy(model(inputs), labels).backward()
check(
    all(torch.allclose(vmapped[name].mean(0), p.grad) for name, p in model.named_parameters()),
    "their mean is the batch gradient that one backward() of the mean loss gives",
)

# %% [markdown]
# Timing (printed, not checked): for a model this small one backward() is cheap, so vmap's
# lead grows with the batch. Each sample's gradient norm says how hard that sample pulls on
# the weights (what DP-SGD clips, and a way to find odd samples). Bars from `vmap`, dots
# from the loop; the norms also go to TensorBoard as a histogram (`per_sample/grad_norm`).

# %%
vmap_time = best_time(per_sample_grads, model, inputs, labels)
loop_time = best_time(looped_grads, model, inputs, labels)
print(f"vmap {vmap_time * 1e3:.1f} ms, loop {loop_time * 1e3:.1f} ms")
print(f"loop / vmap = {loop_time / vmap_time:.1f} (it grows with the batch: try --samples 512)")
norms = torch.cat([g.flatten(1) for g in vmapped.values()], dim=1).norm(dim=1)
loop_norms = torch.cat([g.flatten(1) for g in looped.values()], dim=1).norm(dim=1)
lesson.writer.add_histogram("per_sample/grad_norm", norms.cpu(), 0)
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(range(SAMPLES), norms.cpu().numpy(), color="tab:blue", label="vmap(grad(·))")
ax.plot(range(SAMPLES), loop_norms.cpu().numpy(), "k.", label="loop of backward()")
ax.set(title="per-sample gradient norms", xlabel="sample", ylabel="‖∇ loss_i‖")
ax.legend(loc="lower right", framealpha=0.9)
fig.tight_layout()
show(fig, "per_sample_grad_norms")
check(torch.allclose(norms, loop_norms), "per-sample norms: vmap's equal the loop's")

# %% [markdown]
# ## What to take away
#
# - Forward mode carries `(value, tangent)` pairs: one pass gives `J v` (a column), no graph
#   is kept. Reverse mode gives `uᵀJ` (a row). `u · (J v) = (uᵀJ) · v` tests one with the other.
# - A full Jacobian costs one pass per input (`jacfwd`) or per output (`jacrev`): tall
#   functions want forward mode, losses (one output) want reverse mode; Hessians want
#   forward-over-reverse, `jacfwd(jacrev(f))`.
# - `functional_call` + `vmap(grad(loss))` gives per-sample gradients in one call.

# %%
lesson.done()
