"""Lesson 21: backends that print and record, AOTAutograd's forward/backward graphs, saved vs
recomputed, hooks and graph breaks under torch.compile, compiled autograd."""

from __future__ import annotations

import ast
from collections import Counter

import pytest
import torch
from functorch.compile import default_partition, min_cut_rematerialization_partition
from support import answers
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_scalars, single_run_dir

from lab.course import find
from lab.exercises.checking import PASSED

F64 = torch.float64
lesson = definitions("21")

# Small slips the lesson's own checks must catch.
MUTATIONS = [
    # a backend that drops AOTAutograd: no forward/backward graphs reach the compilers
    ("        return self.backend(graph, example_inputs)", "        return graph.forward"),
    # the "default" recorder built with the min-cut partitioner: no longer eager's saves
    (
        "default = Recorder(default_partition)",
        "default = Recorder(min_cut_rematerialization_partition)",
    ),
    # saved bytes counted per tensor, not per storage: a detach() of a saved tensor counts twice
    (
        "storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}",
        "storages = {id(t): t.untyped_storage().nbytes() for t in saved}",
    ),
    # a print in the "pure" hook: a side effect, so the graph breaks
    (
        "h.register_hook(lambda grad: grad * 10)  # pure",
        "h.register_hook(lambda grad: print(end='') or grad * 10)  # pure",
    ),
    # backward called outside the compiled step: compiled autograd captures nothing
    ("    loss.backward()\n    return loss\n", "    return loss\n"),
]


def generated(*shape, seed=0, grad=False):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=F64).requires_grad_(grad)


def chain(x, w):
    return torch.exp(torch.cos(torch.sin(x @ w))).sum()


def test_printer_sees_the_forward_graph_and_listing_names_every_node(capsys):
    printer = lesson.Printer()
    x, w = generated(3, 2), generated(2, 2, seed=1, grad=True)
    grads = lesson.gradients(lesson.compiled(chain, printer), x, w)
    assert torch.allclose(grads[0], lesson.gradients(chain, x, w)[0])
    (graph,) = printer.graphs
    assert lesson.ops(graph) == ["matmul", "sin", "cos", "exp", "sum"]
    text = lesson.listing(graph)
    assert text.splitlines()[0].strip().startswith("input")
    assert "sin = sin(" in text and text.splitlines()[-1].strip().startswith("return")
    assert "Dynamo's graph #1" in capsys.readouterr().out


def test_recorder_saves_like_eager_by_default_and_min_cut_recomputes_sin():
    x, w = generated(8, 4), generated(4, 4, seed=1, grad=True)
    default = lesson.Recorder(default_partition)
    min_cut = lesson.Recorder(min_cut_rematerialization_partition)
    eager = lesson.gradients(chain, x, w)[0]
    assert torch.allclose(lesson.gradients(lesson.compiled(chain, default), x, w)[0], eager)
    assert torch.allclose(lesson.gradients(lesson.compiled(chain, min_cut), x, w)[0], eager)
    assert default.saved_bytes() == lesson.eager_saved_bytes(chain, x, w)
    assert min_cut.saved_bytes()[1] < default.saved_bytes()[1]
    assert lesson.recomputed(min_cut, default) == Counter({"sin": 1})
    assert all(name in ("primals_1", "mm", "sin", "detach") for name in default.saved())


def test_eager_saved_bytes_counts_storages_once():
    x = generated(5, 3, grad=True)
    count, size = lesson.eager_saved_bytes(lambda t: (t * t).sum(), x)  # x saved twice
    assert (count, size) == (1, 5 * 3 * 8)
    assert lesson.eager_saved_bytes(lambda t: (3 * t).sum(), x) == (0, 0)


def test_compiled_resets_dynamo_so_a_new_backend_sees_the_graph():
    first, second = lesson.Printer(quiet=True), lesson.Printer(quiet=True)
    x = generated(2, 2)
    lesson.compiled(torch.sin, first)(x)
    lesson.compiled(torch.sin, second)(x)
    assert len(first.graphs) == len(second.graphs) == 1


def test_with_break_compiles_to_two_graphs_and_keeps_eager_gradients():
    x, w = generated(6, 4, seed=2), generated(4, 3, seed=3, grad=True)
    recorder = lesson.Recorder()
    grads = lesson.gradients(lesson.compiled(lesson.with_break, recorder), x, w)
    assert len(recorder.forward) == len(recorder.backward) == 2
    assert torch.allclose(grads[0], lesson.gradients(lesson.with_break, x, w)[0])


def test_cells_log_saved_bytes_the_figure_and_the_compile_time(runs_dir):
    ns = run_lesson("21", "--batch", "16", "--width", "8")
    assert len(ns.lesson.checks) == 24
    assert ns.lesson.figures == ["saved_for_backward"]
    scalars = read_scalars(single_run_dir(runs_dir, "21_autograd_under_torch_compile"))
    eager, default, min_cut = (
        scalars[f"saved_bytes/{name}"][0][1] for name in ("eager", "AOT_default", "AOT_min-cut")
    )
    assert eager == default > min_cut > 0
    assert eager == 16 * 8 * 8 * 4  # x, h, σ(h), h·σ(h): four 16×8 float64 tensors
    assert scalars["compile/first_call_s"][0][1] > 0


def test_without_compiled_autograd_the_last_cell_says_so(runs_dir, capsys):
    ns = run_lesson("21", "--batch", "8", "--width", "4", "--no-compiled-autograd")
    assert len(ns.lesson.checks) == 21
    assert "skipped: COMPILED_AUTOGRAD = False" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=["no-aot", "min-cut-as-default", "views-counted-twice", "impure-hook", "backward-outside"],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("21", old, new, "--batch", "8", "--width", "4")


def test_the_exercise_notebook_lists_the_functions_its_check_knows():
    """21.2's notebook shows FUNCTIONS to the learner; the check has its own copy."""
    tree = ast.parse(find("21").exercises_path.read_text(encoding="utf-8"))
    (shown,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FUNCTIONS"
    ]
    checks = find("21").checks()
    source = find("21").folder.joinpath("checks.py").read_text(encoding="utf-8")
    (known,) = [
        node.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FUNCTIONS"
    ]
    assert ast.dump(shown) == ast.dump(known)
    assert set(checks.FUNCTIONS) == set(checks.WHY)


BACKWARD_OPS_HEAD = """
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
import torch._dynamo
"""
EVERY_OP = 'str(n.target) for n in graph.graph.nodes if n.op == "call_function"'


def recording(
    ops=EVERY_OP,
    fw="keep",
    bw="record",
    run="torch.compile(fn, backend=backend)(*inputs).backward()",
    returned="ops",
) -> str:
    """A backward_ops that is right, except for the piece replaced."""
    return (
        BACKWARD_OPS_HEAD
        + f"""
def backward_ops(fn, *inputs):
    ops = []
    def record(graph, example_inputs):
        ops.extend({ops})
        return make_boxed_func(graph.forward)
    def keep(graph, example_inputs):
        return make_boxed_func(graph.forward)
    torch._dynamo.reset()
    backend = aot_autograd(fw_compiler={fw}, bw_compiler={bw})
    {run}
    return {returned}
"""
    )


# Typical wrong answers to 21's exercises, and what the check must say about each.
WRONG = {
    "21.1": [
        (
            recording(fw="record", bw="keep"),
            "those are the forward graph's ops: record the graph that bw_compiler receives",
        ),
        (
            recording(fw="make_boxed_func"),
            "the torch.compile backend raised TypeError: make_boxed_func() takes 1 positional "
            "argument but 2 were given while compiling: a backend, and each compiler given to "
            "aot_autograd, is called as f(graph, example_inputs)",
        ),
        (
            recording(run="torch.compile(fn, backend=backend)(*inputs)"),
            "the list is empty: the backward graph is compiled only when backward first runs",
        ),
        (
            BACKWARD_OPS_HEAD
            + """
OPS = []

def backward_ops(fn, *inputs):
    def record(graph, example_inputs):
        OPS.extend(str(n.target) for n in graph.graph.nodes if n.op == "call_function")
        return make_boxed_func(graph.forward)
    torch._dynamo.reset()
    backend = aot_autograd(fw_compiler=lambda g, e: make_boxed_func(g.forward), bw_compiler=record)
    torch.compile(fn, backend=backend)(*inputs).backward()
    return OPS
""",
            "the list also holds the ops of the previous call: start a new list in every call",
        ),
        (
            recording(ops="str(n.target) for n in graph.graph.nodes"),
            "the list holds graph inputs or the output (primals_1, tangents_1, output): only "
            "nodes with node.op == 'call_function' are ops",
        ),
        (
            recording(ops='n.name for n in graph.graph.nodes if n.op == "call_function"'),
            "those are node names or short names ('expand'): return str(node.target), e.g. "
            "'aten.expand.default'",
        ),
        (
            BACKWARD_OPS_HEAD
            + """
def backward_ops(fn, *inputs):
    ops = []
    def backend(graph, example_inputs):
        ops.extend(str(n.target) for n in graph.graph.nodes if n.op == "call_function")
        return graph.forward
    torch._dynamo.reset()
    torch.compile(fn, backend=backend)(*inputs).backward()
    return ops
""",
            "those are Dynamo's torch-level ops, the forward graph before AOTAutograd",
        ),
        (
            recording(fw="record"),
            "the list holds the forward graph's ops, then the backward graph's: record only the "
            "graph that bw_compiler receives",
        ),
        (
            BACKWARD_OPS_HEAD
            + """
def backward_ops(fn, *inputs):
    ops = []
    torch._dynamo.reset()
    torch.compile(fn, backend="aot_eager")(*inputs).backward()
    return ops
""",
            "the list is empty although backward ran: record the ops in the bw_compiler",
        ),
        (
            recording(ops='n.target.name() for n in graph.graph.nodes if n.op == "call_function"'),
            "'aten::expand' is another spelling of the op: return str(node.target), e.g. "
            "'aten.expand.default'",
        ),
        (
            recording(returned="set(ops)"),
            "backward_ops returned a set, which has no order: return a list of op names",
        ),
        (
            recording(run="torch.compile(fn, backend=backend)(*inputs).backward()\n    ops.sort()"),
            "the right ops in another order: list them in graph order",
        ),
        (
            """
def backward_ops(fn, *inputs):  # eager autograd's graph, no compiling at all
    ops, todo = [], [fn(*inputs).grad_fn]
    while todo:
        node = todo.pop()
        if node is not None:
            ops.append(node.name())
            todo.extend(next_node for next_node, _ in node.next_functions)
    return ops
""",
            "those are eager autograd's grad_fn nodes ('SumBackward0')",
        ),
        (
            """
from functorch.compile import aot_function, make_boxed_func

def backward_ops(fn, *inputs):  # AOTAutograd without Dynamo: no torch.compile backend
    ops = []
    def record(graph, example_inputs):
        ops.extend(str(n.target) for n in graph.graph.nodes if n.op == "call_function")
        return make_boxed_func(graph.forward)
    aot_function(fn, fw_compiler=lambda g, e: make_boxed_func(g.forward), bw_compiler=record)(
        *inputs
    ).backward()
    return ops
""",
            "the ops are right, but fn was never compiled by torch.compile",
        ),
    ],
    "21.2": [
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"x"}, "relu": {"out"}, "times_three": set(),
            "sum_of_both": set(), "product": {"x", "w"}, "cos_of_sin": {"x", "sin(x)"},
            "tanh_of_product": {"x", "w", "out"}}
""",
            "exp: you predicted {'x'}, backward gets {'out'}: exp's derivative is exp(x), the "
            "output itself",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"out"}, "relu": {"x"}, "times_three": set(),
            "sum_of_both": set(), "product": {"x", "w"}, "cos_of_sin": {"x", "sin(x)"},
            "tanh_of_product": {"x", "w", "out"}}
""",
            "relu: you predicted {'x'}, backward gets {'out'}: relu's backward masks the gradient "
            "by out > 0",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"out"}, "relu": {"out"}, "times_three": {"x"},
            "sum_of_both": set(), "product": {"x", "w"}, "cos_of_sin": {"x", "sin(x)"},
            "tanh_of_product": {"x", "w", "out"}}
""",
            "times_three: you predicted {'x'}, backward gets set(): the derivative of 3·x is the "
            "constant 3",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"out"}, "relu": {"out"}, "times_three": set(),
            "sum_of_both": set(), "product": {"w"}, "cos_of_sin": {"x", "sin(x)"},
            "tanh_of_product": {"x", "w", "out"}}
""",
            "product: you predicted {'w'}, backward gets {'w', 'x'}: d(x·w)/dx = w and "
            "d(x·w)/dw = x",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"out"}, "relu": {"out"}, "times_three": set(),
            "sum_of_both": set(), "product": {"x", "w"}, "cos_of_sin": {"x"},
            "tanh_of_product": {"x", "w", "out"}}
""",
            "cos_of_sin: you predicted {'x'}, backward gets {'sin(x)', 'x'}: each op saves for "
            "itself",
        ),
        (
            """
def predicted_saves():
    return {"sin": "x"}
""",
            "sin: 'x' is a string; give a set of names, e.g. {'x'}",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"out"}}
""",
            "no prediction for 'relu': give one set per function",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"input"}}
""",
            "sin: 'input' is not one of the names x, w, out, sin(x)",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"exp(x)"}}
""",
            "exp: 'exp(x)' is not one of the names x, w, out, sin(x) (the function's result is "
            "called 'out', whatever the function)",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"out"}, "relu": {"out"}, "times_three": None}
""",
            "times_three: None; when nothing is saved, give an empty set()",
        ),
        (
            """
def predicted_saves():
    return {"sin": {"x"}, "exp": {"out"}, "relu": {"out"}, "times_three": set(),
            "sum_of_both": set(), "product": {"x", "w"}, "cos_of_sin": {"x", "sin(x)"},
            "tanh_of_product": {"out"}}
""",
            "tanh_of_product: you predicted {'out'}, backward gets {'out', 'w', 'x'}: the product "
            "keeps x and w",
        ),
    ],
}

# Correct answers that differ from the reference solution: each must pass.
RIGHT = {
    "21.1": [
        # a small recorder class, the min-cut partitioner (what aot_eager and inductor use)
        BACKWARD_OPS_HEAD
        + """
from functorch.compile import min_cut_rematerialization_partition

class BackwardOps:
    def __init__(self):
        self.ops = []

    def forward_compiler(self, graph, example_inputs):
        return make_boxed_func(graph.forward)

    def backward_compiler(self, graph, example_inputs):
        for node in graph.graph.nodes:
            if node.op == "call_function":
                self.ops.append(str(node.target))
        return make_boxed_func(graph.forward)


def backward_ops(fn, *inputs):
    torch._dynamo.reset()
    seen = BackwardOps()
    backend = aot_autograd(
        fw_compiler=seen.forward_compiler,
        bw_compiler=seen.backward_compiler,
        partition_fn=min_cut_rematerialization_partition,
    )
    out = torch.compile(fn, backend=backend)(*inputs)
    torch.autograd.grad(out, [t for t in inputs if t.requires_grad])
    return seen.ops
""",
        # a backend made with aot_module_simplified, the ops kept as OpOverload objects
        """
from functorch.compile import make_boxed_func
from torch._functorch.aot_autograd import aot_module_simplified
import torch._dynamo

def backward_ops(fn, *inputs):
    ops = []

    def forward(gm, example_inputs):
        return make_boxed_func(gm.forward)

    def backward(gm, example_inputs):
        ops.extend(node.target for node in gm.graph.nodes if node.op == "call_function")
        return make_boxed_func(gm.forward)

    def backend(gm, example_inputs):
        return aot_module_simplified(gm, example_inputs, fw_compiler=forward, bw_compiler=backward)

    torch._dynamo.reset()
    torch.compile(fn, backend=backend)(*inputs).backward()
    return tuple(ops)
""",
    ],
    "21.2": [
        # lists and tuples instead of sets, in another order
        """
def predicted_saves():
    return {
        "tanh_of_product": ("out", "w", "x"),
        "cos_of_sin": ["sin(x)", "x"],
        "product": ["w", "x"],
        "sum_of_both": [],
        "times_three": (),
        "relu": ["out"],
        "exp": ["out"],
        "sin": ["x"],
    }
""",
        # built by code: frozensets, and a prediction of one's own beside them
        """
def predicted_saves():
    keep = {"sin": frozenset({"x"}), "exp": frozenset({"out"}), "relu": frozenset({"out"})}
    keep.update(times_three=frozenset(), sum_of_both=frozenset())
    keep["product"] = {"x", "w"}
    keep["cos_of_sin"] = {"x", "sin(x)"}
    keep["tanh_of_product"] = keep["product"] | {"out"}
    keep["my_own_function"] = {"x"}
    return keep
""",
    ],
}


@pytest.mark.parametrize(("key", "source"), answers.cases(RIGHT))
def test_a_different_correct_answer_passes_in_the_notebook_and_lab_check(key, source, tmp_path):
    in_cell, from_file = answers.verdicts(key, source, tmp_path)
    assert in_cell.status == from_file.status == PASSED, (in_cell.message, from_file.message)
