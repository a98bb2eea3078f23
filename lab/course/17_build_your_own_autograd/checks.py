"""17 · build your own autograd: each answer runs on graphs whose gradients torch's autograd
knows (float64), while torch's autograd is switched off for the learner's code."""

from __future__ import annotations

import math
import operator
from contextlib import contextmanager

import torch

from lab.exercises.feedback import NotAttempted, Problem, call, num, same, unseen, unseen_pick

F64 = torch.float64
OWN_ENGINE = (
    "your engine called torch's autograd (backward() / torch.autograd.grad): compute the "
    "gradients yourself, from the local derivatives"
)


@contextmanager
def without_torch_autograd():
    """While the learner's engine runs, torch's autograd refuses, in the learner's terms."""

    def refuse(*args, **kwargs):
        raise Problem(OWN_ENGINE)

    saved = torch.autograd.grad, torch.autograd.backward
    torch.autograd.grad = torch.autograd.backward = refuse  # Tensor.backward calls the latter
    try:
        yield
    finally:
        torch.autograd.grad, torch.autograd.backward = saved


def oracle(fn, *xs: float) -> list[float]:
    """d fn / d x for each x, by torch's autograd in float64."""
    leaves = [torch.tensor(x, dtype=F64, requires_grad=True) for x in xs]
    return [g.item() for g in torch.autograd.grad(fn(*leaves), leaves)]


# --- 17.1 · the backward pass -----------------------------------------------------------------


class Node:
    """The check's own engine: a value, its inputs, and a _backward that adds into them and
    writes down that it ran (and with which .grad)."""

    def __init__(self, data: float, label: str, calls: list, prev=(), local=()):
        self.data, self.grad, self.label, self._prev = float(data), 0.0, label, tuple(prev)
        self._backward = lambda: None  # a leaf: nothing to pass on
        if prev:

            def _backward():
                calls.append((self, self.grad))
                for node, derivative in zip(prev, local, strict=True):
                    node.grad += derivative * self.grad

            self._backward = _backward

    def __repr__(self):
        return self.label


# A graph: after the leaves a and b, its nodes in forward order as (name, op, operands), L
# last. The usual two compute L = tanh(a·b + a)·(a·b) + tanh(a·b + a), c and e used twice; the
# second lists e before f in L's _prev: an order that is right by luck for one listing (a node
# placed before its children are visited, say) is wrong for the other.
USUAL_GRAPH = (("c", "·", "a", "b"), ("d", "+", "c", "a"), ("e", "tanh", "d"), ("f", "·", "e", "c"))
USUAL_CASES = (
    (USUAL_GRAPH + (("L", "+", "f", "e"),), (0.5, -1.5)),
    (USUAL_GRAPH + (("L", "+", "e", "f"),), (-0.8, 0.3)),
)
# for grading: graphs of other shapes (an order written out for the usual ones fails there),
# nodes used twice too, names not in forward order
OTHER_GRAPHS = (
    (("p", "+", "a", "b"), ("g", "tanh", "p"), ("k", "·", "p", "g"), ("h", "·", "g", "a"))
    + (("L", "+", "h", "k"),),
    (("u", "·", "b", "a"), ("m", "+", "u", "b"), ("t", "tanh", "u"), ("r", "·", "m", "t"))
    + (("s", "+", "r", "u"), ("L", "·", "s", "m")),
    (("q", "tanh", "a"), ("w", "·", "q", "b"), ("n", "+", "w", "q"), ("v", "tanh", "n"))
    + (("L", "·", "v", "w"),),
)
TORCH_OPS = {"+": torch.add, "·": torch.mul, "tanh": torch.tanh}
FLOAT_OPS = {"+": operator.add, "·": operator.mul, "tanh": math.tanh}


def _local(op: str, inputs: list[Node]) -> tuple[float, ...]:
    """The local derivatives of op at its inputs' values."""
    if op == "tanh":
        return (1 - math.tanh(inputs[0].data) ** 2,)
    if op == "+":
        return (1.0, 1.0)
    return (inputs[1].data, inputs[0].data)


def graph(program, a: float, b: float):
    """The program's nodes, built with the check's engine: (a, b, the other nodes, the calls
    list their _backward write to)."""
    calls = []
    nodes = {"a": Node(a, "a", calls), "b": Node(b, "b", calls)}
    for name, op, *operands in program:
        inputs = [nodes[operand] for operand in operands]
        value = FLOAT_OPS[op](*(i.data for i in inputs))
        nodes[name] = Node(value, _label(name, op, operands), calls, inputs, _local(op, inputs))
    return nodes["a"], nodes["b"], [nodes[name] for name, *_ in program], calls


def _label(name: str, op: str, operands) -> str:
    """c = a·b, d = c + a, e = tanh(d)"""
    if op == "tanh":
        return f"{name} = tanh({operands[0]})"
    return f"{name} = " + (" + " if op == "+" else op).join(operands)


def formula(program, name: str = "L", in_product: bool = False) -> str:
    """The program's node `name` written out in a and b: tanh(a·b + a)·(a·b) + tanh(a·b + a)."""
    found = [(op, operands) for node, op, *operands in program if node == name]
    if not found:
        return name  # a leaf
    op, operands = found[0]
    if op == "tanh":
        return f"tanh({formula(program, operands[0])})"
    text = (" + " if op == "+" else op).join(formula(program, o, op == "·") for o in operands)
    return f"({text})" if in_product else text


def oracle_graph(program):
    """The program as a function of (a, b) on torch tensors."""

    def computed(a, b):
        values = {"a": a, "b": b}
        for name, op, *operands in program:
            values[name] = TORCH_OPS[op](*(values[o] for o in operands))
        return values["L"]

    return computed


def check_topological_backward(topological_backward) -> str:
    for program, xs in USUAL_CASES:
        program, xs = unseen_pick(program, OTHER_GRAPHS), unseen(xs)
        a, b, nodes, calls = graph(program, *xs)
        root = nodes[-1]
        with without_torch_autograd():
            call(topological_backward, root, who="topological_backward")
        _check_calls(root, nodes, calls)
        given = f"L = {formula(program)} at a = {xs[0]}, b = {xs[1]}"
        expected = torch.tensor(oracle(oracle_graph(program), *xs), dtype=F64)
        same(expected, torch.tensor([a.grad, b.grad], dtype=F64), "(dL/da, dL/db)", given=given)
    return "each _backward ran once, after every node using it; dL/da and dL/db equal torch's"


def _check_calls(root: Node, nodes: list[Node], calls: list) -> None:
    ran = [node for node, _ in calls]
    if not calls:
        raise Problem(
            f"no node's _backward ran: call node._backward() for every node, starting from "
            f"the root ({root})"
        )
    first, grad_then = calls[0]
    if first is root and grad_then == 0:
        raise Problem(
            "root.grad was 0 when the root's _backward ran, so every gradient stays 0: start "
            "with root.grad = 1.0 (dL/dL = 1)"
        )
    for node in nodes:
        if ran.count(node) > 1:
            raise Problem(
                f"the _backward of {node} ran {ran.count(node)} times: a node used by several "
                f"others must still be placed, and run, once — keep a set of the nodes visited"
            )
    missing = [node for node in nodes if node not in ran]
    if missing:
        raise Problem(
            f"the _backward of {missing[0]} never ran: reach every node, through every "
            f"entry of each node's _prev"
        )
    if ran == nodes:
        raise Problem(
            "the _backward calls ran in forward order (inputs first), so each node passed on "
            "a gradient that was not in yet: run them in reverse topological order"
        )
    for position, node in enumerate(ran):
        user = next((u for u in ran[position + 1 :] if node in u._prev), None)
        if user is not None:
            raise Problem(
                f"the _backward of {node} ran before that of {user}, which uses it: its "
                f"gradient was not complete yet — run each node after every node that uses "
                f"it (reverse topological order)"
            )


# --- 17.2 · three more operations ------------------------------------------------------------


def _grads(Value, build, *xs: float, who: str) -> list[float]:
    """Our gradient of build(Value(x) …) · 3 (an upstream gradient that is not 1)."""
    leaves = [call(Value, x, who="Value") for x in xs]
    with without_torch_autograd():
        out = call(lambda: build(*leaves) * 3.0, who=who)
        call(out.backward, who=f"backward through {who}")
    return [leaf.grad for leaf in leaves]


def _sigmoid(a: float) -> float:
    return 1 / (1 + math.exp(-a))


OPS = {  # name: (ours, torch's, inputs, typical slips at those inputs as (local derivatives,
    # what it means)); the inputs of a / b and log stay on their side of 0 when grading
    "a / b": (
        lambda a, b: a / b,
        lambda a, b: a / b,
        (1.5, -0.8),
        lambda a, b: (
            ((1 / b, a / b**2), "d(a/b)/db = −a/b²: the minus sign is missing"),
            ((1 / b, -1 / b**2), "d(a/b)/db = −a/b²: the factor a is missing"),
            ((-a / b**2, 1 / b), "the two derivatives are swapped: d/da = 1/b, d/db = −a/b²"),
        ),
    ),
    "log(a)": (
        lambda a: a.log(),
        torch.log,
        (2.5,),
        lambda a: (
            ((math.log(a),), "d log(a)/da = 1/a, not log(a) (out.data)"),
            ((a,), "d log(a)/da = 1/a, not a"),
        ),
    ),
    "sigmoid(a)": (
        lambda a: a.sigmoid(),
        torch.sigmoid,
        (0.7,),
        lambda a: (
            ((a * (1 - a),), "use the output s = out.data in s·(1 − s), not the input a"),
            ((_sigmoid(a),), "d sigmoid/da = s·(1 − s), not s alone"),
            ((1 - _sigmoid(a) ** 2,), "that is tanh's 1 − s²: sigmoid's is s·(1 − s)"),
        ),
    ),
}


def _given(xs) -> str:
    return ", ".join(f"{v} = {x}" for v, x in zip("ab", xs, strict=False))


def _unfinished(Value) -> list[str]:
    """The operations whose _backward still raises the stub's NotImplementedError."""
    unfinished = []
    for name, (ours, _, xs, _) in OPS.items():
        try:
            with without_torch_autograd():
                ours(*(Value(x) for x in xs)).backward()
        except NotImplementedError as stub:
            if str(stub).startswith("17.1:"):  # Value.backward calls the learner's 17.1
                raise Problem(
                    "your Value.backward calls topological_backward, exercise 17.1, which still "
                    "raises NotImplementedError: finish 17.1 first, or keep the backward() given"
                ) from None
            unfinished.append(name)
        except Exception:  # noqa: S110 - any other error is told when the operation is checked
            pass
    return unfinished


def check_value(Value) -> str:
    unfinished = _unfinished(Value)
    if len(unfinished) == len(OPS):
        raise NotAttempted()
    for name, (ours, theirs, xs, slips) in OPS.items():
        if name in unfinished:
            continue
        xs = unseen(xs, kinks=(0.0,))
        leaves = [call(Value, x, who="Value") for x in xs]
        with without_torch_autograd():
            out = call(ours, *leaves, who=name)
        expected = theirs(*(torch.tensor(x, dtype=F64) for x in xs))
        given = _given(xs)
        same(expected, torch.tensor(out.data, dtype=F64), f"{name} (forward)", given=given)

        wanted = torch.tensor(oracle(lambda *t, f=theirs: f(*t) * 3.0, *xs), dtype=F64)
        got = torch.tensor(_grads(Value, ours, *xs, who=name), dtype=F64)
        ignored = f"the _backward of {name} ignored out.grad: multiply the local derivative by it"
        mistakes = [(wanted.squeeze() / 3, ignored + " (the chain rule)")]
        mistakes += [(3 * torch.tensor(local, dtype=F64).squeeze(), m) for local, m in slips(*xs)]
        what = f"{'(dL/da, dL/db)' if len(xs) == 2 else 'dL/da'} of L = 3·({name})"
        same(wanted.squeeze(), got.squeeze(), what, given=given, mistakes=tuple(mistakes))
    if unfinished:
        done = [name for name in OPS if name not in unfinished]
        raise Problem(
            f"{' and '.join(done)} {'is' if len(done) == 1 else 'are'} right; the _backward of "
            f"{' and '.join(unfinished)} still raises NotImplementedError: write it too"
        )
    _check_accumulation(Value)
    return "a / b, log and sigmoid: forward and gradients equal torch's, inputs used twice too"


def _check_accumulation(Value) -> None:
    twice = {  # each input used twice by the same kind of node
        "a / a": (lambda a: a / a, lambda a: a / a, (1.5,)),
        "a / b + a / b": (lambda a, b: a / b + a / b, lambda a, b: a / b + a / b, (1.5, -0.8)),
        "log(a) + log(a)": (lambda a: a.log() + a.log(), lambda a: a.log() + a.log(), (2.5,)),
        "sigmoid(a) + sigmoid(a)": (
            lambda a: a.sigmoid() + a.sigmoid(),
            lambda a: a.sigmoid() + a.sigmoid(),
            (0.7,),
        ),
    }
    for name, (ours, theirs, xs) in twice.items():
        xs = unseen(xs, kinks=(0.0,))
        wanted = torch.tensor(oracle(lambda *t, f=theirs: f(*t) * 3.0, *xs), dtype=F64)
        got = torch.tensor(_grads(Value, ours, *xs, who=name), dtype=F64)
        if not torch.allclose(got, wanted):
            given = _given(xs)
            raise Problem(
                f"the gradient of 3·({name}) is {[num(g) for g in got.tolist()]}, expected "
                f"{[num(w) for w in wanted.tolist()]} for {given}: an input used twice must "
                f"get both contributions — add into .grad with +=, never assign it with ="
            )


# --- 17.3 · unbroadcast ----------------------------------------------------------------------


def _cases(m: int, n: int, k: int, j: int) -> tuple:
    """(input shape, broadcast shape, what broadcasting did), for axes of sizes m, n, k, j."""
    return (
        ((n,), (m, n), "a bias added to every row: sum over the rows, axis 0"),
        ((m, 1), (m, n), "a column stretched along axis 1: sum axis 1, keeping it (keepdim=True)"),
        ((1, n), (m, n), "a row stretched along axis 0: sum axis 0, keeping it (keepdim=True)"),
        ((), (k, m), "a scalar used everywhere: sum everything"),
        (
            (k, 1, n),
            (j, k, m, n),
            "a new leading axis (sum it away) and axis 1 stretched (keep it)",
        ),
        ((m, n), (m, n), "nothing was broadcast: the gradient as it is"),
    )


CASES = _cases(3, 4, 2, 5)
# for grading: the same kinds of broadcast with other sizes (a table of the usual shapes fails)
OTHER_CASES = [_cases(*sizes) for sizes in ((2, 5, 3, 4), (4, 3, 5, 2), (5, 2, 4, 3))]


def broadcast_grad(shape, out_shape, upstream: torch.Tensor) -> torch.Tensor:
    """The oracle: torch's gradient of an input of `shape` expanded to `out_shape`."""
    x = torch.zeros(shape, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(x.expand(out_shape), x, upstream)
    return grad


def check_unbroadcast(unbroadcast) -> str:
    generator = torch.Generator().manual_seed(17)
    cases = unseen_pick(CASES, OTHER_CASES)
    for shape, out_shape, meaning in cases:
        upstream = unseen(torch.randn(out_shape, generator=generator, dtype=F64))
        expected = broadcast_grad(shape, out_shape, upstream)
        with without_torch_autograd():
            got = call(unbroadcast, upstream.clone(), torch.Size(shape), who="unbroadcast")
        if not isinstance(got, torch.Tensor):
            raise Problem(f"unbroadcast should return a tensor, got {type(got).__name__}")
        given = f"an input of shape {shape} broadcast to {out_shape}"
        if tuple(got.shape) != shape:
            advice = _wrong_shape(tuple(got.shape), shape, out_shape, meaning)
            raise Problem(f"for {given}, unbroadcast returned shape {tuple(got.shape)}: {advice}")
        copies = math.prod(out_shape) // max(1, math.prod(shape))
        same(
            expected,
            got,
            "the gradient",
            given=given,
            mistakes=(
                (
                    expected / copies,
                    "you averaged: an element used n times gets the sum of its n gradients",
                ),
            ),
        )
    return f"all {len(cases)} broadcasts summed back to the input's shape, as torch does"


def _wrong_shape(got: tuple, shape: tuple, out_shape: tuple, meaning: str) -> str:
    if got == () and shape != ():
        return (
            f"everything was summed to one number; sum only the axes broadcasting added (the "
            f"leading ones, and those where the input has size 1) — expected {shape} ({meaning})"
        )
    if got == tuple(s for s in shape if s != 1) and len(got) < len(shape):
        return f"keep the summed axes with keepdim=True, the input's shape is {shape}"
    if len(got) > len(shape):
        return (
            f"the leading axes broadcasting added are still there: sum axis 0 away while the "
            f"gradient has more axes than {shape}"
        )
    if got == out_shape[: len(got)] and got != out_shape[len(out_shape) - len(got) :]:
        return (
            "broadcasting lines shapes up on the right, so the extra axes are the leading "
            "ones: sum axis 0, not the last axis"
        )
    return f"expected {shape} ({meaning})"


CHECKS = {
    "topological_backward": check_topological_backward,
    "Value": check_value,
    "unbroadcast": check_unbroadcast,
}
