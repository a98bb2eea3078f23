# %% [markdown]
# # 21 · Autograd under torch.compile
#
# `torch.compile(fn, backend=...)` has two halves. **Dynamo** runs your Python, records the
# tensor operations into an FX graph, and hands that graph to a **backend** — any function
# `backend(graph, example_inputs) → callable`. The backends that train (`inductor`,
# `aot_eager`) go through **AOTAutograd**: it traces forward *and* backward ahead of time into
# one joint graph of ATen ops, then cuts it into a forward graph and a backward graph. Where
# it cuts decides what is **saved** for backward and what is **recomputed** in it.
#
# Here we write backends that print and record those graphs (no C compiler involved: the
# graphs run as they are), and check every claim: compiled gradients equal eager ones in
# float64, saved bytes equal what eager autograd saves, and hooks and graph breaks behave
# as said. Compiling is slow the first time (seconds); the models are tiny.

# %% tags=["parameters"]
SEED = 21  # seed of the inputs and weights
BATCH = 64  # rows of the input x
WIDTH = 32  # features in and out of the weight w
COMPILED_AUTOGRAD = True  # also capture backward itself with compiled autograd (a few seconds)

# %%
import time
from collections import Counter

import matplotlib.pyplot as plt
import torch
import torch._dynamo
from functorch.compile import (
    default_partition,
    make_boxed_func,
    min_cut_rematerialization_partition,
)
from torch import nn
from torch._dynamo.backends.common import aot_autograd

from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device
generator = torch.Generator().manual_seed(SEED)
x = torch.randn(BATCH, WIDTH, generator=generator, dtype=torch.float64).to(device)
w = (torch.randn(WIDTH, WIDTH, generator=generator, dtype=torch.float64) / WIDTH**0.5).to(device)
w.requires_grad_(True)

# %% [markdown]
# ## A backend is a function of a graph
#
# Our function: a layer `h = x @ w`, the SiLU activation `h · σ(h)`, a squared mean. The
# backend below prints the graph Dynamo captured and returns `graph.forward`, so the graph
# runs op by op as plain PyTorch — and eager autograd records it as usual. Note what the
# graph holds: the **forward** ops only, at the level you wrote them (`matmul`, `sigmoid`).


# %%
def silu_loss(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = x @ w
    return (h * torch.sigmoid(h)).pow(2).mean()


def op_name(node) -> str:
    """`mm` for aten.mm.default, `sigmoid` for torch.sigmoid, `pow` for a .pow() call."""
    target = node.target
    return getattr(target, "_opname", None) or getattr(target, "__name__", None) or str(target)


def listing(graph: torch.fx.GraphModule) -> str:
    """The graph, one line per node: inputs, `name = op(args)`, what it returns."""
    lines = []
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            lines.append(f"  input  {node.name}")
        elif node.op in ("call_function", "call_method"):
            args = ", ".join(str(arg) for arg in node.args)
            lines.append(f"  {node.name} = {op_name(node)}({args})")
        elif node.op == "output":
            lines.append(f"  return {node.args[0]}")
    return "\n".join(lines)


def ops(graph: torch.fx.GraphModule) -> list[str]:
    return [op_name(n) for n in graph.graph.nodes if n.op in ("call_function", "call_method")]


class Printer:
    """A torch.compile backend: print (and keep) Dynamo's graph, run it as it is."""

    def __init__(self, quiet: bool = False):
        self.graphs, self.quiet = [], quiet

    def __call__(self, graph, example_inputs):
        self.graphs.append(graph)
        if not self.quiet:
            print(f"Dynamo's graph #{len(self.graphs)}:\n{listing(graph)}")
        return graph.forward


def gradients(fn, *inputs) -> list[torch.Tensor]:
    """d fn(*inputs) / d(each input that requires grad), on fresh leaves: eager or compiled."""
    leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    wanted = [t for t in leaves if t.requires_grad]
    return list(torch.autograd.grad(fn(*leaves), wanted))


def compiled(fn, backend, **options):
    """torch.compile on a clean slate, so every example compiles anew for its backend."""
    torch._dynamo.reset()
    return torch.compile(fn, backend=backend, **options)


eager = gradients(silu_loss, x, w)
printer = Printer()
started = time.perf_counter()
printed = gradients(compiled(silu_loss, printer), x, w)
first_call = time.perf_counter() - started
print(f"first call (trace + compile + run): {first_call:.2f} s")
lesson.writer.add_scalar("compile/first_call_s", first_call, 0)
check(len(printer.graphs) == 1, "Dynamo captured one graph")
check(
    Counter(ops(printer.graphs[0])) == Counter(["matmul", "sigmoid", "mul", "pow", "mean"]),
    "it holds the forward ops as written: matmul, sigmoid, mul, pow, mean",
)
check(
    torch.allclose(printed[0], eager[0]), "eager autograd through the graph's ops: the same dL/dw"
)

# %% [markdown]
# ## AOTAutograd: a forward graph and a backward graph
#
# `aot_autograd(fw_compiler=..., bw_compiler=...)` turns two graph compilers into a backend.
# It traces the joint forward + backward in ATen ops (`mm`, not `matmul`), splits it, and
# calls `fw_compiler` with the forward graph and `bw_compiler` with the backward graph (the
# backward one lazily: when backward first runs). Ours record both and run them as they are
# (`make_boxed_func` adapts a graph to the list-of-arguments call AOTAutograd makes). The
# partition function decides the cut; `default_partition` saves what eager autograd saves.
# The forward graph returns the loss **and the saved tensors**; the backward graph takes
# the saved tensors and `tangents_1` (dL/dloss) as its inputs.


# %%
class Recorder:
    """A torch.compile backend through AOTAutograd that records the forward and backward
    graphs, and what the forward hands to the backward at run time."""

    def __init__(self, partition=default_partition):
        self.dynamo, self.forward, self.backward, self.handed_over = [], [], [], []
        self.backend = aot_autograd(
            fw_compiler=self.compile_forward,
            bw_compiler=self.compile_backward,
            partition_fn=partition,
        )

    def __call__(self, graph, example_inputs):
        self.dynamo.append(graph)
        return self.backend(graph, example_inputs)

    def compile_forward(self, graph, example_inputs):
        self.forward.append(graph)

        def run(*args):
            outputs = graph(*args)
            self.handed_over.append(outputs)
            return outputs

        return make_boxed_func(run)

    def compile_backward(self, graph, example_inputs):
        self.backward.append(graph)
        return make_boxed_func(graph.forward)

    def saved(self, index: int = 0) -> list[str]:
        """Names of the tensors backward graph `index` receives from its forward graph."""
        inputs = [n.name for n in self.backward[index].graph.nodes if n.op == "placeholder"]
        return [name for name in inputs if not name.startswith("tangents")]

    def saved_bytes(self, index: int = 0) -> tuple[int, int]:
        """(distinct tensors, bytes) the forward handed over for backward, from the real
        tensors of the last run: views of one storage (a .t(), a detach) count once."""
        saved = self.handed_over[-1][-len(self.saved(index)) :]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}
        return len(storages), sum(storages.values())


def eager_saved_bytes(fn, *inputs) -> tuple[int, int]:
    """(distinct tensors, bytes) eager autograd saves for backward, by saved_tensors_hooks."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn(*inputs)
    return len(storages), sum(storages.values())


default = Recorder(default_partition)
loss = compiled(silu_loss, default)(x, w)
print("grad_fn of the compiled loss:", type(loss.grad_fn).__name__)
loss.backward()
w_grad, w.grad = w.grad, None
check(
    len(default.forward) == len(default.backward) == 1,
    "AOTAutograd handed our compilers one forward and one backward graph",
)
print(f"forward graph:\n{listing(default.forward[0])}")
print(f"backward graph:\n{listing(default.backward[0])}")
print("saved for backward:", default.saved())
eager_saves = eager_saved_bytes(silu_loss, x, w)
print(f"eager autograd saves {eager_saves[0]} tensors, {eager_saves[1]} bytes;")
count, size = default.saved_bytes()
print(f"the compiled forward hands over {count} tensors, {size} bytes")
check(
    type(loss.grad_fn).__name__ == "CompiledFunctionBackward",
    "the whole graph is one autograd node",
)
check(torch.allclose(w_grad, eager[0]), "the backward graph's dL/dw equals eager's")
check("sigmoid_backward" in ops(default.backward[0]), "the backward graph holds ATen backward ops")
check(
    default.saved_bytes() == eager_saves, "default_partition saves exactly what eager saves (bytes)"
)

# %% [markdown]
# ## Saved or recomputed: the min-cut partitioner
#
# `aot_eager` and `inductor` cut differently: `min_cut_rematerialization_partition` treats
# the cut as a min-cut problem — it keeps what is expensive to recompute (matmul outputs)
# and **recomputes** cheap pointwise ops inside the backward graph instead of storing their
# results. Memory goes down, a little compute goes up; the gradients cannot change.


# %%
def recomputed(cut: Recorder, reference: Recorder) -> Counter:
    """Forward ops that `cut`'s backward graph runs more often than `reference`'s does."""
    extra = Counter(ops(cut.backward[0])) - Counter(ops(reference.backward[0]))
    forward_ops = set(ops(cut.forward[0]))
    return Counter({op: n for op, n in extra.items() if op in forward_ops})


min_cut = Recorder(min_cut_rematerialization_partition)
min_cut_grads = gradients(compiled(silu_loss, min_cut), x, w)
again = recomputed(min_cut, default)
print("min-cut saves:", min_cut.saved(), "    default saves:", default.saved())
print(f"min-cut backward graph:\n{listing(min_cut.backward[0])}")
print("recomputed in backward:", dict(again))
check(
    min_cut.saved_bytes()[1] < default.saved_bytes()[1],
    "min-cut saves fewer bytes than eager/default",
)
check(again == Counter({"mul": 1}), "… because backward recomputes h · σ(h) (one mul) instead")
check(torch.allclose(min_cut_grads[0], eager[0]), "and dL/dw is unchanged")

saves = {
    "eager": eager_saves,
    "AOT default": default.saved_bytes(),
    "AOT min-cut": min_cut.saved_bytes(),
}
for name, (_, size) in saves.items():
    lesson.writer.add_scalar(f"saved_bytes/{name.replace(' ', '_')}", size, 0)
fig, ax = plt.subplots(figsize=(6, 3))
bars = ax.bar(
    list(saves),
    [size / 1024 for _, size in saves.values()],
    color=["gray", "tab:blue", "tab:green"],
)
ax.bar_label(bars, [f"{count} tensors" for count, _ in saves.values()])
ax.set(title="saved for backward: silu_loss", ylabel="KiB")
ax.set_ylim(0, 1.2 * ax.get_ylim()[1])
fig.tight_layout()
show(fig, "saved_for_backward")

# %% [markdown]
# ## A compiled module trains like the eager one
#
# `torch.compile(model, backend="aot_eager")` — the built-in debugging backend: AOTAutograd
# with the min-cut partitioner and no code generation. Same weights, same data: every
# parameter gets the eager gradient. A hook on a **parameter** is outside the compiled graph
# (the graph's backward hands the gradient to the parameter's accumulator), so it runs as
# in eager mode.


# %%
def small_mlp() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(WIDTH, 16), nn.Tanh(), nn.Linear(16, 1))


def parameter_grads(model: nn.Module, data: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    model(data).pow(2).mean().backward()
    return [p.grad.clone() for p in model.parameters()]


eager_model = small_mlp().to(device=device, dtype=torch.float64)
compiled_model = small_mlp().to(device=device, dtype=torch.float64)
for model in (eager_model, compiled_model):
    model[0].weight.register_hook(lambda grad: grad * 0.5)  # a parameter hook: halve dL/dW₀
eager_grads = parameter_grads(eager_model, x)
compiled_grads = parameter_grads(compiled(compiled_model, "aot_eager"), x)
check(
    all(torch.allclose(a, b) for a, b in zip(compiled_grads, eager_grads, strict=True)),
    "the compiled MLP's gradients equal eager's, parameter by parameter",
)
unhooked = small_mlp().to(device=device, dtype=torch.float64)  # same weights, no hook
check(
    torch.allclose(compiled_grads[0], 0.5 * parameter_grads(unhooked, x)[0]),
    "the parameter hook ran on the compiled model's gradient: dL/dW₀ halved",
)

# %% [markdown]
# ## Hooks inside the compiled function
#
# A hook registered on an **intermediate** tensor inside the compiled function is different.
# A pure one (it only transforms the gradient) is traced into the backward graph — it
# becomes ops there. One with a Python side effect (appending to a list outside) cannot be
# put in a graph: Dynamo **breaks the graph** around it, compiles the pieces, and runs the
# hook in between. Either way the gradient is right.


# %%
def scaled_in_backward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = x @ w
    h.register_hook(lambda grad: grad * 10)  # pure: a function of the gradient only
    return torch.tanh(h).sum()


seen = []


def watched_in_backward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = x @ w
    h.register_hook(lambda grad: seen.append(grad.norm()))  # a side effect outside the graph
    return torch.tanh(h).sum()


pure = Recorder()
pure_grads = gradients(compiled(scaled_in_backward, pure), x, w)
check(
    torch.allclose(pure_grads[0], gradients(scaled_in_backward, x, w)[0]),
    "pure hook: dL/dw equals eager's",
)
multiplied_by_ten = [
    n for n in pure.backward[0].graph.nodes if n.op == "call_function" and 10 in n.args
]
print(
    "the hook, in the backward graph:",
    [f"{n.name} = {op_name(n)}{n.args}" for n in multiplied_by_ten],
)
check(
    len(pure.dynamo) == 1 and len(multiplied_by_ten) == 1,
    "… one graph; the hook is a `mul by 10` inside it",
)

side_effect = Recorder()
watched_grads = gradients(compiled(watched_in_backward, side_effect), x, w)
check(
    len(side_effect.dynamo) == 2, "side-effect hook: the function became two graphs (a graph break)"
)
check(
    len(seen) == 1 and torch.allclose(watched_grads[0], gradients(watched_in_backward, x, w)[0]),
    "… the hook ran once, dL/dw equals eager's",
)

# %% [markdown]
# ## Graph breaks and gradients
#
# Python that depends on a tensor's *value* — `if h.sum() > 0:` — cannot be traced into a
# graph. Dynamo compiles the code before the `if` into one graph, runs the condition in
# Python, and compiles what follows into another. Autograd does not mind: each graph is one
# autograd node, chained like any two ops. `torch._dynamo.explain` reports the breaks;
# `fullgraph=True` turns a break into an error (use it to be sure a model compiles whole).


# %%
def with_break(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = torch.tanh(x @ w)
    if h.sum() > 0:  # data-dependent control flow: Dynamo must look at a value
        h = h * 2
    return h.pow(2).sum()


torch._dynamo.reset()
explained = torch._dynamo.explain(with_break)(x, w)
print(f"explain: {explained.graph_count} graphs, {explained.graph_break_count} break:")
print("  ", str(explained.break_reasons[0].reason).splitlines()[0])
broken = Recorder()
broken_grads = gradients(compiled(with_break, broken), x, w)
print(f"recorded: {len(broken.forward)} forward graphs, {len(broken.backward)} backward graphs")
check(
    explained.graph_count == 2 and explained.graph_break_count == 1,
    "explain: two graphs, one break",
)
check(
    len(broken.forward) == len(broken.backward) == 2,
    "each graph got its own forward and backward graph",
)
check(
    torch.allclose(broken_grads[0], gradients(with_break, x, w)[0]),
    "dL/dw across the break equals eager's",
)
try:
    compiled(with_break, Recorder(), fullgraph=True)(x, w)
    refused = ""
except torch._dynamo.exc.Unsupported as error:
    refused = str(error).splitlines()[0]
print("fullgraph=True:", refused)
check("branching" in refused.lower(), "fullgraph=True refuses the data-dependent branch")

# %% [markdown]
# ## Compiled autograd: backward as one graph
#
# So far, backward was the eager autograd engine walking a chain of nodes — compiled graphs
# among them, Python hooks in between. **Compiled autograd** (`torch._dynamo.config.
# compiled_autograd = True`) goes one step further: when `loss.backward()` runs inside a
# compiled function, it traces the *whole* backward pass — every autograd node, every hook,
# every gradient accumulation — into one more graph for the backend. Where the installed
# torch has no compiled autograd, this cell says so and backward stays with the eager engine.


# %%
def train_step(model: nn.Module, data: torch.Tensor) -> torch.Tensor:
    loss = model(data).pow(2).mean()
    loss.backward()
    return loss


has_compiled_autograd = hasattr(torch._dynamo.config, "compiled_autograd")
if not COMPILED_AUTOGRAD:
    print("skipped: COMPILED_AUTOGRAD = False")
elif not has_compiled_autograd:
    print(f"torch {torch.__version__} has no compiled autograd: backward runs in the eager engine")
else:
    model = small_mlp().to(device=device, dtype=torch.float64)
    model[0].weight.register_hook(lambda grad: grad * 0.5)
    capture = Printer(quiet=True)  # the backward graph is long: list its nodes instead
    with torch._dynamo.config.patch(compiled_autograd=True):
        compiled(train_step, capture)(model, x)
    backward_graph = ops(capture.graphs[-1])
    nodes = [
        op for op in backward_graph if op.endswith("Backward0") or op in ("AccumulateGrad", "mul")
    ]
    print("the backward graph, in order:", " → ".join(nodes))
    check(len(capture.graphs) == 2, "compiled autograd: a forward graph, then a backward graph")
    check(
        backward_graph.count("AccumulateGrad") == 4 and "mul" in backward_graph,
        "the backward graph holds the 4 accumulations into .grad and the hook's mul",
    )
    check(
        all(
            torch.allclose(p.grad, g) for p, g in zip(model.parameters(), eager_grads, strict=True)
        ),
        "its gradients equal the eager ones (hook included)",
    )

# %% [markdown]
# ## What to take away
#
# - A `torch.compile` backend is a function of a graph. Dynamo's graph is forward-only;
#   AOTAutograd (`aot_autograd(fw_compiler, bw_compiler)`) produces the forward and backward
#   graphs, and the forward returns what backward needs.
# - The partitioner decides saved vs recomputed: `default_partition` saves what eager saves;
#   the min-cut partitioner (`aot_eager`, `inductor`) recomputes cheap pointwise ops.
# - Compiled gradients equal eager ones. Parameter hooks run as in eager mode; a pure hook on
#   an intermediate is traced into the backward graph, one with side effects breaks the
#   graph. Graph breaks chain graphs; `fullgraph=True` forbids them.
# - Compiled autograd captures the whole backward — nodes, hooks, accumulation — as a graph.

# %%
lesson.done()
