# %% [markdown]
# # 03 · The computational graph: grad_fn, leaves, a dynamic graph, retain_graph, detach()
#
# Every tracked operation adds a node to a graph that runs *backwards*: a result's
# `grad_fn` is the node that knows how to send a gradient to its inputs, and
# `grad_fn.next_functions` points at the nodes of those inputs. The walk ends at
# `AccumulateGrad` nodes, one per **leaf** tensor — the tensors you created with
# `requires_grad=True`, whose `.grad` is filled in.
#
# The graph is rebuilt on every forward pass by ordinary Python (a *dynamic* graph).
# `backward()` frees the tensors its nodes *saved* for the gradient (unless told otherwise,
# `retain_graph=True`); the nodes stay, walkable. `detach()` cuts the graph — and a GAN
# shows why that matters in practice.

# %% tags=["parameters"]
MAX_POWER = 5  # power(x, n) is built for n = 1 … MAX_POWER in the dynamic-graph cell
GAN_BATCH = 16  # real and fake points per step in the GAN cells

# %%
import math
import warnings

import graphviz
import torch
import torch.nn.functional as F
from torch import nn
from torchviz import make_dot

from lab.lessons.harness import check, open_lesson, show_image

lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## Walking grad_fn → next_functions
#
# `loss = sum(tanh(w·x + b))` with `w`, `b` tracked and the data `x` not. Start at
# `loss.grad_fn` and follow `next_functions` until there is nowhere to go. There is no node
# for `x`: autograd records only what leads to a tensor that needs a gradient.


# %%
def small_model(device: str | torch.device = "cpu"):
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, device=device)
    w = torch.tensor(0.8, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.tensor(-0.3, dtype=torch.float64, device=device, requires_grad=True)
    z = w * x + b
    loss = torch.tanh(z).sum()
    return x, w, b, z, loss


def walk_graph(tensor: torch.Tensor) -> list[tuple[int, object]]:
    """Every backward node reachable from tensor.grad_fn, once each, depth first:
    (depth, node). A leaf itself has no grad_fn, hence no nodes."""
    found, seen = [], set()
    stack = [(0, tensor.grad_fn)] if tensor.grad_fn is not None else []
    while stack:
        depth, node = stack.pop()
        if node in seen:  # a graph, not a tree: x·x reaches x's node twice
            continue
        seen.add(node)
        found.append((depth, node))
        # reversed: visit inputs in their natural order; None = an input needing no gradient
        stack.extend(
            (depth + 1, child) for child, _ in reversed(node.next_functions) if child is not None
        )
    return found


def describe(node) -> str:
    name = type(node).__name__
    if name == "AccumulateGrad":  # a leaf: node.variable is the tensor itself
        leaf = node.variable
        return f"{name} → leaf of shape {tuple(leaf.shape)}, value {leaf.tolist()}"
    return name


def text_walk(tensor: torch.Tensor) -> str:
    """The graph as indented text, one node per line."""
    return "\n".join("  " * (depth + 1) + describe(node) for depth, node in walk_graph(tensor))


x, w, b, z, loss = small_model(device)
print(f"loss = {loss.item():.6f}, loss.grad_fn = {loss.grad_fn}")
print(text_walk(loss))
nodes = walk_graph(loss)
names = [type(node).__name__ for _, node in nodes]
check(
    names
    == [
        "SumBackward0",
        "TanhBackward0",
        "AddBackward0",
        "MulBackward0",
        "AccumulateGrad",
        "AccumulateGrad",
    ],
    "loss.grad_fn chain: Sum ← Tanh ← Add ← (Mul ← w), b; no node for the data x",
)
leaves = [node.variable for _, node in nodes if type(node).__name__ == "AccumulateGrad"]
check(
    len(leaves) == 2 and leaves[0] is w and leaves[1] is b,
    "the AccumulateGrad nodes hold exactly the leaves w and b",
)

# %% [markdown]
# ## The same graph as a picture
#
# `torchviz.make_dot(loss, params={"w": w, "b": b})` describes the graph in Graphviz's
# language; Graphviz's `dot` program lays it out. Gray boxes are backward nodes, blue boxes
# the leaves that receive `.grad` (with their shapes), the green box is `loss` itself.
# Arrows follow the forward computation, from the leaves to `loss`; `backward()` sends the
# gradient against them. (Without Graphviz installed you get the text walk instead — the
# same graph.) The picture also goes to TensorBoard (tab *Images*).


# %%
def picture_boxes(dot: graphviz.Digraph) -> dict[str, list[str]]:
    """The boxes torchviz drew, by colour: "gray" (backward nodes), "lightblue" (leaves),
    "green" (the output tensor); each box named by the first line of its label."""
    boxes: dict[str, list[str]] = {"gray": [], "lightblue": [], "green": []}
    for statement in dot.body:
        label = statement.partition("[label=")[2]
        if not label or "->" in statement:
            continue
        text = label.split('"')[1] if label.startswith('"') else label.split()[0].rstrip("]")
        colour = "lightblue" if "lightblue" in label else "green" if "green" in label else "gray"
        boxes[colour].append(text.split("\n")[0])
    return boxes


def render_png(dot: graphviz.Digraph) -> bytes | None:
    """The picture as PNG bytes, or None when Graphviz's `dot` program is not installed."""
    try:
        return dot.pipe(format="png")
    except graphviz.ExecutableNotFound:
        return None


def draw_graph(tensor: torch.Tensor, params: dict, tag: str) -> bool:
    """The graph behind `tensor` as a picture under the cell and in the run; without
    Graphviz, its text walk instead. True when a picture was drawn."""
    png = render_png(make_dot(tensor, params=params))
    if png is None:
        print("Graphviz's `dot` is not installed (Debian: apt-get install graphviz).")
        print("The same graph, as the text walk of grad_fn.next_functions:")
        print(text_walk(tensor))
        return False
    show_image(png, tag)
    return True


x, w, b, z, loss = small_model(device)
boxes = picture_boxes(make_dot(loss, params={"w": w, "b": b}))
print("gray boxes (backward nodes):", ", ".join(boxes["gray"]))
print("blue boxes (leaves):", ", ".join(boxes["lightblue"]))
drawn = draw_graph(loss, {"w": w, "b": b}, "autograd_graph")
walked = sorted(type(node).__name__ for _, node in walk_graph(loss))
check(
    sorted(boxes["gray"]) == walked and sorted(boxes["lightblue"]) == ["b", "w"],
    "the picture has a gray box per node of the walk and blue boxes for the leaves w and b",
)

# %% [markdown]
# ## Leaves, non-leaves and retain_grad()
#
# Only leaves get `.grad`. An intermediate like `z = w·x + b` is not a leaf; its gradient
# passes through and is dropped (PyTorch warns if you read it). `z.retain_grad()` asks to
# keep it.


# %%
def non_leaf_grad_after_backward(retain: bool, device: str | torch.device = "cpu"):
    """(z.grad after backward, warnings raised while reading it, w.grad)."""
    _, w, _, z, loss = small_model(device)
    if retain:
        z.retain_grad()
    loss.backward()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z_grad = z.grad
    return z_grad, [str(item.message) for item in caught], w.grad


x, w, b, z, loss = small_model(device)
print(f"is_leaf: w {w.is_leaf}, b {b.is_leaf}, x {x.is_leaf}, z {z.is_leaf}, loss {loss.is_leaf}")
check(
    w.is_leaf and b.is_leaf and x.is_leaf and not z.is_leaf and not loss.is_leaf,
    "w, b (created by us) and x (no grad needed) are leaves; z and loss are not",
)
z_grad, caught, w_grad = non_leaf_grad_after_backward(retain=False, device=device)
warning = ". ".join(caught[0].split(". ")[:2]) if caught else None
print(f"z.grad without retain_grad(): {z_grad}; PyTorch warns: {warning}.")
check(
    z_grad is None and w_grad is not None and any("non-leaf" in m for m in caught),
    "after backward() only leaves have .grad; reading a non-leaf's .grad warns",
)
z_grad, caught, w_grad = non_leaf_grad_after_backward(retain=True, device=device)
expected = 1 - torch.tanh(z.detach()) ** 2  # d/dz Σ tanh(z) = 1 − tanh²(z)
print(f"z.grad with retain_grad(): {z_grad.tolist()}")
print(f"1 − tanh²(z) by hand:      {expected.tolist()}")
check(
    torch.allclose(z_grad, expected) and not caught,
    "retain_grad() keeps dloss/dz = 1 − tanh²(z) (float64)",
)
check(
    torch.allclose(w_grad, (expected * x).sum()),
    "and dloss/dw = Σ (1 − tanh²(z))·x, by the chain rule",
)

# %% [markdown]
# A classic trap: `torch.randn(3, requires_grad=True).double()` (or `.to("cuda")` of a CPU
# tensor) is the *result* of an operation, so it is not a leaf and never gets `.grad` —
# create tensors with the right dtype and device instead.


# %%
def converted_is_not_leaf() -> tuple[bool, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reading .grad of a non-leaf warns; that is the point
        t = torch.randn(3, requires_grad=True).double()
        t.sum().backward()
        return t.is_leaf, t.grad


is_leaf, grad = converted_is_not_leaf()
print(f"torch.randn(3, requires_grad=True).double(): is_leaf = {is_leaf}, .grad = {grad}")
check(
    not is_leaf and grad is None,
    "randn(requires_grad=True).double() is not a leaf and gets no .grad",
)

# %% [markdown]
# ## A dynamic graph
#
# The graph is whatever the Python code did *this* call. `power(x, n)` multiplies in a
# loop, so its graph has `n − 1` multiplication nodes; `sign_branch` takes a different
# branch — and so a different graph — depending on the data.


# %%
def power(x: torch.Tensor, n: int) -> torch.Tensor:
    y = x
    for _ in range(n - 1):
        y = y * x
    return y


def sign_branch(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) if x.item() > 0 else x**3


def count_nodes(tensor: torch.Tensor, name: str) -> int:
    return sum(type(node).__name__ == name for _, node in walk_graph(tensor))


def grad_of(fn, x0: float, device: str | torch.device = "cpu") -> tuple[float, list[str]]:
    """(d fn/dx at x0, names of the graph's nodes)."""
    x = torch.tensor(x0, dtype=torch.float64, device=device, requires_grad=True)
    y = fn(x)
    names = [type(node).__name__ for _, node in walk_graph(y)]
    y.backward()
    return x.grad.item(), names


consistent = True
for n in range(1, MAX_POWER + 1):
    grad, names = grad_of(lambda t, n=n: power(t, n), 1.5, device)
    multiplications = names.count("MulBackward0")
    print(f"power(x, {n}): {multiplications} Mul nodes, d/dx at 1.5 = {grad:.4f}")
    lesson.writer.add_scalar("dynamic_graph/mul_nodes", multiplications, n)
    lesson.writer.add_scalar("dynamic_graph/dxn_dx_at_1.5", grad, n)
    consistent &= multiplications == n - 1 and abs(grad - n * 1.5 ** (n - 1)) < 1e-12
check(
    consistent,
    f"power(x, n) builds n − 1 Mul nodes per call and d/dx = n·x^(n−1), n = 1..{MAX_POWER}",
)

# %%
for x0, node, branch, analytic in (
    (0.7, "SinBackward0", "sin x", math.cos(0.7)),
    (-0.7, "PowBackward0", "x³", 3 * 0.7**2),
):
    grad, names = grad_of(sign_branch, x0, device)
    print(f"sign_branch({x0}) graph: {names}, d/dx = {grad:.6f}")
    check(
        node in names and abs(grad - analytic) < 1e-12,
        f"x = {x0} takes the {branch} branch; autograd differentiates that branch",
    )

# %% [markdown]
# ## retain_graph
#
# Some nodes save tensors for the backward pass: `x²`'s node keeps `x`, since its gradient
# is `2x`. `backward()` frees those *saved tensors* — not the graph: its nodes are still
# there to walk afterwards, but a second `backward()` through them fails for want of `x`.
# A graph whose nodes saved nothing, like `(x + 1).sum()` (the gradient of `+ 1` and of a
# sum needs no tensor), goes backwards twice without complaint. With `retain_graph=True`
# the first call keeps the saved tensors; the second call works — and, as always, *adds* to
# `.grad`.


# %%
def after_backward(device: str | torch.device = "cpu") -> dict[str, object]:
    """L = Σ x²: the graph's nodes before and after backward(), the tensor x²'s node saved,
    and the error reading it raises afterwards."""
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, device=device, requires_grad=True)
    loss = (x**2).sum()
    power = loss.grad_fn.next_functions[0][0]  # PowBackward0
    before = [type(node).__name__ for _, node in walk_graph(loss)]
    saved = power._saved_self  # what it kept for 2x: x itself
    loss.backward()
    after = [type(node).__name__ for _, node in walk_graph(loss)]
    try:
        freed = None if power._saved_self is not None else "nothing saved"
    except RuntimeError as exc:
        freed = str(exc)
    return {"before": before, "after": after, "saved is x": saved is x, "freed": freed}


def backward_twice(retain_graph: bool, device: str | torch.device = "cpu", loss_of=None):
    """(x.grad after the second backward or None, error message or None); L = loss_of(x),
    by default Σ x²."""
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, device=device, requires_grad=True)
    loss = loss_of(x) if loss_of is not None else (x**2).sum()
    loss.backward(retain_graph=retain_graph)
    try:
        loss.backward()
    except RuntimeError as exc:
        return None, str(exc)
    return x.grad, None


seen = after_backward(device)
print(f"nodes before backward(): {seen['before']}")
print(f"nodes after backward():  {seen['after']}")
print(f"reading PowBackward0's saved x afterwards: RuntimeError: {str(seen['freed'])[:80]}…")
check(
    seen["after"] == seen["before"] == ["SumBackward0", "PowBackward0", "AccumulateGrad"],
    "after backward() the graph is still there: the same nodes Sum ← Pow ← x, walkable",
)
check(
    seen["saved is x"] and "already been freed" in str(seen["freed"]),
    "what backward() freed is the tensor x²'s node saved (x, for 2x)",
)
grad, error = backward_twice(retain_graph=False, device=device)
print(f"second backward() without retain_graph: RuntimeError: {str(error).split('.')[0]}")
check(
    grad is None and "backward through the graph a second time" in str(error),
    "so a second backward() through that graph raises RuntimeError",
)
grad, error = backward_twice(False, device, loss_of=lambda x: (x + 1).sum())
shown = error if grad is None else f"x.grad = {grad.tolist()}"
print(f"(x + 1).sum(), backward() twice without retain_graph: {shown}")
check(
    error is None and torch.equal(grad, torch.full_like(grad, 2.0)),
    "(x + 1).sum() saved no tensor: backward() twice works without retain_graph, .grad = 1 + 1",
)
grad, error = backward_twice(retain_graph=True, device=device)
x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, device=device)
shown = None if grad is None else grad.tolist()
print(f"with retain_graph=True: x.grad after two backward() = {shown}")
check(
    error is None and torch.equal(grad, 2 * (2 * x)),
    "with retain_graph=True it works, and .grad holds the sum 2 · 2x",
)

# %% [markdown]
# ## detach(): cutting the graph
#
# `y = x²` then `z = y.detach() · x`. Autograd treats the detached `y` as a constant, so
# `dz/dx = y = x²` — not the `3x²` you would get from `z = x³`. (At x = 3, where x², 2x
# and 3x² all differ: at x = 2, x² = 2x would hide a mix-up.)


# %%
def detached_product(x0: float, device: str | torch.device = "cpu") -> tuple[float, bool, bool]:
    """(dz/dx, detached.requires_grad, detached.is_leaf)."""
    x = torch.tensor(x0, dtype=torch.float64, device=device, requires_grad=True)
    y = x**2
    detached = y.detach()
    (detached * x).backward()
    return x.grad.item(), detached.requires_grad, detached.is_leaf


grad, requires_grad, is_leaf = detached_product(3.0, device)
print(f"z = x².detach() · x at x = 3: dz/dx = {grad} (3x² would be 27)")
check(
    grad == 9.0 and not requires_grad and is_leaf,
    "detach() gives an untracked leaf, a constant: dz/dx = x² = 9, not 3x² = 27",
)

# %% [markdown]
# ## Why detach() matters in practice: a GAN's discriminator step
#
# A GAN trains two networks against each other. The generator `G` turns noise into fake
# samples; the discriminator `D` scores samples as real (1) or fake (0). Each step has two
# halves on the same `fake = G(z)`:
#
# 1. **D step**: `loss_D = BCE(D(real), 1) + BCE(D(fake.detach()), 0)`, backward, update D.
# 2. **G step**: `loss_G = BCE(D(fake), 1)`, backward, update G.
#
# The `detach()` in the D step is not decoration. Without it, `loss_D.backward()` runs on
# into G: it puts D's gradients — "make the fakes *easier* to spot" — into G's `.grad`,
# and it frees the tensors G's part of the graph saved, so the G step that follows cannot
# backward through `fake` any more.


# %%
def gan_pair(device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module]:
    """A tiny generator (2-d noise → 2-d point) and discriminator (2-d point → logit)."""
    with torch.random.fork_rng(devices=[]):  # fixed weights, the global RNG left alone
        torch.manual_seed(0)
        generator = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
        discriminator = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    return generator.to(device, torch.float64), discriminator.to(device, torch.float64)


def gan_batch(size: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(noise z for G, real points around (2, 2))."""
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(size, 2, generator=generator, dtype=torch.float64)
    real = 2.0 + 0.3 * torch.randn(size, 2, generator=generator, dtype=torch.float64)
    return z.to(device), real.to(device)


def discriminator_loss(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    ones = torch.ones(len(real), 1, dtype=real.dtype, device=real.device)
    zeros = torch.zeros(len(fake), 1, dtype=fake.dtype, device=fake.device)
    return F.binary_cross_entropy_with_logits(D(real), ones) + F.binary_cross_entropy_with_logits(
        D(fake), zeros
    )


def discriminator_step(G: nn.Module, D: nn.Module, z, real, detach: bool):
    """D's half of a GAN step (gradients only). Returns (fake, loss_D, grads), grads being
    every parameter's .grad afterwards, keyed "G.<name>" / "D.<name>" (None: no gradient)."""
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    fake = G(z)
    d_input = fake.detach() if detach else fake
    loss_d = discriminator_loss(D, real, d_input)
    loss_d.backward()
    # snapshots: a later backward() (the G step) adds into the same .grad tensors in place
    grads = {f"G.{name}": _copy(p.grad) for name, p in G.named_parameters()}
    grads |= {f"D.{name}": _copy(p.grad) for name, p in D.named_parameters()}
    return fake, loss_d, grads


def _copy(grad: torch.Tensor | None) -> torch.Tensor | None:
    return None if grad is None else grad.clone()


def generator_step(D: nn.Module, fake: torch.Tensor) -> str | None:
    """G's half on the same `fake`: loss_G = BCE(D(fake), 1), backward. The error, if any."""
    ones = torch.ones(len(fake), 1, dtype=fake.dtype, device=fake.device)
    loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
    try:
        loss_g.backward()
    except RuntimeError as exc:
        return str(exc)
    return None


def parameter_leaves(tensor: torch.Tensor, *modules: nn.Module) -> list[str]:
    """Which of the modules' parameters the graph behind `tensor` reaches ("G.0.weight" …)."""
    reached = {id(node.variable) for _, node in walk_graph(tensor) if hasattr(node, "variable")}
    return [
        f"{label}.{name}"
        for label, module in zip("GD", modules, strict=False)
        for name, p in module.named_parameters()
        if id(p) in reached
    ]


D_PARAMETERS = ["D.0.weight", "D.0.bias", "D.2.weight", "D.2.bias"]
G_PARAMETERS = ["G.0.weight", "G.0.bias", "G.2.weight", "G.2.bias"]
G, D = gan_pair(device)
z, real = gan_batch(GAN_BATCH, device)
fake, loss_d, with_detach = discriminator_step(G, D, z, real, detach=True)
print(f"loss_D = {loss_d.item():.4f}; its graph reaches {parameter_leaves(loss_d, G, D)}")
check(
    parameter_leaves(loss_d, G, D) == D_PARAMETERS,
    "with fake.detach(), loss_D's graph reaches D's four parameters and none of G's",
)
for name, grad in with_detach.items():
    print(
        f"  with detach: {name:<12} .grad = {'None' if grad is None else f'norm {grad.norm():.4f}'}"
    )
check(
    all(with_detach[name] is None for name in with_detach if name.startswith("G."))
    and all(with_detach[name] is not None for name in with_detach if name.startswith("D.")),
    "with fake.detach(), the D step fills D's .grad and leaves every G .grad None",
)
error = generator_step(D, fake)
print(f"then the G step on the same fake: {'works' if error is None else error}")
check(error is None, "with fake.detach(), the G step can still backward through G")

# %%
G, D = gan_pair(device)
z, real = gan_batch(GAN_BATCH, device)
fake, loss_d, without_detach = discriminator_step(G, D, z, real, detach=False)
print(f"loss_D = {loss_d.item():.4f}; its graph reaches {parameter_leaves(loss_d, G, D)}")
check(
    parameter_leaves(loss_d, G, D) == G_PARAMETERS + D_PARAMETERS,
    "without detach(), loss_D's graph runs on through G: all eight parameters",
)
for name, grad in without_detach.items():
    print(
        f"  without:     {name:<12} .grad = {'None' if grad is None else f'norm {grad.norm():.4f}'}"
    )
check(
    all(
        without_detach[name] is not None and without_detach[name].abs().sum() > 0
        for name in without_detach
        if name.startswith("G.")
    ),
    "without detach(), the D step puts (nonzero) gradients into every G parameter",
)
# What landed in G is d loss_D / d θ_G: the oracle recomputes it from scratch.
G2, D2 = gan_pair(device)
oracle = torch.autograd.grad(discriminator_loss(D2, real, G2(z)), list(G2.parameters()))
check(
    all(
        torch.allclose(without_detach[f"G.{name}"], want)
        for (name, _), want in zip(G.named_parameters(), oracle, strict=True)
    ),
    "those G gradients are d loss_D/d θ_G: an update with them would help D, not G",
)
check(
    all(
        torch.allclose(without_detach[name], with_detach[name])
        for name in without_detach
        if name.startswith("D.")
    ),
    "for D itself detach() changes nothing: its gradients are the same either way",
)
error = generator_step(D, fake)
print(f"then the G step on the same fake: RuntimeError: {str(error).split('.')[0]}")
check(
    error is not None and "backward through the graph a second time" in error,
    "without detach(), the D step freed what G's graph saved: the G step on the same fake fails",
)

# %% [markdown]
# The two graphs of `loss_D` side by side in pictures: with `detach()` the graph stops at
# `fake` (only D's parameters are blue boxes); without it, it runs on through G.
# (Patching the failing G step with `retain_graph=True` would hide the error, not the bug:
# every D step would still backpropagate through G for nothing, and G's `.grad` would hold
# D's gradients unless it is zeroed before the G step.)

# %%
for detach in (True, False):
    G, D = gan_pair(device)
    z, real = gan_batch(GAN_BATCH, device)
    fake = G(z)
    loss_d = discriminator_loss(D, real, fake.detach() if detach else fake)
    params = {f"G.{n}": p for n, p in G.named_parameters()}
    params |= {f"D.{n}": p for n, p in D.named_parameters()}
    tag = "gan_loss_D/with_detach" if detach else "gan_loss_D/without_detach"
    print(f"{tag}: the graph reaches {parameter_leaves(loss_d, G, D)}")
    draw_graph(loss_d, params, tag)
    pictured = picture_boxes(make_dot(loss_d, params=params))["lightblue"]
    expected = D_PARAMETERS if detach else G_PARAMETERS + D_PARAMETERS
    check(
        sorted(pictured) == sorted(expected),
        f"{tag}: blue boxes for {'D' if detach else 'G and D'}'s parameters only",
    )

# %% [markdown]
# ## Watching backward() run: the inspector
#
# `inspect(loss, params)` from `lab.inspector` runs `backward()` with a hook on every node
# and records what the engine does: the order it runs the nodes in and the gradient sent
# along each edge. In JupyterLab press *step ▶*: the current node lights up and each edge
# shows the gradient sent along it (norm and shape; hover for the values). Arrows point the
# way the gradient flows, from the loss to the leaves. The same small model as above.

# %%
from lab.inspector import inspect

x, w, b, z, loss = small_model(device)
view = inspect(loss, params={"w": w, "b": b}, tensors={"z": z}, tag="inspector/small_model")
print("the engine ran:", " → ".join(view.nodes[i].title for i in view.order))
position = {view.nodes[i].fn: step for step, i in enumerate(view.order)}
check(
    all(
        position[node] < position[child]
        for _, node in walk_graph(loss)
        for child, _ in node.next_functions
        if child is not None
    )
    and len(position) == len(walk_graph(loss)),
    "backward() runs every node of the walk once, each before the nodes it sends gradients to",
)
# The oracle: autograd.grad on a fresh copy of the same model.
_, w2, b2, z2, loss2 = small_model(device)
dz, dw, db = torch.autograd.grad(loss2, (z2, w2, b2))
check(
    torch.allclose(view.received("z")[0], dz),
    "the gradient arriving at z's node (AddBackward0) is dloss/dz",
)
check(
    torch.allclose(view.arrivals("w")[0], dw)
    and torch.allclose(view.arrivals("b")[0], db)
    and torch.allclose(w.grad, dw),
    "what arrives at the leaves w and b is dloss/dw and dloss/db: their .grad",
)

# %% [markdown]
# Each node also keeps what it *saved* for backward (`x²` keeps `x`). `backward()` releases
# it as it goes — which is why the second `backward()` failed in the `retain_graph` section;
# `retain_graph=True` keeps it.

# %%
for retain in (False, True):
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, device=device, requires_grad=True)
    loss = (x**2).sum()
    view = inspect(loss, {"x": x}, retain_graph=retain, show=False)
    pow_node = next(node for node in view.nodes if node.op == "PowBackward0")
    released = all(s.freed for s in view.saved_after[pow_node.index])
    try:
        loss.backward()
        second = "works"
    except RuntimeError:
        second = "fails"
    saved = ", ".join(f"{s.name} {s.shape} {s.nbytes} B" for s in pow_node.saved)
    print(
        f"retain_graph={retain}: PowBackward0 saved {saved}; after backward() it is "
        f"{'released' if released else 'kept'}; a second backward() {second}"
    )
    check(
        pow_node.saved_bytes == 3 * 8 and released == (second == "fails") == (not retain),
        f"retain_graph={retain}: x² saved x (3 float64 = 24 B), "
        + ("released, so a second backward() fails" if released else "kept, so a second works"),
    )

# %% [markdown]
# And `detach()` from the inspector's side: with `fake.detach()` every parameter of G is
# listed as getting no gradient from `loss_D`; without it, none is.

# %%
for detach in (True, False):
    G, D = gan_pair(device)
    z, real = gan_batch(GAN_BATCH, device)
    cut = G(z).detach() if detach else G(z)
    named = {f"{k}.{n}": p for k, net in (("G", G), ("D", D)) for n, p in net.named_parameters()}
    view = inspect(discriminator_loss(D, real, cut), named, backward=False, show=False)
    print(f"detach={detach}: gets no gradient: {sorted(view.no_grad) or 'none'}")
    # The oracle: autograd.grad reports the parameters loss_D does not depend on as None.
    grads = torch.autograd.grad(view.loss, list(named.values()), allow_unused=True)
    unused = {name for name, grad in zip(named, grads, strict=True) if grad is None}
    expected = {name for name in named if name.startswith("G.")} if detach else set()
    check(
        set(view.no_grad) == unused == expected,
        f"detach={detach}: the inspector lists "
        + ("every G parameter as getting no gradient" if detach else "none: loss_D reaches G"),
    )

# %% [markdown]
# ## What to take away
#
# - `grad_fn` / `next_functions` is the graph; `AccumulateGrad` nodes are the leaves.
# - The graph is rebuilt by every forward pass; `backward()` frees what its nodes saved
#   (`retain_graph=True` keeps it), while the nodes stay walkable.
# - `detach()` makes a constant: use it wherever a value must not be trained through — the
#   D step of a GAN, targets computed from the model itself, values you only log.

# %%
lesson.done()
