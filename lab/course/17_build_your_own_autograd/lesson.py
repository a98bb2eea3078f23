# %% [markdown]
# # 17 · Build your own autograd
#
# Everything autograd did in lessons 00–16 fits on one screen. Each operation makes a node
# that remembers its inputs (`_prev`) and how to pass a gradient back to them (a small
# `_backward` closure holding the local derivative). `backward()` puts the nodes in
# *topological order* — every node after the nodes it was computed from — and walks that
# order backwards, so a node passes its gradient on only once everything that uses it has
# passed its share in. Gradients are *added* (`+=`): a value used twice receives from both
# uses.
#
# We build that engine on scalars (as Karpathy's micrograd does), check it against torch on
# random expressions, draw its graph, then move it to tensors — where broadcasting adds one
# step every hand-written engine gets wrong first — and train a small MLP with it and with
# torch from the same weights: the same losses, step by step, in float64.

# %% tags=["parameters"]
SEED = 0  # seed of the random expressions, the MLP's weights and its data
EXPRESSIONS = 25  # random expression graphs whose gradients are checked against torch
STEPS = 30  # SGD steps of the small MLP, with our engine and with torch
HIDDEN = 16  # hidden units of the MLP
LR = 0.1  # learning rate of those steps

# %%
import math
import random
from collections import Counter

import graphviz
import matplotlib.pyplot as plt
import torch

from lab.lessons.harness import check, open_lesson, show, show_image

lesson = open_lesson()
device = lesson.device
F64 = torch.float64

# %% [markdown]
# ## A scalar that remembers how it was made
#
# `Value` holds a number (`data`), its gradient (`grad`, dL/d this value), the values it was
# computed from (`_prev`) and `_backward`, which adds this node's gradient, times the local
# derivative, into each input's `.grad`. Each operation is forward and backward side by side.


# %%
class Value:
    """A scalar that remembers the operation that made it and how to send a gradient back."""

    def __init__(self, data, _prev=(), _op="", label=""):
        self.data = float(data)
        self.grad = 0.0  # dL/d(this value), filled in by backward()
        self._prev = _prev  # the values this one was computed from
        self._op = _op
        self.label = label
        self._backward = lambda: None  # a leaf has no inputs to pass a gradient to

    def __repr__(self):
        return (
            f"Value({self.label or self._op or 'leaf'}: data={self.data:.4g}, grad={self.grad:.4g})"
        )

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():  # d(a + b)/da = d(a + b)/db = 1
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():  # d(ab)/da = b, d(ab)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, k: float):  # k a plain number
        out = Value(self.data**k, (self,), f"**{k}")

        def _backward():  # d xᵏ/dx = k xᵏ⁻¹
            self.grad += k * self.data ** (k - 1) * out.grad

        out._backward = _backward
        return out

    def exp(self):
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward():  # d eˣ/dx = eˣ: the output itself
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def tanh(self):
        out = Value(math.tanh(self.data), (self,), "tanh")

        def _backward():  # d tanh(x)/dx = 1 − tanh²(x)
            self.grad += (1 - out.data**2) * out.grad

        out._backward = _backward
        return out

    def relu(self):
        out = Value(max(self.data, 0.0), (self,), "relu")

        def _backward():  # 1 where x > 0; 0 at the kink, as torch.relu
            self.grad += (self.data > 0) * out.grad

        out._backward = _backward
        return out

    __radd__ = __add__  # 2 + a, and sum() (which starts from 0)
    __rmul__ = __mul__  # 2 * a

    def backward(self):
        self.grad = 1.0  # dL/dL
        for node in reversed(topological_order(self)):
            node._backward()


def topological_order(root) -> list:
    """Every node reachable from root, each placed after all the nodes it was computed from."""
    order, seen = [], set()

    def visit(node):
        if node not in seen:  # a node used twice is still placed (and run) once
            seen.add(node)
            for child in node._prev:
                visit(child)
            order.append(node)

    visit(root)
    return order


# %% [markdown]
# A tiny expression, `L = tanh(a·b + a)`, with `a` used twice. By hand: with
# `t = tanh(a·b + a)`, `dL/da = (1 − t²)(b + 1)` — `b` through the product, `1` through the
# sum — and `dL/db = (1 − t²)·a`. Our engine, torch and the hand formula must agree.


# %%
def tiny_expression(a: float = 0.5, b: float = -1.5):
    """L = tanh(a·b + a) in our engine, every value labelled: (a, b, L)."""
    a, b = Value(a, label="a"), Value(b, label="b")
    ab = a * b
    ab.label = "a·b"
    s = ab + a  # a is used a second time
    s.label = "a·b + a"
    L = s.tanh()
    L.label = "L"
    return a, b, L


def torch_grads(fn, *xs: float, device="cpu") -> list[float]:
    """The gradient of fn at xs, by torch's autograd in float64: the oracle."""
    leaves = [torch.tensor(x, dtype=F64, device=device, requires_grad=True) for x in xs]
    return [g.item() for g in torch.autograd.grad(fn(*leaves), leaves)]


a, b, L = tiny_expression()
L.backward()
t = math.tanh(a.data * b.data + a.data)
by_hand = [(1 - t**2) * (b.data + 1), (1 - t**2) * a.data]
by_torch = torch_grads(lambda a, b: torch.tanh(a * b + a), a.data, b.data, device=device)
print(f"L = {L.data:.6f}")
print(f"ours:  dL/da = {a.grad:.10f}, dL/db = {b.grad:.10f}")
print(f"torch: dL/da = {by_torch[0]:.10f}, dL/db = {by_torch[1]:.10f}")
print(f"hand:  dL/da = {by_hand[0]:.10f}, dL/db = {by_hand[1]:.10f}")
check(
    math.isclose(a.grad, by_torch[0], rel_tol=1e-12)
    and math.isclose(b.grad, by_torch[1], rel_tol=1e-12),
    "our engine's dL/da and dL/db equal torch's (float64)",
)
check(
    math.isclose(a.grad, by_hand[0], rel_tol=1e-12)
    and math.isclose(b.grad, by_hand[1], rel_tol=1e-12),
    "… and the hand formula's: a, used twice, got (1 − t²)(b + 1)",
)

# %% [markdown]
# ## A value used twice
#
# `a·a`, `a + a` and `(a·3)·a` all use `a` twice. Each use's `_backward` adds its share into
# `a.grad`; a naive engine that *assigns* (`=`) keeps only the last share, and one that
# visits a shared node twice counts it twice. The topological order visits each node once.


# %%
def grad_of(build, x: float) -> float:
    """d build(a)/da at a = x, by our engine."""
    a = Value(x)
    build(a).backward()
    return a.grad


uses_twice = {
    "a * a": (lambda a: a * a, lambda x: 2 * x),
    "a + a": (lambda a: a + a, lambda x: 2.0),
    "(a * 3) * a": (lambda a: (a * 3) * a, lambda x: 6 * x),
    "tanh(a) * a": (lambda a: a.tanh() * a, lambda x: (1 - math.tanh(x) ** 2) * x + math.tanh(x)),
}
for name, (build, derivative) in uses_twice.items():
    print(f"d({name})/da at a = 1.5: ours {grad_of(build, 1.5):.6f}, by hand {derivative(1.5):.6f}")
check(
    all(math.isclose(grad_of(f, 1.5), d(1.5), rel_tol=1e-12) for f, d in uses_twice.values()),
    "a value used twice gets the sum of both uses' gradients",
)
order = topological_order(tiny_expression()[2])
check(
    [node.label for node in order] == ["a", "b", "a·b", "a·b + a", "L"],
    "the topological order lists a once, and every node after its inputs",
)

# %% [markdown]
# ## The graph, drawn
#
# One box per value (its label, data and grad), one oval per operation; arrows run the
# forward way, `backward()` walks them against the arrows. `a` has two arrows out: its two
# uses. The picture also goes to TensorBoard (tab *Images*).


# %%
def draw(root: Value) -> graphviz.Digraph:
    """The graph behind root: a record box per Value, an oval per operation."""
    dot = graphviz.Digraph(graph_attr={"rankdir": "LR"})
    for node in topological_order(root):
        box = str(id(node))
        text = f"{{ {node.label} | data {node.data:.4f} | grad {node.grad:.4f} }}"
        dot.node(box, text, shape="record")
        if node._op:
            dot.node(box + node._op, node._op, shape="ellipse")
            dot.edge(box + node._op, box)
        for child in node._prev:
            dot.edge(str(id(child)), box + node._op)
    return dot


def shapes_drawn(dot: graphviz.Digraph) -> Counter:
    """How many boxes, ovals and arrows the drawing has."""
    return Counter(
        "arrow" if "->" in line else "box" if "record" in line else "oval" for line in dot.body
    )


def render_png(dot: graphviz.Digraph) -> bytes | None:
    """The picture as PNG bytes, or None when Graphviz's `dot` program is not installed."""
    try:
        return dot.pipe(format="png")
    except graphviz.ExecutableNotFound:
        return None


a, b, L = tiny_expression()
L.backward()
dot = draw(L)
png = render_png(dot)
if png is None:
    print("Graphviz's `dot` is not installed (Debian: apt-get install graphviz); the graph:")
    print("\n".join(repr(node) for node in topological_order(L)))
else:
    show_image(png, "tiny_expression_graph")
drawn = shapes_drawn(dot)
print(f"drawn: {drawn['box']} boxes, {drawn['oval']} ovals, {drawn['arrow']} arrows")
# by hand: values a, b, a·b, a·b + a, L; operations *, +, tanh; arrows 2 + 2 + 1 in, 3 out
check(
    drawn == Counter(box=5, oval=3, arrow=8),
    "the drawing has 5 values, 3 operations and 8 arrows, as counted by hand",
)

# %% [markdown]
# ## Our graph beside torch's
#
# torch builds the same graph for the same expression: a node per operation (`MulBackward0`
# for our `*`), an `AccumulateGrad` per leaf, an arrow per input used. `expression` is
# written once and runs on our `Value`s and on torch tensors; the inspector (`lab.inspector`)
# draws both, arrows the way the gradient flows. Both must have the same nodes, joined the same
# way — `a` used three times, `a·b` twice — whatever their gradients say.

# %%
import lab.inspector as inspector

TORCH_NODE = {  # our operation → the node torch makes for it
    "+": "AddBackward0",
    "*": "MulBackward0",
    "**2": "PowBackward0",
    "tanh": "TanhBackward0",
    "exp": "ExpBackward0",
}


def expression(a, b):
    """Written once, for our Values and for torch tensors alike."""
    ab = a * b
    return (ab + a).tanh() * ab + (a**2).exp()


def graph_shape(kinds: dict, arrows) -> tuple[Counter, Counter]:
    """A graph, whichever object is which: its nodes by kind, its arrows by (kind, kind)."""
    return Counter(kinds.values()), Counter((kinds[s], kinds[t]) for s, t in arrows)


a, b = Value(0.5, label="a"), Value(-1.5, label="b")
loss = expression(a, b)
loss.backward()
values = topological_order(loss)
arrows = [(id(v), id(child)) for v in values for child in v._prev]
texts = {id(v): [v._op or v.label, f"data {v.data:.3f}", f"grad {v.grad:.3f}"] for v in values}
a_t, b_t = (torch.tensor(v, dtype=F64, device=device, requires_grad=True) for v in (0.5, -1.5))
view = inspector.inspect(expression(a_t, b_t), {"a": a_t, "b": b_t}, show=False)
our_picture = inspector.draw(texts, arrows, title="our engine")
inspector.show_diagrams(our_picture, view.diagram(), tag="ours_beside_torch")
leaf_or_op = {id(v): TORCH_NODE.get(v._op) or f"AccumulateGrad ({v.label})" for v in values}
our_shape = graph_shape(leaf_or_op, arrows)
torch_shape = graph_shape(
    {node.index: node.title for node in view.nodes},
    [(edge.source, edge.target) for edge in view.edges],
)
print(f"ours:  {dict(our_shape[0])}, {our_shape[1].total()} arrows")
print(f"torch: {dict(torch_shape[0])}, {torch_shape[1].total()} arrows")
check(
    our_shape == torch_shape,
    "our graph has torch's nodes (one per operation, one per leaf) joined by the same arrows",
)

# %% [markdown]
# ## Random expressions against torch
#
# A random expression is a list of instructions `(op, i, j)`: value `n` is `op(value i,
# value j)`. The same instructions run on our `Value`s and on torch tensors; the loss is the
# sum of the values nothing else used. Every value's gradient (torch's through
# `retain_grad()`) must agree. `i == j`, or a value picked twice, is a value used twice.

# %%
OPS = {
    "+": lambda a, b: a + b,
    "*": lambda a, b: a * b,
    "**2": lambda a, b: a**2,
    "**3": lambda a, b: a**3,
    "exp": lambda a, b: a.exp(),
    "tanh": lambda a, b: a.tanh(),
    "relu": lambda a, b: a.relu(),
}
BINARY = ("+", "*")


def random_expression(rng: random.Random, inputs: int = 3, steps: int = 8):
    """(instructions (op, i, j), input values); an expression that overflows is redrawn."""
    while True:
        program = [
            (rng.choice(list(OPS)), rng.randrange(n), rng.randrange(n))
            for n in range(inputs, inputs + steps)
        ]
        xs = [rng.uniform(-1, 1) for _ in range(inputs)]
        try:
            values = run_program(program, [Value(x) for x in xs])
        except OverflowError:
            continue
        if all(abs(v.data) < 1e6 for v in values):
            return program, xs


def run_program(program, inputs: list) -> list:
    """Every value of the expression, inputs first: Values or torch tensors alike."""
    values = list(inputs)
    for op, i, j in program:
        values.append(OPS[op](values[i], values[j]))
    return values


def loss_of(program, values: list):
    """The sum of the values no instruction uses: every value reaches the loss."""
    used = {k for op, i, j in program for k in ((i, j) if op in BINARY else (i,))}
    return sum(v for n, v in enumerate(values) if n not in used)


def uses_a_value_twice(program) -> bool:
    uses = Counter(k for op, i, j in program for k in ((i, j) if op in BINARY else (i,)))
    return max(uses.values()) > 1


def compare_with_torch(program, xs: list[float], device="cpu") -> float:
    """Largest relative difference between our gradients and torch's, over every value."""
    ours = run_program(program, [Value(x) for x in xs])
    loss_of(program, ours).backward()
    theirs = run_program(
        program, [torch.tensor(x, dtype=F64, device=device, requires_grad=True) for x in xs]
    )
    for value in theirs[len(xs) :]:
        value.retain_grad()
    loss_of(program, theirs).backward()
    return max(
        abs(o.grad - t.grad.item()) / max(1.0, abs(t.grad.item()))
        for o, t in zip(ours, theirs, strict=True)
    )


def as_text(program, inputs: int = 3) -> str:
    def term(op, i, j):
        return (
            f"v{i} {op} v{j}"
            if op in BINARY
            else f"v{i}{op}"
            if op.startswith("**")
            else f"{op}(v{i})"
        )

    return "; ".join(f"v{n} = {term(*ins)}" for n, ins in enumerate(program, start=inputs))


rng = random.Random(SEED)
worst, reusing = 0.0, 0
for n in range(EXPRESSIONS):
    program, xs = random_expression(rng)
    difference = compare_with_torch(program, xs, device)
    worst, reusing = max(worst, difference), reusing + uses_a_value_twice(program)
    lesson.writer.add_scalar("random_expressions/max_relative_difference", difference, n)
    if n < 2:
        print(f"expression {n}: {as_text(program)}")
print(f"{EXPRESSIONS} expressions, {reusing} using a value twice; largest difference {worst:.1e}")
check(worst < 1e-12, f"on {EXPRESSIONS} random expressions every gradient equals torch's (float64)")
check(reusing > 0, f"… {reusing} of which use a value twice")

# %% [markdown]
# ## On tensors: broadcasting, and unbroadcast
#
# The same engine works on tensors, with one new step. In `x + b`, a bias `b` of shape `(4,)`
# is *broadcast* over the 3 rows of `x` `(3, 4)`: each element of `b` is used 3 times, so its
# gradient is the **sum** of the 3 gradients it received — the value-used-twice rule, on
# tensors. `unbroadcast` sums the gradient back to the input's shape: over the leading axes
# broadcasting added, and over every axis where the input had size 1 (keeping it).


# %%
def unbroadcast(grad: torch.Tensor, shape) -> torch.Tensor:
    """Sum grad back down to `shape`, undoing broadcasting."""
    while grad.dim() > len(shape):  # axes broadcasting added in front
        grad = grad.sum(0)
    for axis, size in enumerate(shape):  # axes of size 1 that were stretched
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis, keepdim=True)
    return grad


def broadcast_grad(shape, out_shape, upstream: torch.Tensor) -> torch.Tensor:
    """The oracle: torch's gradient of an input of `shape` expanded to `out_shape`."""
    x = torch.zeros(shape, dtype=F64, device=upstream.device, requires_grad=True)
    (grad,) = torch.autograd.grad(x.expand(out_shape), x, upstream)
    return grad


generator = torch.Generator().manual_seed(SEED)
matches = []
for shape, out_shape in [
    ((4,), (3, 4)),
    ((3, 1), (3, 4)),
    ((1, 4), (3, 4)),
    ((), (2, 3)),
    ((2, 1, 4), (5, 2, 3, 4)),
]:
    upstream = torch.randn(out_shape, generator=generator, dtype=F64).to(device)
    ours, oracle = unbroadcast(upstream, shape), broadcast_grad(shape, out_shape, upstream)
    matches.append(tuple(ours.shape) == shape and torch.allclose(ours, oracle))
    print(f"{str(shape):>9} broadcast to {str(out_shape):<12} → gradient {tuple(ours.shape)}")
check(all(matches), "unbroadcast gives torch's gradient, in the input's shape, for each case")

# %% [markdown]
# `Tensor` is `Value` with tensors inside: `data` is a torch tensor used as plain numbers (no
# autograd of torch's is involved), `grad` has its shape, and `+` and `*` unbroadcast.
# Matrix product, `tanh` and `sum` complete what a small MLP needs.


# %%
class Tensor:
    """Our engine on tensors: data is a plain torch tensor, grad has the same shape."""

    def __init__(self, data: torch.Tensor, _prev=(), _op=""):
        self.data = data
        self.grad = torch.zeros_like(data)
        self._prev = _prev
        self._op = _op
        self._backward = lambda: None

    @property
    def shape(self):
        return self.data.shape

    def _lift(self, other):
        if isinstance(other, Tensor):
            return other
        return Tensor(torch.tensor(other, dtype=self.data.dtype, device=self.data.device))

    def __add__(self, other):
        other = self._lift(other)
        out = Tensor(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += unbroadcast(out.grad, self.shape)
            other.grad += unbroadcast(out.grad, other.shape)

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = self._lift(other)
        out = Tensor(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += unbroadcast(other.data * out.grad, self.shape)
            other.grad += unbroadcast(self.data * out.grad, other.shape)

        out._backward = _backward
        return out

    def __matmul__(self, other):  # (n, k) @ (k, m)
        out = Tensor(self.data @ other.data, (self, other), "@")

        def _backward():
            self.grad += out.grad @ other.data.T
            other.grad += self.data.T @ out.grad

        out._backward = _backward
        return out

    def tanh(self):
        out = Tensor(torch.tanh(self.data), (self,), "tanh")

        def _backward():
            self.grad += (1 - out.data * out.data) * out.grad

        out._backward = _backward
        return out

    def sum(self):
        out = Tensor(self.data.sum(), (self,), "sum")

        def _backward():  # every element contributed once: the gradient, spread out
            self.grad += out.grad.expand(self.shape)

        out._backward = _backward
        return out

    def __sub__(self, other):
        return self + self._lift(other) * -1.0

    def backward(self):
        self.grad = torch.ones_like(self.data)
        for node in reversed(topological_order(self)):
            node._backward()


# %% [markdown]
# `(x·c + b).tanh().sum()` with `x` `(3, 4)`, a column `c` `(3, 1)` and a bias `b` `(4,)`:
# both are broadcast, and both must get torch's gradient in their own shape.


# %%
def broadcast_example(engine, device="cpu"):
    """x (3, 4), c (3, 1), b (4,) and L = Σ tanh(x·c + b): in our engine (engine=Tensor) or
    torch's (engine=None). Returns (L, [x, c, b]) — their .grad filled in by backward()."""
    generator = torch.Generator().manual_seed(1)
    raw = [
        torch.randn(shape, generator=generator, dtype=F64).to(device)
        for shape in ((3, 4), (3, 1), (4,))
    ]
    leaves = [Tensor(t) for t in raw] if engine is Tensor else [t.requires_grad_() for t in raw]
    x, c, b = leaves
    return (x * c + b).tanh().sum(), leaves


ours, our_leaves = broadcast_example(Tensor, device)
theirs, their_leaves = broadcast_example(None, device)
ours.backward()
theirs.backward()
for name, mine, torchs in zip("xcb", our_leaves, their_leaves, strict=True):
    difference = (mine.grad - torchs.grad).abs().max().item()
    print(f"dL/d{name}: shape {tuple(mine.grad.shape)}, most off from torch by {difference:.1e}")
check(
    all(
        mine.grad.shape == torchs.grad.shape
        and torch.allclose(mine.grad, torchs.grad, rtol=1e-12, atol=0)
        for mine, torchs in zip(our_leaves, their_leaves, strict=True)
    ),
    "our Tensor engine's gradients equal torch's, broadcast inputs included",
)

# %% [markdown]
# ## A small MLP, trained by our engine and by torch
#
# `mlp_loss` is written once: a tanh layer of `HIDDEN` units fitting `y = sin(2x)`. Run on
# our `Tensor`s it builds our graph; run on torch tensors, torch's. Both start from the same
# float64 weights and take the same SGD steps, so the losses must match step by step — any
# gradient bug would show as a drift that grows.


# %%
def mlp_data(n: int = 32, device="cpu"):
    x = torch.linspace(-2, 2, n, dtype=F64, device=device)[:, None]
    return x, torch.sin(2 * x)


def initial_weights(hidden: int, seed: int, device="cpu") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"W1": (1, hidden), "b1": (hidden,), "W2": (hidden, 1), "b2": (1,)}
    return {k: torch.randn(s, generator=generator, dtype=F64).to(device) for k, s in shapes.items()}


def mlp_loss(w: dict, x, y):
    """Mean squared error of a tanh MLP; w, x and y all ours (Tensor) or all torch's."""
    h = (x @ w["W1"] + w["b1"]).tanh()
    diff = h @ w["W2"] + w["b2"] - y
    return (diff * diff).sum() * (1.0 / y.shape[0])


def train_ours(start: dict, x, y, steps: int, lr: float):
    w = {k: Tensor(v.clone()) for k, v in start.items()}
    losses = []
    for _ in range(steps):
        for p in w.values():
            p.grad = torch.zeros_like(p.data)
        loss = mlp_loss(w, Tensor(x), Tensor(y))
        loss.backward()
        for p in w.values():
            p.data = p.data - lr * p.grad
        losses.append(loss.data.item())
    return losses, {k: p.data for k, p in w.items()}


def train_torch(start: dict, x, y, steps: int, lr: float):
    w = {k: v.clone().requires_grad_() for k, v in start.items()}
    losses = []
    for _ in range(steps):
        loss = mlp_loss(w, x, y)
        loss.backward()
        with torch.no_grad():
            for p in w.values():
                p -= lr * p.grad
                p.grad = None
        losses.append(loss.item())
    return losses, {k: p.detach() for k, p in w.items()}


x, y = mlp_data(device=device)
start = initial_weights(HIDDEN, SEED, device)
our_losses, our_weights = train_ours(start, x, y, STEPS, LR)
torch_losses, torch_weights = train_torch(start, x, y, STEPS, LR)
for step, (mine, theirs) in enumerate(zip(our_losses, torch_losses, strict=True)):
    lesson.writer.add_scalar("mlp/loss_ours", mine, step)
    lesson.writer.add_scalar("mlp/loss_torch", theirs, step)
print(f"loss, ours:  {our_losses[0]:.10f} → {our_losses[-1]:.10f}")
print(f"loss, torch: {torch_losses[0]:.10f} → {torch_losses[-1]:.10f}")
bitwise = sum(m == t for m, t in zip(our_losses, torch_losses, strict=True))
print(f"{bitwise} of {STEPS} losses equal to the last bit; the others differ in the last bits")
print("(torch's tanh backward rounds differently from our (1 − t·t)·grad)")
check(
    all(math.isclose(m, t, rel_tol=1e-12) for m, t in zip(our_losses, torch_losses, strict=True)),
    f"our engine and torch give the same loss at each of {STEPS} steps (float64)",
)
check(
    all(torch.allclose(our_weights[k], torch_weights[k], rtol=1e-12, atol=1e-14) for k in start),
    "… and the same weights after the last step",
)
check(our_losses[-1] < our_losses[0], "and training with our engine lowers the loss")

# %% [markdown]
# Left, the two loss curves: one lies on the other. Right, the data and both fitted
# curves after training.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
left.plot(our_losses, "-", lw=3, alpha=0.5, label="our engine")
left.plot(torch_losses, "k--", label="torch")
left.set(title="MSE per SGD step", xlabel="step", yscale="log")
left.legend()
grid = torch.linspace(-2, 2, 200, dtype=F64, device=device)[:, None]
right.plot(x.cpu().numpy(), y.cpu().numpy(), "o", ms=3, color="gray", label="data: sin(2x)")
for weights, style, name in ((our_weights, "-", "our engine"), (torch_weights, "k--", "torch")):
    fitted = torch.tanh(grid @ weights["W1"] + weights["b1"]) @ weights["W2"] + weights["b2"]
    right.plot(
        grid.cpu().numpy(),
        fitted.cpu().numpy(),
        style,
        lw=3 if style == "-" else 1.5,
        alpha=0.7 if style == "-" else 1,
        label=name,
    )
right.set(title=f"fit after {STEPS} steps", xlabel="x")
right.legend(fontsize=8)
fig.tight_layout()
show(fig, "mlp_ours_vs_torch")

# %% [markdown]
# ## What to take away
#
# - A node = forward value + its inputs + a `_backward` with the local derivative times the
#   upstream gradient (the chain rule).
# - `backward()` = seed `grad = 1`, then every node's `_backward` in reverse topological
#   order; gradients **add up** (`+=`), so values used twice are right.
# - On tensors, broadcasting in the forward is a sum in the backward: `unbroadcast`.
# - torch's autograd is this, in C++, with thousands of `_backward`s (`grad_fn`s) written for
#   you — lesson 18 looks at what those nodes save.

# %%
lesson.done()
