"""Lesson 17: a scalar engine and a tensor engine built in the lesson, against torch's autograd
(random expressions, broadcasting, a small MLP trained both ways), and the graph drawn."""

from __future__ import annotations

import random
import shutil
import textwrap

import pytest
import torch
from support import answers
from support.ci_skip import skip_unless_ci
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_image_sizes, read_scalars, single_run_dir

from lab.course import find
from lab.exercises.checking import FAILED, PASSED, evaluate

F64 = torch.float64
lesson = definitions("17")

# Small slips in an engine; the lesson's own checks must catch each.
MUTATIONS = [
    # a wrong op backward: tanh's derivative without the square
    ("self.grad += (1 - out.data**2) * out.grad", "self.grad += (1 - out.data) * out.grad"),
    # a missing accumulation: the product assigns its input's gradient
    ("self.grad += other.data * out.grad", "self.grad = other.data * out.grad"),
    # no visited set: a node used twice is placed, and run, twice
    ("if node not in seen:  # a node used twice", "if True:  # a node used twice"),
    # unbroadcast over the wrong axis: the trailing one instead of the leading one
    ("grad = grad.sum(0)", "grad = grad.sum(-1)"),
    # the tensor product's backward forgets its local derivative for a broadcast input
    (
        "self.grad += unbroadcast(other.data * out.grad, self.shape)",
        "self.grad += unbroadcast(out.grad, self.shape)",
    ),
    # an input recorded twice: the gradients stay right, torch's graph has one arrow there
    ('(self,), f"**{k}")', '(self, self), f"**{k}")'),
]
TORCH_OPS = {  # the test's own reading of the lesson's instruction names
    "+": lambda a, b: a + b,
    "*": lambda a, b: a * b,
    "**2": lambda a, b: a * a,
    "**3": lambda a, b: a * a * a,
    "exp": lambda a, b: torch.exp(a),
    "tanh": lambda a, b: torch.tanh(a),
    "relu": lambda a, b: torch.relu(a),
}


def needs_graphviz():
    if shutil.which("dot") is None:
        skip_unless_ci("Graphviz's `dot` is not installed (apt-get install graphviz)")


@pytest.fixture
def no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("dot") is None


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_value_gradients_equal_torch_on_random_expressions(seed):
    program, xs = lesson.random_expression(random.Random(seed))
    values = lesson.run_program(program, [lesson.Value(x) for x in xs])
    used = {k for op, i, j in program for k in ((i, j) if op in ("+", "*") else (i,))}
    sum(v for n, v in enumerate(values) if n not in used).backward()
    leaves = [torch.tensor(x, dtype=F64, requires_grad=True) for x in xs]
    nodes = list(leaves)
    for op, i, j in program:
        nodes.append(TORCH_OPS[op](nodes[i], nodes[j]))
    loss = sum(v for n, v in enumerate(nodes) if n not in used)
    expected = torch.autograd.grad(loss, leaves)
    for value, want in zip(values, expected, strict=False):
        assert value.grad == pytest.approx(want.item(), rel=1e-12, abs=1e-12)
    assert lesson.compare_with_torch(program, xs) < 1e-12


def test_a_value_used_twice_gets_both_contributions():
    a = lesson.Value(1.5)
    b = a * a + a.tanh() * a
    b.backward()
    x = torch.tensor(1.5, dtype=F64, requires_grad=True)
    (want,) = torch.autograd.grad(x * x + torch.tanh(x) * x, x)
    assert a.grad == pytest.approx(want.item(), rel=1e-14)


def test_relu_and_pow_follow_torch_at_the_kink_and_for_negative_powers():
    for x0 in (-0.5, 0.0, 0.5):
        a = lesson.Value(x0)
        a.relu().backward()
        t = torch.tensor(x0, dtype=F64, requires_grad=True)
        (want,) = torch.autograd.grad(torch.relu(t), t)
        assert a.grad == want.item()
    a = lesson.Value(2.0)
    (a**-1.5).backward()
    assert a.grad == pytest.approx(-1.5 * 2.0**-2.5)


def test_topological_order_places_each_node_once_after_its_inputs():
    a, b, L = lesson.tiny_expression()
    order = lesson.topological_order(L)
    assert len(order) == len({id(n) for n in order}) == 5
    position = {id(n): k for k, n in enumerate(order)}
    assert all(position[id(child)] < position[id(n)] for n in order for child in n._prev)


def test_the_drawing_has_a_box_per_value_and_an_oval_per_operation():
    a = lesson.Value(0.3, label="a")
    out = (a.exp() * a + 2) ** 2  # values: a, exp, the constant 2, product, sum, square
    out.label = "out"
    drawn = lesson.shapes_drawn(lesson.draw(out))
    # by hand: 4 operations (exp, *, +, **2); arrows: 1 + 2 + 2 + 1 in, one out of each oval
    assert drawn == {"box": 6, "oval": 4, "arrow": 6 + 4}


def test_render_png_draws_with_graphviz():
    needs_graphviz()
    png = lesson.render_png(lesson.draw(lesson.tiny_expression()[2]))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    ("shape", "out_shape"),
    [((5,), (2, 5)), ((2, 1), (2, 3)), ((1,), (4, 3, 1)), ((), (3,)), ((3, 1, 1), (2, 3, 4, 5))],
)
def test_unbroadcast_equals_the_gradient_of_expand(shape, out_shape):
    upstream = torch.randn(out_shape, dtype=F64)
    x = torch.zeros(shape, dtype=F64, requires_grad=True)
    (want,) = torch.autograd.grad(x.expand(out_shape), x, upstream)
    got = lesson.unbroadcast(upstream, torch.Size(shape))
    assert got.shape == want.shape and torch.allclose(got, want)


def test_tensor_engine_gradients_equal_torch_with_broadcasting():
    generator = torch.Generator().manual_seed(3)
    raw = [torch.randn(s, generator=generator, dtype=F64) for s in ((4, 3), (3, 2), (2,), (4, 1))]
    ours = [lesson.Tensor(t.clone()) for t in raw]
    theirs = [t.clone().requires_grad_() for t in raw]
    loss = ((ours[0] @ ours[1] + ours[2]).tanh() * ours[3] - 0.5).sum()
    loss.backward()
    x, w, b, c = theirs
    expected = torch.autograd.grad(((x @ w + b).tanh() * c - 0.5).sum(), theirs)
    for mine, want in zip(ours, expected, strict=True):
        assert mine.grad.shape == want.shape
        assert torch.allclose(mine.grad, want, rtol=1e-12, atol=1e-14)


def test_mlp_trained_by_our_engine_and_by_torch_from_the_same_weights_stays_equal():
    x, y = lesson.mlp_data(16)
    start = lesson.initial_weights(6, seed=5)
    ours, our_weights = lesson.train_ours(start, x, y, steps=12, lr=0.2)
    # the oracle: nn.Linear layers holding the same weights, torch.optim.SGD, F.mse_loss
    model = torch.nn.Sequential(torch.nn.Linear(1, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    model = model.to(F64)
    with torch.no_grad():
        model[0].weight.copy_(start["W1"].T), model[0].bias.copy_(start["b1"])
        model[2].weight.copy_(start["W2"].T), model[2].bias.copy_(start["b2"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    theirs = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        theirs.append(loss.item())
    assert ours == pytest.approx(theirs, rel=1e-10)
    assert torch.allclose(our_weights["W2"], model[2].weight.detach().T, rtol=1e-10)
    assert ours[-1] < ours[0]


def test_cells_check_draw_and_log_the_engine(runs_dir):
    needs_graphviz()
    ns = run_lesson("17", "--expressions", "4", "--steps", "7", "--hidden", "5")
    assert len(ns.lesson.checks) == 13
    assert ns.lesson.figures == [
        "tiny_expression_graph",
        "ours_beside_torch/0",  # our engine's graph, by the inspector
        "ours_beside_torch/1",  # torch's graph of the same expression
        "mlp_ours_vs_torch",
    ]
    assert len(ns.our_losses) == 7 and ns.start["W1"].shape == (1, 5)  # the settings took effect
    run_dir = single_run_dir(runs_dir, "17_build_your_own_autograd")
    scalars = read_scalars(run_dir)
    assert [step for step, _ in scalars["random_expressions/max_relative_difference"]] == [
        0,
        1,
        2,
        3,
    ]
    assert max(v for _, v in scalars["random_expressions/max_relative_difference"]) < 1e-12
    ours, theirs = scalars["mlp/loss_ours"], scalars["mlp/loss_torch"]
    assert [s for s, _ in ours] == list(range(7))
    assert [v for _, v in ours] == pytest.approx([v for _, v in theirs], rel=1e-6)  # float32 logs
    (_, width, height), *_ = read_image_sizes(run_dir)["tiny_expression_graph"]
    assert width > 3 * height > 100  # laid out left to right: a leaves-to-loss strip


def test_without_graphviz_the_values_are_listed(runs_dir, no_graphviz, capsys):
    ns = run_lesson("17", "--expressions", "2", "--steps", "3")
    assert len(ns.lesson.checks) == 13 and ns.lesson.figures == ["mlp_ours_vs_torch"]
    printed = capsys.readouterr().out
    assert "our engine" in printed and "backward graph of AddBackward0" in printed  # both walks
    assert "apt-get install graphviz" in printed
    assert "Value(a·b + a: data=-0.25, grad=0.94)" in printed  # 1 − tanh²(−0.25)


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "tanh-derivative",
        "mul-assigns",
        "no-visited-set",
        "unbroadcast-last-axis",
        "mul-local",
        "pow-input-twice",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("17", old, new, "--expressions", "6", "--steps", "4")


# --- exercises -------------------------------------------------------------------------------

SOLUTIONS = find("17").solutions_path.read_text(encoding="utf-8")


def _solutions_with(old: str, new: str) -> str:
    """The reference solutions with one slip typed into them (what a learner's copy holds)."""
    assert SOLUTIONS.count(old) == 1, old
    return SOLUTIONS.replace(old, new)


# Typical wrong answers to 17's exercises, and what the check must say about each.
WRONG = {
    "17.1": [
        (
            """
def topological_backward(root):
    order, seen = [], set()

    def visit(node):
        if node not in seen:
            seen.add(node)
            for child in node._prev:
                visit(child)
            order.append(node)

    visit(root)
    for node in reversed(order):
        node._backward()
""",
            "root.grad was 0 when the root's _backward ran, so every gradient stays 0: start "
            "with root.grad = 1.0",
        ),
        (
            """
def topological_backward(root):
    root.grad = 1.0
    queue, seen = [root], {root}
    while queue:  # breadth first: nearest nodes first, not after all their users
        node = queue.pop(0)
        node._backward()
        for child in node._prev:
            if child not in seen:
                seen.add(child)
                queue.append(child)
""",
            "the _backward of c = a·b ran before that of d = c + a, which uses it",
        ),
        (
            """
def topological_backward(root):
    order, seen = [], set()

    def visit(node):
        if node not in seen:
            seen.add(node)
            for child in node._prev:
                visit(child)
            order.append(node)

    visit(root)
    root.grad = 1.0
    for node in order:
        node._backward()
""",
            "the _backward calls ran in forward order (inputs first)",
        ),
        (
            """
def topological_backward(root):
    order = []

    def visit(node):
        for child in node._prev:
            visit(child)
        order.append(node)

    visit(root)
    root.grad = 1.0
    for node in reversed(order):
        node._backward()
""",
            "the _backward of c = a·b ran 3 times: a node used by several others must still be "
            "placed, and run, once",
        ),
        (
            """
def topological_backward(root):
    root.grad = 1.0
    root._backward()
""",
            "the _backward of c = a·b never ran: reach every node",
        ),
        (
            """
def topological_backward(root):
    leaf = torch.tensor(root.data, requires_grad=True)
    (leaf * 1.0).backward()
""",
            "your engine called torch's autograd",
        ),
        (
            """
def topological_backward(root):
    order, seen = [], set()

    def visit(node):  # placed before what it was computed from: right for one graph by luck
        if node not in seen:
            seen.add(node)
            order.append(node)
            for child in node._prev:
                visit(child)

    visit(root)
    root.grad = 1.0
    for node in order:
        node._backward()
""",
            "the _backward of e = tanh(d) ran before that of f = e·c, which uses it",
        ),
        (
            """
def topological_backward(root):
    seen = set()
    root.grad = 1.0

    def visit(node):  # runs each node as soon as its inputs are done: forward order
        if node not in seen:
            seen.add(node)
            for child in node._prev:
                visit(child)
            node._backward()

    visit(root)
""",
            "the _backward calls ran in forward order (inputs first)",
        ),
    ],
    "17.2": [
        (
            _solutions_with(
                "other.grad += -self.data / other.data**2 * out.grad",
                "other.grad += self.data / other.data**2 * out.grad",
            ),
            "(dL/da, dL/db) of L = 3·(a / b) differs at index 1 (expected -7.031, got 7.031) "
            "for a = 1.5, b = -0.8: d(a/b)/db = −a/b²: the minus sign is missing",
        ),
        (
            _solutions_with(
                "self.grad += out.grad / self.data\n", "self.grad += out.data * out.grad\n"
            ),
            "dL/da of L = 3·(log(a)) differs (expected 1.2, got 2.749) for a = 2.5: "
            "d log(a)/da = 1/a, not log(a)",
        ),
        (
            _solutions_with(
                "self.grad += out.data * (1 - out.data) * out.grad",
                "self.grad += self.data * (1 - self.data) * out.grad",
            ),
            "use the output s = out.data in s·(1 − s), not the input a",
        ),
        (
            _solutions_with(
                "self.grad += out.data * (1 - out.data) * out.grad",
                "self.grad += out.data * (1 - out.data)",
            ),
            "the _backward of sigmoid(a) ignored out.grad: multiply the local derivative by it",
        ),
        (
            _solutions_with(
                "self.grad += out.grad / other.data\n", "self.grad = out.grad / other.data\n"
            ),
            "the gradient of 3·(a / b + a / b) is ['-3.75', '-14.06'], expected ['-7.5', "
            "'-14.06'] for a = 1.5, b = -0.8: an input used twice must get both contributions",
        ),
        (
            _solutions_with(
                "self.grad += out.grad / self.data\n",
                "self.grad += torch.autograd.grad(torch.log(torch.tensor(self.data, "
                "requires_grad=True)), [])[0] * out.grad\n",
            ),
            "your engine called torch's autograd",
        ),
        (
            _solutions_with(
                "other.grad += -self.data / other.data**2 * out.grad",
                "other.grad += -1 / other.data**2 * out.grad",
            ),
            "d(a/b)/db = −a/b²: the factor a is missing",
        ),
        (
            _solutions_with(
                "self.grad += out.data * (1 - out.data) * out.grad",
                "self.grad += (1 - out.data**2) * out.grad",
            ),
            "that is tanh's 1 − s²: sigmoid's is s·(1 − s)",
        ),
        (
            _solutions_with(
                """            self.grad += out.grad / other.data
            other.grad += -self.data / other.data**2 * out.grad
""",
                """            raise NotImplementedError("17.2: d(a/b)/da and d(a/b)/db")
""",
            ),
            "log(a) and sigmoid(a) are right; the _backward of a / b still raises "
            "NotImplementedError: write it too",
        ),
        (
            _solutions_with(
                """        visit(self)
        self.grad = 1.0
        for node in reversed(order):
            node._backward()
""",
                """        topological_backward(self)
""",
            )
            + """
def topological_backward(root):  # 17.1 left as it was
    raise NotImplementedError("17.1: seed root.grad, then run every _backward in order")
""",
            "your Value.backward calls topological_backward, exercise 17.1, which still raises "
            "NotImplementedError: finish 17.1 first",
        ),
    ],
    "17.3": [
        (
            """
def unbroadcast(grad, shape):
    return grad.sum(0)
""",
            "for an input of shape (3, 1) broadcast to (3, 4), unbroadcast returned shape (4,): "
            "expected (3, 1) (a column stretched along axis 1: sum axis 1, keeping it",
        ),
        (
            """
def unbroadcast(grad, shape):
    while grad.dim() > len(shape):
        grad = grad.mean(0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.mean(axis, keepdim=True)
    return grad
""",
            "you averaged: an element used n times gets the sum of its n gradients",
        ),
        (
            """
def unbroadcast(grad, shape):
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for axis in reversed(range(len(shape))):
        if shape[axis] == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis)
    return grad
""",
            "returned shape (3,): keep the summed axes with keepdim=True, the input's shape is "
            "(3, 1)",
        ),
        (
            """
def unbroadcast(grad, shape):
    while grad.dim() > len(shape):
        grad = grad.sum(-1)
    return grad
""",
            "broadcasting lines shapes up on the right, so the extra axes are the leading "
            "ones: sum axis 0, not the last axis",
        ),
        (
            """
def unbroadcast(grad, shape):
    return grad
""",
            "the leading axes broadcasting added are still there: sum axis 0 away",
        ),
        (
            """
def unbroadcast(grad, shape):
    return grad.sum()
""",
            "unbroadcast returned shape (): everything was summed to one number; sum only the "
            "axes broadcasting added",
        ),
        (
            """
def unbroadcast(grad, shape):
    x = torch.zeros(shape, dtype=grad.dtype, requires_grad=True)
    x.expand(grad.shape).backward(grad)
    return x.grad
""",
            "your engine called torch's autograd",
        ),
        (
            """
def unbroadcast(grad, shape):
    return grad.sum_to_size(shape).numpy()
""",
            "unbroadcast should return a tensor, got ndarray",
        ),
    ],
}

# Correct answers unlike the reference solutions; each must pass.
RIGHT = {
    "17.1": [
        """
def topological_backward(root):
    # Kahn's algorithm: a node is ready once every node using it has run
    users, todo, seen = {}, [root], {root}
    while todo:
        node = todo.pop()
        for child in node._prev:
            users[child] = users.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                todo.append(child)
    root.grad = 1.0
    ready = [root]
    while ready:
        node = ready.pop()
        node._backward()
        for child in node._prev:
            users[child] -= 1
            if users[child] == 0:
                ready.append(child)
""",
        """
def place(node, order, visited):  # a helper above the answer, visited ids in a list
    if id(node) not in visited:
        visited.append(id(node))
        for child in node._prev:
            place(child, order, visited)
        order.append(node)

def topological_backward(root):
    order = []
    place(root, order, [])
    root.grad = 1
    for node in order[::-1]:
        node._backward()
""",
        """
def topological_backward(root):
    # iterative depth-first search: a node is placed once all it was computed from are
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev)
    root.grad = 1.0
    for node in reversed(order):
        node._backward()
""",
        """
def topological_backward(root):
    # layers by longest distance from the root: every user of a node comes before it
    depth, frontier = {root: 0}, [root]
    while frontier:
        following = []
        for node in frontier:
            for child in node._prev:
                if depth.get(child, -1) < depth[node] + 1:
                    depth[child] = depth[node] + 1
                    following.append(child)
        frontier = following
    root.grad = 1.0
    for node in sorted(depth, key=depth.get):
        node._backward()
""",
    ],
    "17.2": [
        _solutions_with(
            "            self.grad += out.grad / self.data\n",
            "            self.grad += (1 / self.data) * out.grad\n",
        ).replace(
            "self.grad += out.data * (1 - out.data) * out.grad",
            "self.grad += math.exp(-self.data) / (1 + math.exp(-self.data)) ** 2 * out.grad",
        ),
        _solutions_with(  # division as a product with a reciprocal node of its own
            """        out = Value(self.data / other.data, (self, other))

        def _backward():
            self.grad += out.grad / other.data
            other.grad += -self.data / other.data**2 * out.grad

        out._backward = _backward
        return out
""",
            """        inverse = Value(1 / other.data, (other,))

        def _inverse_backward():
            other.grad -= inverse.grad / other.data**2

        inverse._backward = _inverse_backward
        return self * inverse
""",
        ),
    ],
    "17.3": [
        """
def unbroadcast(grad, shape):
    return grad.sum_to_size(shape)
""",
        """
def unbroadcast(grad, shape):
    extra = grad.dim() - len(shape)
    stretched = [extra + i for i, size in enumerate(shape) if size == 1]
    dims = tuple(range(extra)) + tuple(stretched)
    return grad.sum(dims, keepdim=True).reshape(shape) if dims else grad
""",
        """
def unbroadcast(grad, shape):
    for axis in range(-1, -grad.dim() - 1, -1):  # from the right, as broadcasting lines up
        if -axis > len(shape) or (shape[axis] == 1 and grad.shape[axis] != 1):
            grad = grad.sum(axis, keepdim=True)
    return grad.view(shape)
""",
    ],
}


@pytest.mark.parametrize(("key", "source"), answers.cases(RIGHT))
def test_a_different_correct_answer_passes_in_the_notebook_and_lab_check(key, source, tmp_path):
    in_cell, from_file = answers.verdicts(key, source, tmp_path)
    assert in_cell.status == from_file.status == PASSED, (in_cell.message, from_file.message)


def test_the_checks_leave_torch_autograd_working():
    namespace = {"torch": torch}
    (source,) = [source for source, said in WRONG["17.1"] if "torch's autograd" in said]
    exec(textwrap.dedent(source), namespace)  # noqa: S102
    assert evaluate("17.1", namespace["topological_backward"]).status == FAILED
    x = torch.tensor(2.0, requires_grad=True)
    (x * x).backward()
    assert x.grad.item() == 4.0
