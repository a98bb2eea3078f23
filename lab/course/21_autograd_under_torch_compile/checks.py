"""21 · autograd under torch.compile: the backward graph's ops against AOTAutograd's own
(aot_function, no Dynamo), predicted saves against what eager autograd packs."""

from __future__ import annotations

import functools
import itertools

import torch

from lab.exercises.feedback import NotAttempted, Problem, call, unseen_pick

F64 = torch.float64


def _x_w():
    generator = torch.Generator().manual_seed(21)
    x = torch.randn(4, 3, generator=generator, dtype=F64)
    w = torch.randn(3, 2, generator=generator, dtype=F64, requires_grad=True)
    return x, w


def _tanh_layer(x, w):
    """tanh(x @ w).sum()"""
    return torch.tanh(x @ w).sum()


def _sine_product(x, w):
    """(sin(x @ w) * (x @ w)).mean()"""
    return (torch.sin(x @ w) * (x @ w)).mean()


def _exp_layer(x, w):
    """exp(x @ w).mean()"""
    return torch.exp(x @ w).mean()


def _sigmoid_square(x, w):
    """(sigmoid(x @ w) ** 2).sum()"""
    return (torch.sigmoid(x @ w) ** 2).sum()


def _relu_scaled(x, w):
    """(relu(x @ w) * 3).sum()"""
    return (torch.relu(x @ w) * 3).sum()


def _cos_of_tanh(x, w):
    """cos(tanh(x @ w)).sum()"""
    return torch.cos(torch.tanh(x @ w)).sum()


COMPILED = {
    fn.__name__: fn
    for fn in (_tanh_layer, _sine_product, _exp_layer, _sigmoid_square, _relu_scaled, _cos_of_tanh)
}
USUAL_PAIR = ("_tanh_layer", "_sine_product")
# for grading: other pairs of functions (the ops depend on the function, not on the input
# values): lists written out for the usual two fail there
OTHER_PAIRS = [pair for pair in itertools.combinations(COMPILED, 2) if pair != USUAL_PAIR]


@functools.cache
def _oracle(fn, partition) -> tuple[list[str], list[str]]:
    """(forward ops, backward ops) by functorch's aot_function: AOTAutograd without Dynamo.
    Cached: the same function always gives the same graphs."""
    from functorch.compile import aot_function, make_boxed_func

    graphs = {}

    def recorder(kind):
        def compiler(graph, example_inputs):
            graphs[kind] = [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]
            return make_boxed_func(graph.forward)

        return compiler

    compiled = aot_function(
        fn,
        fw_compiler=recorder("forward"),
        bw_compiler=recorder("backward"),
        partition_fn=partition,
    )
    compiled(*_x_w()).backward()
    return graphs["forward"], graphs["backward"]


def _as_names(got) -> list[str]:
    if isinstance(got, set | frozenset):
        raise Problem(
            "backward_ops returned a set, which has no order: return a list of op names, in "
            "graph order"
        )
    if not isinstance(got, list | tuple):
        raise Problem(f"backward_ops returned {type(got).__name__}: return a list of op names")
    return [str(op) for op in got]


def _describe(got, forward, backward, previous, backward_ran: bool):
    """The first mistake that explains `got`, or None."""
    if not got and backward_ran:
        return (
            "the list is empty although backward ran: record the ops in the bw_compiler you "
            "give aot_autograd(fw_compiler=..., bw_compiler=...), and return that list"
        )
    if not got:
        return (
            "the list is empty: the backward graph is compiled only when backward first runs; "
            "call .backward() on the output inside backward_ops, and record in bw_compiler"
        )
    if got == forward:
        return (
            "those are the forward graph's ops: record the graph that bw_compiler receives, "
            "not fw_compiler's"
        )
    if got == forward + backward:
        return (
            "the list holds the forward graph's ops, then the backward graph's: record only "
            "the graph that bw_compiler receives"
        )
    if any(op.endswith(("Backward0", "Backward1")) for op in got):
        return (
            f"those are eager autograd's grad_fn nodes ({got[0]!r}): compile fn with "
            "torch.compile and a backend made by aot_autograd, and record the ops of the "
            "backward graph its bw_compiler receives"
        )
    if any(op.startswith("<OpOverload") or "::" in op for op in got):
        return (
            f"{got[0]!r} is another spelling of the op: return str(node.target), e.g. "
            f"{backward[0]!r}"
        )
    if previous and got[: len(previous)] == previous and len(got) > len(previous):
        return (
            "the list also holds the ops of the previous call: start a new list in every call "
            "(and torch._dynamo.reset())"
        )
    if any(op.startswith(("primals", "tangents")) or op == "output" for op in got):
        return (
            "the list holds graph inputs or the output (primals_1, tangents_1, output): only "
            "nodes with node.op == 'call_function' are ops"
        )
    if any(op.startswith(("<built-in", "<function")) or op in ("matmul", "tanh") for op in got):
        return (
            "those are Dynamo's torch-level ops, the forward graph before AOTAutograd: wrap "
            "your compilers with aot_autograd(fw_compiler=..., bw_compiler=...)"
        )
    short = [op.split(".")[1] if op.startswith("aten.") else op for op in backward]
    if sorted(got) == sorted(short) or any(op.rstrip("_0123456789") in short for op in got):
        return (
            f"those are node names or short names ({got[0]!r}): return str(node.target), e.g. "
            f"{backward[0]!r}"
        )
    if sorted(got) == sorted(backward):
        return "the right ops in another order: list them in graph order (graph.graph.nodes)"
    return None


def check_backward_ops(backward_ops) -> str:
    import torch._dynamo
    from functorch.compile import default_partition, min_cut_rematerialization_partition
    from torch._dynamo.utils import counters

    previous: list[str] = []
    for fn in (COMPILED[name] for name in unseen_pick(USUAL_PAIR, OTHER_PAIRS)):
        inputs = _x_w()
        forward, backward = _oracle(fn, default_partition)
        _, min_cut = _oracle(fn, min_cut_rematerialization_partition)
        torch._dynamo.reset()  # the learner's compile must not find an earlier one cached
        compiled = counters["frames"]["ok"]
        got = _as_names(call(backward_ops, fn, *inputs, who="backward_ops"))
        if got in (backward, min_cut):
            if counters["frames"]["ok"] == compiled:
                raise Problem(
                    "the ops are right, but fn was never compiled by torch.compile (aot_function "
                    "calls AOTAutograd without Dynamo): the exercise is a backend, "
                    "torch.compile(fn, backend=aot_autograd(fw_compiler=..., bw_compiler=...))"
                )
            previous = got
            continue
        backward_ran = inputs[1].grad is not None
        problem = _describe(got, forward, backward, previous, backward_ran)
        shown = ", ".join(op.removeprefix("aten.").removesuffix(".default") for op in backward)
        raise Problem(
            (problem or f"the ops differ from AOTAutograd's backward graph ({shown})")
            + f" — for {fn.__doc__}"
        )
    return "the backward graphs' ops, in order, equal AOTAutograd's for two functions"


# --- 21.2 -----------------------------------------------------------------------------------

FUNCTIONS = {
    "sin": lambda x, w: torch.sin(x),
    "exp": lambda x, w: torch.exp(x),
    "relu": lambda x, w: torch.relu(x),
    "times_three": lambda x, w: 3 * x,
    "sum_of_both": lambda x, w: x + w,
    "product": lambda x, w: x * w,
    "cos_of_sin": lambda x, w: torch.cos(torch.sin(x)),
    "tanh_of_product": lambda x, w: torch.tanh(x * w),
}
INTERMEDIATE = "sin(x)"  # the one tensor that is neither an input nor the output
NAMES = {"x", "w", "out", INTERMEDIATE}
WHY = {
    "sin": "sin's backward multiplies by cos(x), so it needs x",
    "exp": "exp's derivative is exp(x), the output itself: out is kept, x is not needed",
    "relu": "relu's backward masks the gradient by out > 0: it keeps its output",
    "times_three": "the derivative of 3·x is the constant 3: nothing to save",
    "sum_of_both": "the derivative of x + w is 1 for both: nothing to save",
    "product": "d(x·w)/dx = w and d(x·w)/dw = x: both inputs are saved",
    "cos_of_sin": "each op saves for itself: sin keeps x, cos keeps its input sin(x)",
    "tanh_of_product": "the product keeps x and w, tanh keeps its output (tanh′ = 1 − out²)",
}


def saved_names(fn) -> set[str]:
    """What eager autograd packs for fn's backward, named: the oracle (saved_tensors_hooks)."""
    x = torch.tensor([0.5, -1.0, 2.0], dtype=F64, requires_grad=True)
    w = torch.tensor([1.5, 0.25, -0.5], dtype=F64, requires_grad=True)
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        out = fn(x, w)
    known = {t.untyped_storage().data_ptr(): name for t, name in ((x, "x"), (w, "w"), (out, "out"))}
    return {known.get(t.untyped_storage().data_ptr(), INTERMEDIATE) for t in packed}


def _shown(names: set[str]) -> str:
    return "{" + ", ".join(repr(name) for name in sorted(names)) + "}" if names else "set()"


def check_predicted_saves(predicted_saves) -> str:
    """A fixed quiz: the functions are the notebook's, the answer a dict with no inputs, so
    lab grade's unseen inputs cannot apply (its second run asks the same; the grade says so)."""
    predictions = call(predicted_saves, who="predicted_saves")
    if not isinstance(predictions, dict):
        raise Problem(
            f"predicted_saves returned {type(predictions).__name__}: return a dict "
            '{"sin": {"x"}, ...}'
        )
    if all(value is Ellipsis for value in predictions.values()):
        raise NotAttempted()
    for name, fn in FUNCTIONS.items():
        if name not in predictions:
            raise Problem(f"no prediction for {name!r}: give one set per function")
        guess = predictions[name]
        if isinstance(guess, str):
            raise Problem(f"{name}: {guess!r} is a string; give a set of names, e.g. {{{guess!r}}}")
        if guess is None:
            raise Problem(f"{name}: None; when nothing is saved, give an empty set()")
        try:
            guess = set(guess)
        except TypeError:
            raise Problem(f"{name}: give a set of names such as {{'x'}}, not {guess!r}") from None
        unknown = guess - NAMES
        if unknown:
            raise Problem(
                f"{name}: {sorted(unknown)[0]!r} is not one of the names x, w, out, sin(x) (the "
                "function's result is called 'out', whatever the function)"
            )
        truth = saved_names(fn)
        if guess != truth:
            raise Problem(
                f"{name}: you predicted {_shown(guess)}, backward gets {_shown(truth)}: {WHY[name]}"
            )
    return f"all {len(FUNCTIONS)} predictions match what autograd saves for backward"


CHECKS = {"backward_ops": check_backward_ops, "predicted_saves": check_predicted_saves}
