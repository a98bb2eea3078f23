"""17 · build your own autograd: each answer runs on graphs whose gradients torch's autograd
knows (float64), while torch's autograd is switched off for the learner's code."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from lab.exercises.feedback import NotAttempted, Problem, call, num, same

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


def graph(a: float, b: float, e_first: bool):
    """L = tanh(a·b + a)·(a·b) + tanh(a·b + a), node by node: a, c, e used twice. With
    e_first, L lists e before f in its _prev: an order that is right by luck for one listing
    (a node placed before its children are visited, say) is wrong for the other."""
    calls = []
    a, b = Node(a, "a", calls), Node(b, "b", calls)
    c = Node(a.data * b.data, "c = a·b", calls, (a, b), (b.data, a.data))
    d = Node(c.data + a.data, "d = c + a", calls, (c, a), (1.0, 1.0))
    e = Node(math.tanh(d.data), "e = tanh(d)", calls, (d,), (1 - math.tanh(d.data) ** 2,))
    f = Node(e.data * c.data, "f = e·c", calls, (e, c), (c.data, e.data))
    if e_first:
        L = Node(e.data + f.data, "L = e + f", calls, (e, f), (1.0, 1.0))
    else:
        L = Node(f.data + e.data, "L = f + e", calls, (f, e), (1.0, 1.0))
    return a, b, [c, d, e, f, L], calls


def oracle_graph(a, b):
    c = a * b
    e = torch.tanh(c + a)
    return e * c + e


def check_topological_backward(topological_backward) -> str:
    for xs, e_first in (((0.5, -1.5), False), ((-0.8, 0.3), True)):
        a, b, nodes, calls = graph(*xs, e_first)
        root = nodes[-1]
        with without_torch_autograd():
            call(topological_backward, root, who="topological_backward")
        _check_calls(root, nodes, calls)
        given = f"L = tanh(a·b + a)·(a·b) + tanh(a·b + a) at a = {xs[0]}, b = {xs[1]}"
        expected = torch.tensor(oracle(oracle_graph, *xs), dtype=F64)
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


OPS = {  # name: (ours, torch's, inputs, typical slips as (local derivatives, what it means))
    "a / b": (
        lambda a, b: a / b,
        lambda a, b: a / b,
        (1.5, -0.8),
        (
            ((1 / -0.8, 1.5 / 0.64), "d(a/b)/db = −a/b²: the minus sign is missing"),
            ((1 / -0.8, -1 / 0.64), "d(a/b)/db = −a/b²: the factor a is missing"),
            ((-1.5 / 0.64, 1 / -0.8), "the two derivatives are swapped: d/da = 1/b, d/db = −a/b²"),
        ),
    ),
    "log(a)": (
        lambda a: a.log(),
        torch.log,
        (2.5,),
        (
            ((math.log(2.5),), "d log(a)/da = 1/a, not log(a) (out.data)"),
            ((2.5,), "d log(a)/da = 1/a, not a"),
        ),
    ),
    "sigmoid(a)": (
        lambda a: a.sigmoid(),
        torch.sigmoid,
        (0.7,),
        (
            ((0.7 * (1 - 0.7),), "use the output s = out.data in s·(1 − s), not the input a"),
            ((1 / (1 + math.exp(-0.7)),), "d sigmoid/da = s·(1 − s), not s alone"),
            (
                (1 - (1 / (1 + math.exp(-0.7))) ** 2,),
                "that is tanh's 1 − s²: sigmoid's is s·(1 − s)",
            ),
        ),
    ),
}


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
        leaves = [call(Value, x, who="Value") for x in xs]
        with without_torch_autograd():
            out = call(ours, *leaves, who=name)
        expected = theirs(*(torch.tensor(x, dtype=F64) for x in xs))
        given = ", ".join(f"{v} = {x}" for v, x in zip("ab", xs, strict=False))
        same(expected, torch.tensor(out.data, dtype=F64), f"{name} (forward)", given=given)

        wanted = torch.tensor(oracle(lambda *t, f=theirs: f(*t) * 3.0, *xs), dtype=F64)
        got = torch.tensor(_grads(Value, ours, *xs, who=name), dtype=F64)
        ignored = f"the _backward of {name} ignored out.grad: multiply the local derivative by it"
        mistakes = [(wanted.squeeze() / 3, ignored + " (the chain rule)")]
        mistakes += [(3 * torch.tensor(local, dtype=F64).squeeze(), m) for local, m in slips]
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
        wanted = torch.tensor(oracle(lambda *t, f=theirs: f(*t) * 3.0, *xs), dtype=F64)
        got = torch.tensor(_grads(Value, ours, *xs, who=name), dtype=F64)
        if not torch.allclose(got, wanted):
            given = ", ".join(f"{v} = {x}" for v, x in zip("ab", xs, strict=False))
            raise Problem(
                f"the gradient of 3·({name}) is {[num(g) for g in got.tolist()]}, expected "
                f"{[num(w) for w in wanted.tolist()]} for {given}: an input used twice must "
                f"get both contributions — add into .grad with +=, never assign it with ="
            )


# --- 17.3 · unbroadcast ----------------------------------------------------------------------

CASES = (  # (input shape, broadcast shape, what broadcasting did)
    ((4,), (3, 4), "a bias added to every row: sum over the rows, axis 0"),
    ((3, 1), (3, 4), "a column stretched along axis 1: sum axis 1, keeping it (keepdim=True)"),
    ((1, 4), (3, 4), "a row stretched along axis 0: sum axis 0, keeping it (keepdim=True)"),
    ((), (2, 3), "a scalar used everywhere: sum everything"),
    ((2, 1, 4), (5, 2, 3, 4), "a new leading axis (sum it away) and axis 1 stretched (keep it)"),
    ((3, 4), (3, 4), "nothing was broadcast: the gradient as it is"),
)


def broadcast_grad(shape, out_shape, upstream: torch.Tensor) -> torch.Tensor:
    """The oracle: torch's gradient of an input of `shape` expanded to `out_shape`."""
    x = torch.zeros(shape, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(x.expand(out_shape), x, upstream)
    return grad


def check_unbroadcast(unbroadcast) -> str:
    generator = torch.Generator().manual_seed(17)
    for shape, out_shape, meaning in CASES:
        upstream = torch.randn(out_shape, generator=generator, dtype=F64)
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
    return f"all {len(CASES)} broadcasts summed back to the input's shape, as torch does"


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
