"""Lesson 02: requires_grad/backward/no_grad and its pitfalls, checked against torch.autograd."""

from __future__ import annotations

import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_image_sizes, read_scalars, single_run_dir

F64 = torch.float64
lesson = definitions("02")

# Small slips a learner (or an author) makes; the lesson's own checks must catch each.
MUTATIONS = [
    (
        "        w.grad = None\n        b.grad = None\n",
        "",
    ),  # a training loop that never zeroes .grad
    ("            w -= lr * w.grad", "            w += lr * w.grad"),  # ascent instead of descent
    ("if zero_between:", "if not zero_between:"),  # the pitfall's fix applied the wrong way
    ('out.detach() if via == "detach" else out.data', 'out.data if via == "detach" else out.data'),
    # the running total detached: a number after all, the point of the cell lost
    ("as_tensor = as_tensor + loss", "as_tensor = as_tensor + loss.detach()"),
    # b stepped with w's gradient: the descent no longer follows lesson 01's
    ("            b -= lr * b.grad", "            b -= lr * w.grad"),
]


def probe_gradient(w0: float) -> float:
    """The oracle for the lesson's L = (3w − 10)²."""
    w = torch.tensor(w0, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad((3.0 * w - 10.0) ** 2, w)
    return grad.item()


def line(n: int):
    x = torch.linspace(-1.0, 1.0, n, dtype=F64)
    return x, 2.0 * x + 1.0


def mse(w, b, x, y):
    return ((w * x + b - y) ** 2).mean()


def test_tracked_gradients_match_autograd_grad():
    seen = lesson.tracked_gradients()
    w = torch.tensor(2.0, dtype=F64, requires_grad=True)
    b = torch.tensor(1.0, dtype=F64, requires_grad=True)
    grad_w, grad_b = torch.autograd.grad((w * 3.0 + b - 10.0) ** 2, (w, b))
    assert seen["w.grad"] == grad_w.item() and seen["b.grad"] == grad_b.item()
    assert seen["x.grad"] is None and not seen["x.requires_grad"]
    assert seen["loss.requires_grad"] and seen["loss.grad_fn"] == "PowBackward0"


def test_in_place_update_needs_no_grad():
    assert "leaf Variable that requires grad" in lesson.in_place_update_outside_no_grad()
    assert lesson.update_inside_no_grad() == (1.5, True, False)


@pytest.mark.parametrize("calls", [1, 2, 5])
def test_backward_accumulates_unless_zeroed(calls):
    single = probe_gradient(2.0)
    assert lesson.grads_over_backward_calls(calls, zero_between=False) == pytest.approx(
        [k * single for k in range(1, calls + 1)]
    )
    assert lesson.grads_over_backward_calls(calls, zero_between=True) == pytest.approx(
        [single] * calls
    )


def test_detach_edit_is_caught_but_data_edit_silently_corrupts_the_gradient():
    grad, error, shared = lesson.sigmoid_then_zero_output("detach")
    assert shared and grad is None
    assert "modified by an inplace operation" in error

    grad, error, shared = lesson.sigmoid_then_zero_output("data")
    a = torch.tensor([-1.0, 0.0, 2.0], dtype=F64, requires_grad=True)
    (true_grad,) = torch.autograd.grad(torch.sigmoid(a).sum(), a)
    assert shared and error is None
    assert torch.equal(grad, torch.zeros(3, dtype=F64))
    assert (true_grad > 0.1).all()  # so the zero gradient really is wrong
    assert torch.allclose(lesson.true_sigmoid_grad(a.detach()), true_grad)


def test_running_total_of_tensors_keeps_every_graph():
    as_tensor, as_number = lesson.running_total(4)
    assert as_tensor.item() == pytest.approx(as_number)
    assert isinstance(as_number, float)
    # the graphs are alive: backward through the total reaches w and b via all four losses
    leaves = {id(node.variable): node.variable for node in _accumulate_nodes(as_tensor)}
    assert len(leaves) == 2
    as_tensor.backward()
    x, y = line(8)
    w = torch.tensor(0.5, dtype=F64, requires_grad=True)
    b = torch.zeros((), dtype=F64, requires_grad=True)
    total = sum(mse(w + 0.1 * step, b, x, y) for step in range(4))
    expected = torch.autograd.grad(total, (w, b))
    got = [leaf.grad for leaf in leaves.values()]
    assert any(torch.allclose(g, expected[0]) for g in got)
    assert any(torch.allclose(g, expected[1]) for g in got)


def _accumulate_nodes(tensor):
    stack, seen = [tensor.grad_fn], []
    while stack:
        node = stack.pop()
        if type(node).__name__ == "AccumulateGrad":
            seen.append(node)
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return seen


def test_autograd_fit_takes_the_steps_autograd_grad_gives_on_other_data():
    x = torch.linspace(-2, 2, 40, dtype=F64)
    y = 0.5 * x - 3.0
    w_fit, b_fit, losses = lesson.fit_with_autograd(x, y, lr=0.05, steps=150)
    w = torch.zeros((), dtype=F64, requires_grad=True)  # the oracle's own loop
    b = torch.zeros((), dtype=F64, requires_grad=True)
    expected = []
    for _ in range(150):
        grad_w, grad_b = torch.autograd.grad(mse(w, b, x, y), (w, b))
        w = (w - 0.05 * grad_w).detach().requires_grad_(True)
        b = (b - 0.05 * grad_b).detach().requires_grad_(True)
        expected.append(mse(w, b, x, y).item())
    assert (w_fit, b_fit) == pytest.approx((w.item(), b.item()), rel=1e-10, abs=1e-12)
    assert losses == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_cells_log_loss_parameter_and_gradient_curves(runs_dir):
    ns = run_lesson("02", "--steps", "150", "--backward-calls", "4")
    assert len(ns.lesson.checks) == 12
    run_dir = single_run_dir(runs_dir, "02_autograd_basics")
    scalars = read_scalars(run_dir)
    assert {"loss", "params/w", "params/b", "grad/w", "grad/b"} <= set(scalars)
    x, y = line(64)
    w = torch.zeros((), dtype=F64, requires_grad=True)
    b = torch.zeros((), dtype=F64, requires_grad=True)
    first = torch.autograd.grad(mse(w, b, x, y), (w, b))  # step 0 starts at 0, 0
    assert scalars["grad/w"][0] == (0, pytest.approx(first[0].item(), rel=1e-6))
    assert scalars["grad/b"][0] == (0, pytest.approx(first[1].item(), rel=1e-6))
    assert [step for step, _ in scalars["loss"]] == list(range(150))  # the setting took effect
    assert scalars["params/w"][-1][1] == pytest.approx(2.0, abs=1e-3)
    assert scalars["params/b"][-1][1] == pytest.approx(1.0, abs=1e-3)
    single = probe_gradient(2.0)
    assert [v for _, v in scalars["pitfall/grad_not_zeroed"]] == pytest.approx(
        [single, 2 * single, 3 * single, 4 * single]
    )
    assert [v for _, v in scalars["pitfall/grad_zeroed"]] == pytest.approx([single] * 4)
    assert list(read_image_sizes(run_dir)) == ["loss_by_hand_vs_autograd"]


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "never-zeroed",
        "ascent",
        "zeroing-inverted",
        "data-for-detach",
        "total-detached",
        "b-stepped-with-w-grad",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("02", old, new)


# Typical wrong answers to 02's exercises, and what the check must say about each.
WRONG = {
    "02.1": [
        (
            """
def autograd_gradients(w, b, x, y):
    loss = ((w * x + b - y) ** 2).mean()
    loss.backward()
    return w.grad, b.grad
""",
            "backward()/grad() was called on a result that is not connected to anything "
            "requiring grad: create the inputs with requires_grad=True",
        ),
        (
            """
def autograd_gradients(w, b, x, y):
    w = w.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    loss = ((w * x + b - y) ** 2).mean()
    loss.backward(retain_graph=True)
    print("loss", loss.item())
    loss.backward()
    return w.grad, b.grad
""",
            "twice the gradient: backward() ran twice, and .grad adds up",
        ),
        (
            """
def autograd_gradients(w, b, x, y):
    w.requires_grad_(True)
    b.requires_grad_(True)
    ((w * x + b - y) ** 2).mean().backward()
    return w.grad, b.grad
""",
            "switched on requires_grad on the caller's w/b",
        ),
        (
            """
def autograd_gradients(w, b, x, y):
    w = w.clone().requires_grad_(True) * 1.0
    b = b.clone().requires_grad_(True) * 1.0
    ((w * x + b - y) ** 2).mean().backward()
    return w.grad, b.grad
""",
            "dL/dw is None: .grad is only filled in for a leaf tensor",
        ),
    ],
    "02.2": [
        (
            """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        ((w * x + b - y) ** 2).mean().backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
    return w.detach(), b.detach()
""",
            "w differs (expected 0.4384, got 0.8892) for 3 step(s) from w = b = 0, lr = 0.1: "
            "gradients added up across steps: zero w.grad and b.grad every step",
        ),
        (
            """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        ((w * x + b - y) ** 2).mean().backward()
        w -= lr * w.grad
        b -= lr * b.grad
        w.grad.zero_()
        b.grad.zero_()
    return w, b
""",
            "do the update inside `with torch.no_grad():`",
        ),
        (
            """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        ((w * x + b - y) ** 2).mean().backward()
        w = w - lr * w.grad
        b = b - lr * b.grad
    return w.detach(), b.detach()
""",
            "a `.grad` was None",
        ),
        (
            """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        ((w * x + b - y) ** 2).mean().backward()
        with torch.no_grad():
            w = w - lr * w.grad
            b = b - lr * b.grad
    return w, b
""",
            "the first backward() worked, a later one did not. A tensor made under "
            "torch.no_grad() (e.g. `w = w - lr * w.grad` there) does not require grad",
        ),
        (
            """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype)
    b = torch.zeros((), dtype=x.dtype)
    for _ in range(steps):
        r = w * x + b - y
        w, b = w - lr * (2 * r * x).mean(), b - lr * (2 * r).mean()
    return w, b
""",
            "02.2 asks for each step's gradient from autograd: your code ran 0 backward pass(es) "
            "for 1 step(s)",
        ),
    ],
}
WRONG["02.1"] += [
    (
        """
def autograd_gradients(w, b, x, y):
    w = w.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    with torch.no_grad():
        loss = ((w * x + b - y) ** 2).mean()
    loss.backward()
    return w.grad, b.grad
""",
        "it was computed with gradient recording off (torch.no_grad(), set_grad_enabled(False) "
        "or inference_mode() in your code)",
    ),
    (
        """
def autograd_gradients(w, b, x, y):
    r = w * x + b - y
    return (2 * r * x).mean(), (2 * r).mean()
""",
        "02.1 asks autograd to compute the gradient: your code ran no backward pass",
    ),
]

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "02.1": [
        """
def autograd_gradients(w, b, x, y):
    w = torch.tensor(w.item(), dtype=x.dtype, requires_grad=True)
    b = torch.tensor(b.item(), dtype=x.dtype, requires_grad=True)
    loss = ((w * x + b - y) ** 2).mean()
    return torch.autograd.grad(loss, (w, b))
""",
        """
import torch.nn.functional as F

def autograd_gradients(w, b, x, y):
    params = [t.detach().clone().requires_grad_() for t in (w, b)]
    F.mse_loss(params[0] * x + params[1], y).backward()
    return [p.grad for p in params]
""",
    ],
    "02.2": [
        """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.SGD([w, b], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        ((w * x + b - y) ** 2).mean().backward()
        optimizer.step()
    return w.detach(), b.detach()
""",
        """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        loss = ((w * x + b - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in (w, b):
                p -= lr * p.grad
                p.grad = None
    return w.item(), b.item()
""",
    ],
}
