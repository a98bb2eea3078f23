"""Lesson 03: the graph it walks and draws, leaves, the dynamic graph, retain_graph and detach()
— with a GAN's discriminator step showing what a missing detach() does."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from support.ci_skip import skip_unless_ci
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_image_sizes, read_scalars, single_run_dir

F64 = torch.float64
lesson = definitions("03")

# Small slips a learner (or an author) makes; the lesson's own checks must catch each.
MUTATIONS = [
    ("reversed(node.next_functions)", "node.next_functions"),  # walk visits inputs backwards
    ("detached = y.detach()", "detached = y"),  # detach() forgotten
    ("d_input = fake.detach() if detach else fake", "d_input = fake"),  # GAN D step, no detach
    ("loss.backward(retain_graph=retain_graph)", "loss.backward()"),  # retain_graph dropped
    # dz/dx = x² "checked" where x² = 2x: y = 2x would pass at x = 2, not at x = 3
    ("    y = x**2\n", "    y = 2 * x\n"),
    # the "nothing saved" example saves x after all: the claim about it must fail
    ("loss_of=lambda x: (x + 1).sum()", "loss_of=lambda x: (x**2 + 1).sum()"),
    # the pictured "with detach" graph drawn without the detach
    (
        "loss_d = discriminator_loss(D, real, fake.detach() if detach else fake)",
        "loss_d = discriminator_loss(D, real, fake)",
    ),
    ("retain_graph=retain, show=False)", "show=False)"),  # the inspector's run: graph not kept
    ("cut = G(z).detach() if detach else G(z)", "cut = G(z)"),  # inspector cell, no detach
]
GRAPH_PICTURES = {
    "autograd_graph",
    "gan_loss_D/with_detach",
    "gan_loss_D/without_detach",
    "inspector/small_model",
}
CLAIMS = 34


def names(tensor):
    return [type(node).__name__ for _, node in lesson.walk_graph(tensor)]


@pytest.fixture
def no_graphviz(tmp_path, monkeypatch):
    """A PATH on which Graphviz's `dot` cannot be found, as on a machine without graphviz."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("dot") is None


def needs_graphviz():
    if shutil.which("dot") is None:
        skip_unless_ci("Graphviz's `dot` is not installed (apt-get install graphviz)")


def test_walk_graph_follows_grad_fn_to_the_leaves():
    x, w, b, z, loss = lesson.small_model()
    assert names(loss) == [
        "SumBackward0",
        "TanhBackward0",
        "AddBackward0",
        "MulBackward0",
        "AccumulateGrad",
        "AccumulateGrad",
    ]
    leaves = [
        node.variable
        for _, node in lesson.walk_graph(loss)
        if type(node).__name__ == "AccumulateGrad"
    ]
    assert leaves[0] is w and leaves[1] is b
    assert [depth for depth, _ in lesson.walk_graph(loss)] == [0, 1, 2, 3, 4, 3]


def test_walk_graph_visits_shared_nodes_once_and_leaves_have_none():
    x = torch.tensor(2.0, dtype=F64, requires_grad=True)
    assert lesson.walk_graph(x) == []
    assert names(x * x) == ["MulBackward0", "AccumulateGrad"]


def test_picture_boxes_are_the_nodes_autograd_reaches():
    a = torch.randn(3, dtype=F64, requires_grad=True)
    c = torch.randn(3, dtype=F64, requires_grad=True)
    out = (a.exp() * c).sum()
    boxes = lesson.picture_boxes(lesson.make_dot(out, params={"a": a, "c": c}))
    reached, stack = [], [out.grad_fn]  # the oracle's own walk over next_functions
    while stack:
        node = stack.pop()
        if node not in reached:
            reached.append(node)
            stack.extend(child for child, _ in node.next_functions if child is not None)
    assert sorted(boxes["gray"]) == sorted(type(node).__name__ for node in reached)
    assert sorted(boxes["lightblue"]) == ["a", "c"]
    assert len(boxes["green"]) == 1


def test_render_png_draws_with_graphviz():
    needs_graphviz()
    _, w, b, _, loss = lesson.small_model()
    png = lesson.render_png(lesson.make_dot(loss, params={"w": w, "b": b}))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_without_graphviz_the_text_walk_stands_in(no_graphviz, capsys):
    _, w, b, _, loss = lesson.small_model()
    assert lesson.render_png(lesson.make_dot(loss, params={"w": w, "b": b})) is None
    assert lesson.draw_graph(loss, {"w": w, "b": b}, "tag") is False
    printed = capsys.readouterr().out
    assert "apt-get install graphviz" in printed
    assert "          AccumulateGrad → leaf of shape (), value 0.8" in printed  # depth 4: w


def test_non_leaf_grad_is_dropped_unless_retained():
    z_grad, caught, w_grad = lesson.non_leaf_grad_after_backward(retain=False)
    assert z_grad is None and any("non-leaf" in message for message in caught)
    z_grad, caught, w_grad = lesson.non_leaf_grad_after_backward(retain=True)
    _, w, _, z, loss = lesson.small_model()
    want_z, want_w = torch.autograd.grad(loss, (z, w))
    assert torch.allclose(z_grad, want_z) and torch.allclose(w_grad, want_w)
    assert not caught


def test_converted_tensor_is_not_a_leaf():
    assert lesson.converted_is_not_leaf() == (False, None)


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_power_graph_grows_with_n_and_its_gradient_is_right(n):
    grad, graph = lesson.grad_of(lambda t: lesson.power(t, n), 1.3)
    x = torch.tensor(1.3, dtype=F64, requires_grad=True)
    (expected,) = torch.autograd.grad(x**n, x)
    assert grad == pytest.approx(expected.item(), rel=1e-12)
    assert graph.count("MulBackward0") == n - 1


@pytest.mark.parametrize(
    ("x0", "node", "derivative"),
    [(0.7, "SinBackward0", math.cos(0.7)), (-1.2, "PowBackward0", 3 * 1.44)],
)
def test_sign_branch_builds_the_graph_of_the_branch_taken(x0, node, derivative):
    grad, graph = lesson.grad_of(lesson.sign_branch, x0)
    assert node in graph
    assert grad == pytest.approx(derivative, rel=1e-12)


def test_backward_frees_the_saved_tensors_and_leaves_the_nodes():
    seen = lesson.after_backward()
    assert seen["before"] == seen["after"] == ["SumBackward0", "PowBackward0", "AccumulateGrad"]
    assert seen["saved is x"] and "freed" in seen["freed"]
    grad, error = lesson.backward_twice(False, loss_of=lambda x: (x - 1).sum())
    assert error is None and torch.equal(grad, torch.full((3,), 2.0, dtype=F64))
    grad, error = lesson.backward_twice(False, loss_of=lambda x: x.exp().sum())  # saves exp(x)
    assert grad is None and "second time" in error


def test_second_backward_needs_retain_graph_and_then_accumulates():
    grad, error = lesson.backward_twice(retain_graph=False)
    assert grad is None and "second time" in error
    grad, error = lesson.backward_twice(retain_graph=True)
    x = torch.tensor([1.0, -2.0, 3.0], dtype=F64, requires_grad=True)
    (once,) = torch.autograd.grad((x**2).sum(), x)
    assert error is None and torch.allclose(grad, 2 * once)


@pytest.mark.parametrize("x0", [2.0, -0.5, 3.0])
def test_detach_treats_the_detached_factor_as_a_constant(x0):
    grad, requires_grad, is_leaf = lesson.detached_product(x0)
    x = torch.tensor(x0, dtype=F64, requires_grad=True)
    (full,) = torch.autograd.grad(x**3, x)
    assert grad == pytest.approx(x0**2)
    assert grad != pytest.approx(full.item())
    assert not requires_grad and is_leaf


def _oracle_discriminator_loss(D, real, fake):
    """BCE written out: −log σ(D(real)) − log(1 − σ(D(fake))), averaged per term."""
    return -F.logsigmoid(D(real)).mean() - F.logsigmoid(-D(fake)).mean()


@pytest.mark.parametrize("batch", [1, 5])
def test_gan_d_step_with_detach_trains_only_d(batch):
    G, D = lesson.gan_pair()
    z, real = lesson.gan_batch(batch)
    fake, loss_d, grads = lesson.discriminator_step(G, D, z, real, detach=True)
    G2, D2 = lesson.gan_pair()
    d_params = list(D2.parameters())
    expected = torch.autograd.grad(_oracle_discriminator_loss(D2, real, G2(z).detach()), d_params)
    assert torch.allclose(loss_d, _oracle_discriminator_loss(D2, real, G2(z)))
    assert all(grads[f"G.{name}"] is None for name, _ in G.named_parameters())
    for (name, _), want in zip(D.named_parameters(), expected, strict=True):
        assert torch.allclose(grads[f"D.{name}"], want)
    assert lesson.generator_step(D, fake) is None  # G's graph is intact
    assert all(p.grad is not None for p in G.parameters())


def test_gan_d_step_without_detach_leaks_into_g_and_breaks_the_g_step():
    G, D = lesson.gan_pair()
    z, real = lesson.gan_batch(4)
    fake, _, grads = lesson.discriminator_step(G, D, z, real, detach=False)
    G2, D2 = lesson.gan_pair()
    expected = torch.autograd.grad(
        _oracle_discriminator_loss(D2, real, G2(z)), list(G2.parameters())
    )
    for (name, _), want in zip(G.named_parameters(), expected, strict=True):
        assert torch.allclose(grads[f"G.{name}"], want)
        assert want.abs().sum() > 0
    assert "second time" in lesson.generator_step(D, fake)
    assert lesson.parameter_leaves(D(fake).sum(), G, D) == [
        "G.0.weight",
        "G.0.bias",
        "G.2.weight",
        "G.2.bias",
        "D.0.weight",
        "D.0.bias",
        "D.2.weight",
        "D.2.bias",
    ]
    assert lesson.parameter_leaves(D(fake.detach()).sum(), G, D)[0] == "D.0.weight"


def test_cells_draw_the_graphs_and_log_the_dynamic_graph(runs_dir):
    needs_graphviz()
    ns = run_lesson("03", "--max-power", "4", "--gan-batch", "3")
    assert len(ns.lesson.checks) == CLAIMS and ns.drawn
    assert set(ns.lesson.figures) == GRAPH_PICTURES
    assert ns.real.shape == (3, 2)  # the setting took effect
    run_dir = single_run_dir(runs_dir, "03_computational_graph")
    scalars = read_scalars(run_dir)
    assert scalars["dynamic_graph/mul_nodes"] == [(n, n - 1) for n in range(1, 5)]
    assert [v for _, v in scalars["dynamic_graph/dxn_dx_at_1.5"]] == pytest.approx(
        [n * 1.5 ** (n - 1) for n in range(1, 5)]
    )
    images = read_image_sizes(run_dir)
    assert set(images) == GRAPH_PICTURES
    (_, width, height), *_ = images["autograd_graph"]
    (_, gan_width, gan_height), *_ = images["gan_loss_D/without_detach"]
    assert 100 < width < gan_width and 100 < height < gan_height  # G's part makes it bigger


def test_cells_fall_back_to_the_text_walk_without_graphviz(runs_dir, no_graphviz, capsys):
    ns = run_lesson("03")
    assert len(ns.lesson.checks) == CLAIMS and not ns.drawn and ns.lesson.figures == []
    printed = capsys.readouterr().out
    # the small model, the two GANs, and the inspector's text walk of the small model
    assert printed.count("apt-get install graphviz") == 4
    assert not read_image_sizes(single_run_dir(runs_dir, ns.lesson.name))


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "walk-reversed",
        "no-detach",
        "gan-no-detach",
        "no-retain",
        "x-squared-as-2x",
        "nothing-saved-saves",
        "pictured-without-detach",
        "inspector-no-retain",
        "inspector-no-detach",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("03", old, new)


# Typical wrong answers to 03's exercises, and what the check must say about each.
WRONG = {
    "03.1": [
        (
            """
def graph_ops(t):
    names, node = set(), t.grad_fn
    while node is not None:
        names.add(type(node).__name__)
        node = node.next_functions[0][0] if node.next_functions else None
    return names
""",
            "missing MulBackward0, SinBackward0 for (a.exp() + b.sin() * c).sum(), a and b "
            "requiring grad, c not: follow every entry of next_functions, not only the first",
        ),
        (
            """
def graph_ops(t):
    names, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        names.add(node.name())
        todo.extend(child for child, _ in node.next_functions)
    return names
""",
            "next_functions holds (None, 0) for inputs that need no gradient: skip those",
        ),
        (
            """
def graph_ops(t):
    return {t.grad_fn.name()}
""",
            "missing AccumulateGrad, AddBackward0, ExpBackward0, MulBackward0, SinBackward0 for "
            "(a.exp() + b.sin() * c).sum(), a and b requiring grad, c not: follow every entry",
        ),
    ],
    "03.2": [
        (
            """
def stop_gradient_mse(pred, target):
    return ((pred - target) ** 2).mean()
""",
            "the target got a gradient (dL/dtarget[0] = -0.3333): use target.detach()",
        ),
        (
            """
def stop_gradient_mse(pred, target):
    return ((pred.detach() - target.detach()) ** 2).mean()
""",
            "the loss is cut from pred as well: detach only the target",
        ),
        (
            """
def stop_gradient_mse(pred, target):
    return ((pred - target.detach()) ** 2).sum()
""",
            "the loss differs (expected 6.167, got 18.5) for pred = [1.0, -0.5, 2.0], target = "
            "[0.5, 1.0, -2.0]: that is the sum of the squares: take their mean",
        ),
        (
            """
def stop_gradient_mse(pred, target):
    return ((pred.detach() - target) ** 2).mean()
""",
            "pred got no gradient: detach only the target, not pred",
        ),
    ],
}
WRONG["03.1"] += [
    (
        """
def graph_ops(t):
    names, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or not node.next_functions:
            continue
        names.add(type(node).__name__)
        todo.extend(child for child, _ in node.next_functions)
    return names
""",
        "missing AccumulateGrad for (a.exp() + b.sin() * c).sum(), a and b requiring grad, c "
        "not: the leaves a and b are nodes too (AccumulateGrad)",
    ),
    (
        """
def graph_ops(t):
    return ", ".join(sorted({type(t.grad_fn).__name__}))
""",
        "graph_ops should return a set of names, got str",
    ),
]

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "03.1": [
        """
def graph_ops(t):
    def walk(node):
        if node is None:
            return set()
        found = {type(node).__name__}
        for child, _ in node.next_functions:
            found |= walk(child)
        return found

    return walk(t.grad_fn)
""",
        """
from collections import deque

def graph_ops(t):
    names, queue = [], deque([t.grad_fn])
    while queue:
        node = queue.popleft()
        names.append(node.name())
        queue.extend(child for child, _ in node.next_functions if child is not None)
    return names
""",
    ],
    "03.2": [
        # the case: a helper at the top of the cell, which `lab check` used to drop
        """
mse = torch.nn.MSELoss()

def stop_gradient_mse(pred, target):
    return mse(pred, target.detach())
""",
        """
import torch.nn.functional as F

def stop_gradient_mse(pred, target):
    with torch.no_grad():
        constant = target.clone()
    return F.mse_loss(pred, constant)
""",
    ],
}
