# %% [markdown]
# # 18 · Saved tensors, in-place and memory
#
# To compute a gradient, a backward node needs some of the forward's values: `x·y` needs
# `x` and `y`, `exp(x)` needs its own output, `x + y` needs nothing. Autograd *saves* those
# tensors on the node during the forward and frees them in `backward()`. That is where a
# training step's memory goes — and why changing a saved tensor in place is an error.
#
# This lesson opens the nodes (`_saved_*`), follows the version counter that catches in-place
# changes, then takes control of saving with `saved_tensors_hooks`: count the bytes a model
# saves, move them to the CPU, and trade them for recomputation (checkpointing) — measured
# exactly, byte for byte.

# %% tags=["parameters"]
BLOCKS = 4  # blocks of the model whose saved tensors are counted (Linear, GELU, Dropout, Linear)
WIDTH = 64  # features in and out of each block (4 × WIDTH inside)
BATCH = 32  # rows of the input batch
DROPOUT = 0.1  # dropout probability inside each block (checkpointing must replay its mask)
SEED = 0  # seed of the model's weights, its input and its dropout masks
REPEATS = 3  # timed training steps, with and without checkpointing

# %%
import contextlib
import copy
import gc
import time
import weakref
from collections import Counter

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device
F64 = torch.float64

# %% [markdown]
# ## What a node saves: `_saved_*`
#
# Every backward node shows what it saved as `_saved_<name>` attributes. `x ** 2` saves `x`
# (its derivative is `2x`) — the very tensor `x`; `exp(x)` saves its *result* (its derivative
# is `eˣ` itself); `x + y` saves no tensor at all (its derivative is 1).


# %%
def saved_tensors(node) -> dict[str, torch.Tensor]:
    """The tensors a backward node saved, by attribute name."""
    found = {name: getattr(node, name) for name in dir(node) if name.startswith("_saved_")}
    return {name: value for name, value in found.items() if isinstance(value, torch.Tensor)}


x = torch.tensor([0.5, -1.0, 2.0], dtype=F64, device=device, requires_grad=True)
w = torch.tensor([3.0, 0.5, -2.0], dtype=F64, device=device, requires_grad=True)
examples = {
    "x ** 2": x**2,
    "x.exp()": x.exp(),
    "x * w": x * w,
    "x + w": x + w,
    "x.tanh()": x.tanh(),
    "x.relu()": x.relu(),
}
for name, out in examples.items():
    print(f"{name:<9} {type(out.grad_fn).__name__:<16} saves {sorted(saved_tensors(out.grad_fn))}")
square, exp = examples["x ** 2"], examples["x.exp()"]
check(square.grad_fn._saved_self is x, "x ** 2 saves x itself (_saved_self is x)")
check(
    torch.equal(exp.grad_fn._saved_result, exp) and exp.grad_fn._saved_result is not exp,
    "x.exp() saves its result: equal to the output, a separate tensor object",
)
check(
    set(saved_tensors(examples["x * w"].grad_fn)) == {"_saved_self", "_saved_other"}
    and not saved_tensors(examples["x + w"].grad_fn),
    "x * w saves both inputs, x + w saves none",
)

# %% [markdown]
# `backward()` frees them: reading a saved tensor afterwards raises the error a second
# `backward()` gives (lesson 03's `retain_graph`).


# %%
def read_after_backward(out: torch.Tensor) -> str | None:
    out.sum().backward()
    try:
        _ = out.grad_fn._saved_self
    except RuntimeError as error:
        return str(error).split(". ")[0]
    return None


error = read_after_backward(x * w)
print("after backward():", error)
check(error is not None and "freed" in error, "after backward() the saved tensors are freed")

# %% [markdown]
# ## The version counter
#
# Every tensor carries `_version`, bumped by each in-place operation on it (`add_`, `x[i] =`,
# `+=` …). A view shares its base's counter: writing through one is writing to both.


# %%
def versions() -> list[tuple[str, int, int]]:
    """(operation, base._version, view._version) after each step."""
    base = torch.zeros(4)
    view = base[1:]
    steps = [("created", base._version, view._version)]
    base.add_(1)
    steps.append(("base.add_(1)", base._version, view._version))
    base[0] = 5.0
    steps.append(("base[0] = 5", base._version, view._version))
    view.mul_(2)
    steps.append(("view.mul_(2)", base._version, view._version))
    return steps


steps = versions()
for operation, base_version, view_version in steps:
    print(f"{operation:<13} base._version = {base_version}, view._version = {view_version}")
check(
    [s[1] for s in steps] == [0, 1, 2, 3] and all(s[1] == s[2] for s in steps),
    "each in-place operation bumps _version by 1, and a view shares its base's counter",
)

# %% [markdown]
# ## Why changing a saved tensor in place is an error
#
# `y = exp(x)` saves `y` (at version 0). `y.add_(1)` changes it (version 1). Backward would
# now compute `(eˣ + 1)·grad` instead of `eˣ·grad` — a wrong gradient, silently. Autograd
# compares the saved tensor's version with the one it recorded and refuses. Changing in place
# a tensor *nobody saved* is fine: `x + 1` saves nothing, so `(x + 1).mul_(2)` backpropagates
# to the right `2`.


# %%
def in_place_after_save(device="cpu") -> str | None:
    """y = exp(x), then y changed in place, then backward: the error, or None."""
    x = torch.tensor([0.5, -1.0, 2.0], dtype=F64, device=device, requires_grad=True)
    y = x.exp()
    y.add_(1)
    try:
        y.sum().backward()
    except RuntimeError as error:
        return str(error).split(". Hint")[0]
    return None


def in_place_unsaved(device="cpu") -> torch.Tensor:
    """d/dx Σ 2(x + 1): the sum's input changed in place, but nothing saved it."""
    x = torch.tensor([0.5, -1.0, 2.0], dtype=F64, device=device, requires_grad=True)
    y = x + 1
    y.mul_(2)
    y.sum().backward()
    return x.grad


error = in_place_after_save(device)
print("RuntimeError:", error)
check(
    error is not None and "is at version 1; expected version 0" in error,
    "backward refuses: the saved output of exp is at version 1, it recorded version 0",
)
grad = in_place_unsaved(device)
print("d/dx Σ 2(x + 1) with (x + 1).mul_(2):", grad.tolist())
check(torch.equal(grad, torch.full_like(grad, 2.0)), "in place on an unsaved tensor: right, 2")

# %% [markdown]
# ## In place on a view: `CopySlices`
#
# `base[1:].mul_(3)` writes into part of `base`. Autograd rewrites `base`'s history: its
# `grad_fn` becomes `CopySlices`, which sends the gradient of the slice through `MulBackward`
# and the rest through unchanged. So `d Σ base / dx = [1, 3, 3, 3]`.


# %%
def scale_a_slice(device="cpu"):
    """base = x.clone(); base[1:] *= 3 in place; returns (base's grad_fn name, dΣbase/dx)."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64, device=device, requires_grad=True)
    base = x.clone()
    base[1:].mul_(3)
    name = type(base.grad_fn).__name__
    base.sum().backward()
    return name, x.grad


name, grad = scale_a_slice(device)
print(f"base.grad_fn = {name}, dΣbase/dx = {grad.tolist()}")
check(name == "CopySlices", "an in-place change of a view makes the base's grad_fn CopySlices")
check(grad.tolist() == [1.0, 3.0, 3.0, 3.0], "and the gradient is 3 on the slice, 1 elsewhere")

# %% [markdown]
# ## In place in your own Function: `ctx.mark_dirty`
#
# A custom `autograd.Function` that changes an input in place must say so with
# `ctx.mark_dirty(x)`: autograd then moves `x`'s history onto the Function (as for a
# built-in `mul_`), bumps its version so saved copies are protected, and refuses to do it to
# a leaf. Without it autograd does not know: `x` keeps its old history (`CloneBackward0`) and
# the gradient through `x` comes out as if nothing had happened — wrong, and silent.


# %%
class ScaleInPlace(torch.autograd.Function):
    """x *= k in place, with autograd told."""

    @staticmethod
    def forward(ctx, x, k: float):
        x.mul_(k)
        ctx.mark_dirty(x)
        ctx.k = k
        return x

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.k, None


class ScaleInPlaceUntold(ScaleInPlace):
    """The same change, autograd not told (no mark_dirty)."""

    @staticmethod
    def forward(ctx, x, k: float):
        ctx.k = k
        return x.mul_(k)


def through_the_changed_input(function, device="cpu"):
    """y = a.clone(); function(y, 3) changes y in place; returns (y's grad_fn, dΣy/da)."""
    a = torch.tensor([1.0, -2.0, 0.5], dtype=F64, device=device, requires_grad=True)
    y = a.clone()
    function.apply(y, 3.0)
    name = type(y.grad_fn).__name__
    y.sum().backward()
    return name, a.grad


def on_a_leaf(function, device="cpu") -> str | None:
    a = torch.tensor([1.0, -2.0], dtype=F64, device=device, requires_grad=True)
    try:
        function.apply(a, 3.0)
    except RuntimeError as error:
        return str(error)
    return None


for function in (ScaleInPlace, ScaleInPlaceUntold):
    name, grad = through_the_changed_input(function, device)
    print(f"{function.__name__:<18} y.grad_fn = {name:<20} dΣy/da = {grad.tolist()}")
check(
    through_the_changed_input(ScaleInPlace, device)[1].tolist() == [3.0, 3.0, 3.0],
    "with mark_dirty, y's history includes the change: dΣy/da = 3",
)
check(
    through_the_changed_input(ScaleInPlaceUntold, device)[1].tolist() == [1.0, 1.0, 1.0],
    "without it, autograd still sees y as a clone of a: dΣy/da = 1, silently wrong",
)
leaf_error = on_a_leaf(ScaleInPlace, device)
print("on a leaf:", leaf_error)
check(
    leaf_error is not None and "leaf Variable" in leaf_error,
    "with mark_dirty, changing a leaf that requires grad is refused, as for built-in mul_",
)

# %% [markdown]
# ## Counting what a model saves: `saved_tensors_hooks`
#
# `torch.autograd.graph.saved_tensors_hooks(pack, unpack)` hands every tensor autograd saves
# to `pack`, and stores whatever `pack` returns; `backward` calls `unpack` on it to get the
# tensor back. A pack that returns the tensor unchanged and writes down its size counts the
# bytes a model saves. Module pre-hooks tell it which block and which kind of module is
# running; parameters are counted apart (they exist anyway, saving them costs nothing).
#
# The model: `BLOCKS` blocks of `Linear(W, 4W) → GELU → Dropout → Linear(4W, W)`.


# %%
def make_model(blocks: int, width: int, dropout: float, seed: int, device="cpu") -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Linear(width, 4 * width),
                    nn.GELU(),
                    nn.Dropout(dropout),
                    nn.Linear(4 * width, width),
                )
                for _ in range(blocks)
            )
        )
    return model.to(device, F64)


class SavedBytes(torch.autograd.graph.saved_tensors_hooks):
    """Inside `with SavedBytes(model) as saved:`, a log of every tensor autograd saves:
    its block, the kind of module saving it, its bytes, and whether it is a parameter."""

    def __init__(self, model: nn.Module):
        super().__init__(self.pack, self.unpack)
        self.model, self.log, self.where = model, [], ("outside", "")
        self.parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def __enter__(self):
        self.handles = [
            module.register_forward_pre_hook(self.entering(name))
            for name, module in self.model.named_modules()
            if name
        ]
        return super().__enter__()

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        return super().__exit__(*exc)

    def entering(self, name: str):
        def hook(module, args):
            self.where = (name.split(".")[0], type(module).__name__)

        return hook

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        block, kind = self.where
        parameter = tensor.untyped_storage().data_ptr() in self.parameters
        self.log.append(
            {"block": block, "kind": kind, "bytes": tensor.nbytes, "parameter": parameter}
        )
        return tensor  # saved as is: we only look

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def total(self, by: str | None = None, parameter: bool = False):
        """Bytes of activations (or of parameters), in all or per "block" / "kind"."""
        entries = [e for e in self.log if e["parameter"] == parameter]
        if by is None:
            return sum(e["bytes"] for e in entries)
        totals = Counter()
        for e in entries:
            totals[e[by]] += e["bytes"]
        return totals


def model_input(batch: int, width: int, seed: int, device="cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, width, generator=generator, dtype=F64).to(device)


def training_step(model: nn.Module, x: torch.Tensor, seed: int, hooks=None):
    """Forward (under `hooks`, if any), loss, backward; returns the parameters' gradients.
    The dropout masks come from `seed`, so two runs draw the same ones."""
    torch.manual_seed(seed)
    if hooks is None:
        out = model(x)
    else:
        with hooks:
            out = model(x)
    loss = out.pow(2).mean()
    return torch.autograd.grad(loss, list(model.parameters()))


model = make_model(BLOCKS, WIDTH, DROPOUT, SEED, device)
x = model_input(BATCH, WIDTH, SEED, device)
saved = SavedBytes(model)
plain_grads = training_step(model, x, SEED, saved)
by_kind = saved.total("kind")
for kind, nbytes in by_kind.items():
    print(f"{kind:<8} saves {nbytes:>9,} bytes of activations")
print(f"in all: {saved.total():,} bytes of activations, {saved.total(parameter=True):,} of weights")

# %% [markdown]
# Checked by hand. A `Linear` saves its input (for the weight's gradient) and its weight (for
# the input's gradient — except in block 0, whose input, the data, needs no gradient). `GELU`
# saves its input. `Dropout` saves its mask (as float64 on the CPU, as bool on a GPU); we
# don't count it by hand.


# %%
ITEM = 8  # bytes per float64 element
by_hand = {  # per block: the inputs of its two Linears, and of its GELU
    "Linear": BLOCKS * ITEM * (BATCH * WIDTH + BATCH * 4 * WIDTH),
    "GELU": BLOCKS * ITEM * BATCH * 4 * WIDTH,
}
weights_by_hand = ITEM * (2 * BLOCKS - 1) * WIDTH * 4 * WIDTH  # all weights but block 0's first
print(f"Linear by hand {by_hand['Linear']:,}, GELU by hand {by_hand['GELU']:,} bytes")
check(
    by_kind["Linear"] == by_hand["Linear"] and by_kind["GELU"] == by_hand["GELU"],
    "the hooks count exactly the bytes computed by hand for Linear and GELU",
)
check(
    saved.total(parameter=True) == weights_by_hand,
    "… and every weight saved once, but block 0's first (its input needs no gradient)",
)

# %% [markdown]
# Another count, without hooks: walk the graph (lesson 03) and add up each node's `_saved_*`
# tensors, per node type. The two ways must give the same total.


# %%
def saved_by_node_type(output: torch.Tensor) -> Counter:
    """Bytes of the tensors each backward node saved, by node type: the graph, walked."""
    found, todo, seen = Counter(), [output.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for tensor in saved_tensors(node).values():
            found[type(node).__name__] += tensor.nbytes
        todo.extend(child for child, _ in node.next_functions)
    return found


torch.manual_seed(SEED)
walked = saved_by_node_type(model(x))
for node_type, nbytes in sorted(walked.items()):
    print(f"{node_type:<24} {nbytes:>9,} bytes")
hooked = saved.total() + saved.total(parameter=True)
check(sum(walked.values()) == hooked, f"the graph walk and the hooks agree: {hooked:,} bytes")

# %% [markdown]
# The inspector (`lab.inspector`) puts those bytes on the picture of the graph, node by node.
# A small two-layer graph, built one operation at a time under its own counting hooks: every
# node's bytes are known without the inspector, and must be what it shows. (The first product
# saves the data only: `W1`'s gradient needs it, the data needs no gradient.)


# %%
from lab.inspector import inspect


def counted_op(op, t: torch.Tensor, counted: dict) -> torch.Tensor:
    """op(t); the bytes saved_tensors_hooks saw op save go into counted, under its node."""
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda s: packed.append(s.nbytes) or s, lambda s: s
    ):
        out = op(t)
    counted[out.grad_fn] = sum(packed)
    return out


generator = torch.Generator().manual_seed(SEED)
shapes = ((8, 6), (6, 4), (4, 2))  # the data, the two layers' weights
data, W1, W2 = (torch.randn(s, generator=generator, dtype=F64).to(device) for s in shapes)
W1.requires_grad_()
W2.requires_grad_()
counted, out = {}, data
for op in (lambda t: t @ W1, nn.functional.gelu, lambda t: t @ W2, torch.square, torch.mean):
    out = counted_op(op, out, counted)
view = inspect(out, {"W1": W1, "W2": W2}, tag="inspector/saved_bytes")
for node in view.nodes:
    what = ", ".join(f"{s.name} {s.shape}" for s in node.saved)
    print(f"{node.title:<20} saved {node.saved_bytes:>3} B {what}")
check(
    {node.fn: node.saved_bytes for node in view.nodes if node.leaf is None} == counted
    and view.saved_bytes == sum(counted.values()),
    f"the inspector's bytes per node, {view.saved_bytes} B in all, are what the hooks counted",
)

# %% [markdown]
# ## A pack hook must not keep what it packs
#
# Whatever `pack` returns lives as long as the graph; anything it keeps *elsewhere* lives on
# after it. Our hook keeps numbers only, so after `backward()` no activation is left alive
# (watched through weak references to every module's output).


# %%
def activations_alive_after_backward(model: nn.Module, x: torch.Tensor, hooks) -> int:
    """How many module outputs still exist after forward (under hooks) and backward."""
    refs = []
    handles = [
        m.register_forward_hook(lambda m, args, out: refs.append(weakref.ref(out)))
        for m in model.modules()
    ]
    training_step(model, x, SEED, hooks)
    for handle in handles:
        handle.remove()
    gc.collect()
    return sum(ref() is not None for ref in refs)


alive = activations_alive_after_backward(model, x, SavedBytes(model))
print(f"module outputs alive after backward: {alive}")
check(alive == 0, "the counting hooks keep no activation alive after backward")

# %% [markdown]
# ## Saving on the CPU: `save_on_cpu`
#
# `torch.autograd.graph.save_on_cpu()` is a ready-made pair: pack copies each saved tensor
# to the CPU, unpack brings it back to its device for backward. On a GPU that frees the
# memory of the activations for the price of copies; the gradients cannot change, since
# `backward` gets the same numbers back. (On the CPU it is a no-op; the check holds too.)


# %%
def close(grads, others) -> bool:
    """Equal to float64 rounding (a GPU may sum in another order)."""
    return all(torch.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(grads, others, strict=True))


def identical(grads, others) -> bool:
    return all(torch.equal(a, b) for a, b in zip(grads, others, strict=True))


def save_on_cpu_step(model, x) -> tuple[list, int | None]:
    """The gradients under save_on_cpu, and on CUDA how many bytes of GPU memory the saved
    tensors held (memory allocated after forward: normal minus save_on_cpu)."""
    on_gpu = x.device.type == "cuda"
    grads = training_step(model, x, SEED, torch.autograd.graph.save_on_cpu(pin_memory=on_gpu))
    if not on_gpu:
        return grads, None
    held = []
    for hooks in (contextlib.nullcontext(), torch.autograd.graph.save_on_cpu(pin_memory=True)):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.manual_seed(SEED)
        with hooks:
            out = model(x)
        held.append(torch.cuda.memory_allocated() - before)
        del out
    return grads, held[0] - held[1]


cpu_grads, freed = save_on_cpu_step(model, x)
print(f"the plain gradients, bit for bit: {identical(plain_grads, cpu_grads)}")
if freed is not None:
    print(f"GPU memory the saved activations no longer hold: {freed:,} bytes")
check(close(plain_grads, cpu_grads), "save_on_cpu leaves every gradient as it was (float64)")

# %% [markdown]
# ## Checkpointing: save less, compute twice
#
# `torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)` runs `block` without
# saving anything inside it — only its input `x` is kept — and in `backward` runs it
# again to get what it needs. Same gradients (dropout included: checkpoint replays the random
# state), far fewer saved bytes, one more forward per block. `use_reentrant=False` is the
# recommended variant (the older one needs an input that requires grad). The first call takes
# a few seconds: checkpoint imports `torch._dynamo` once.


# %%
class Checkpointed(nn.Module):
    """A block whose inner activations are recomputed in backward instead of saved."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x):
        return checkpoint(self.block, x, use_reentrant=False)


def checkpointed_copy(model: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*(Checkpointed(copy.deepcopy(block)) for block in model))


def forward_calls(model: nn.Module, step) -> Counter:
    """How many times each block's forward ran during step()."""
    calls, handles = Counter(), []
    for name, module in model.named_modules():
        if name and "." not in name:
            inner = module.block if isinstance(module, Checkpointed) else module
            handles.append(inner.register_forward_pre_hook(lambda *_, n=name: calls.update([n])))
    step()
    for handle in handles:
        handle.remove()
    return calls


light = checkpointed_copy(model)
saved_light = SavedBytes(light)
light_grads = training_step(light, x, SEED, saved_light)
calls = forward_calls(light, lambda: training_step(light, x, SEED))
plain_calls = forward_calls(model, lambda: training_step(model, x, SEED))
print(f"the same gradients, bit for bit: {identical(plain_grads, light_grads)}")
print(f"activations saved: {saved.total():,} bytes plain, {saved_light.total():,} checkpointed")
print(f"forward runs per block: {dict(plain_calls)} plain, {dict(calls)} checkpointed")
check(
    close(plain_grads, light_grads),
    "checkpointed blocks give the plain gradients (float64), dropout included",
)
check(
    saved_light.total() == BLOCKS * ITEM * BATCH * WIDTH and saved_light.total(parameter=True) == 0,
    "checkpointing saves only each block's input: BLOCKS × BATCH × WIDTH × 8 bytes",
)
check(
    set(calls.values()) == {2} and set(plain_calls.values()) == {1},
    "the price: each block's forward runs twice (again in backward), once without",
)

# %% [markdown]
# The recompute cost, timed (a print, not a claim: timings vary from machine to machine).


# %%
def seconds_per_step(model, x, repeats: int) -> float:
    training_step(model, x, SEED)  # warm-up
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        training_step(model, x, SEED)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / repeats


plain_s, light_s = seconds_per_step(model, x, REPEATS), seconds_per_step(light, x, REPEATS)
print(f"per training step: {1e3 * plain_s:.1f} ms plain, {1e3 * light_s:.1f} ms checkpointed")
fewer = saved.total() / saved_light.total()
print(f"recompute cost: × {light_s / plain_s:.2f} the time, for {fewer:.1f}× fewer saved bytes")
lesson.writer.add_scalar("checkpoint/time_ratio", light_s / plain_s, 0)

# %% [markdown]
# Per block, plain (split by the kind of module saving) versus checkpointed (the block's
# input, kept by checkpoint); in TensorBoard too (`saved_bytes/…`).


# %%
def block_bytes(saved: SavedBytes, block: str, kind: str) -> int:
    return sum(
        e["bytes"]
        for e in saved.log
        if e["block"] == block and e["kind"] == kind and not e["parameter"]
    )


plain_blocks, light_blocks = saved.total("block"), saved_light.total("block")
names = [str(n) for n in range(BLOCKS)]
for n, name in enumerate(names):
    lesson.writer.add_scalar("saved_bytes/plain", plain_blocks[name], n)
    lesson.writer.add_scalar("saved_bytes/checkpointed", light_blocks[name], n)
fig, ax = plt.subplots(figsize=(8, 3.4))
positions = torch.arange(BLOCKS).numpy()
bottom = [0.0] * BLOCKS
for kind in ("Linear", "GELU", "Dropout"):
    heights = [block_bytes(saved, name, kind) / 1024 for name in names]
    ax.bar(positions - 0.2, heights, 0.4, bottom=bottom, label=f"plain: {kind}")
    bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
checkpointed = [block_bytes(saved_light, name, "Checkpointed") / 1024 for name in names]
ax.bar(positions + 0.2, checkpointed, 0.4, label="checkpointed: the input")
ax.set(xticks=positions, xlabel="block", ylabel="KiB saved for backward")
ax.set(title=f"activations saved per block (batch {BATCH}, width {WIDTH}, float64)")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
fig.tight_layout()
show(fig, "saved_bytes_per_block")
check(
    all(light_blocks[n] < plain_blocks[n] for n in names)
    and bottom == [plain_blocks[n] / 1024 for n in names],
    "every checkpointed block saves fewer bytes than its plain twin (whose bar adds up)",
)

# %% [markdown]
# ## What to take away
#
# - A node saves what its derivative needs (`_saved_*`), and `backward()` frees it.
# - In-place changes bump `_version`; changing a saved tensor is refused, changing a view
#   rewrites the base's history (`CopySlices`); a custom Function says so with `mark_dirty`.
# - `saved_tensors_hooks` sees every saved tensor: count it, move it (`save_on_cpu`),
#   compress it — keep nothing else. Checkpointing saves a block's input only and pays one
#   more forward.

# %%
lesson.done()
