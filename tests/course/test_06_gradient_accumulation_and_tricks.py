"""Lesson 06: accumulation, clipping, numerical gradients, freezing, no_grad vs inference_mode."""

from __future__ import annotations

import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_scalars, single_run_dir

F64 = torch.float64
lesson = definitions("06")

# Small slips the lesson's own checks must catch.
MUTATIONS = [
    # weighting every micro-batch 1/k: right only when all micro-batches are the same size
    (
        "weight = len(xs) / len(x) if scale else 1.0",
        "weight = 1 / len(x.split(micro_batch)) if scale else 1.0",
    ),
    # letting float32 through the numerical check
    ("if x.dtype != torch.float64:", "if x.dtype == torch.float16:"),
    # an optimizer over every parameter, frozen ones included
    (
        "trainable = filter(lambda p: p.requires_grad, model.parameters())",
        "trainable = model.parameters()",
    ),
    # logging clip_grad_norm_'s return value as the post-clip norm
    ("post = total_grad_norm(model.parameters())", "post = pre"),
    # the training loop's micro-batch losses unweighted: still converges, 4× the gradient
    (
        "loss = nn.functional.mse_loss(model(xs), ys) * (len(xs) / len(x))",
        "loss = nn.functional.mse_loss(model(xs), ys)",
    ),
    # clipping the norm where each value was to be clamped: every element still ≤ 0.05
    (
        "nn.utils.clip_grad_value_(model.parameters(), clip_value=0.05)",
        "nn.utils.clip_grad_norm_(model.parameters(), 0.05)",
    ),
    # the training loop never zeroes: every step adds onto the last one's gradient
    ("        optimizer.zero_grad()\n        total_loss = 0.0\n", "        total_loss = 0.0\n"),
]


def test_accumulation_equals_big_batch_for_even_and_uneven_micro_batches():
    x, y = lesson.make_data(n=30)
    model = lesson.make_model()
    big = lesson.big_batch_gradient(model, x, y)
    for micro_batch in (10, 7, 30, 1):  # 7 → sizes 7, 7, 7, 7, 2
        got = lesson.accumulated_gradient(model, x, y, micro_batch)
        assert all(torch.allclose(a, b) for a, b in zip(got, big, strict=True)), micro_batch


def test_unweighted_accumulation_is_k_times_too_large():
    x, y = lesson.make_data(n=30)
    model = lesson.make_model()
    big = lesson.big_batch_gradient(model, x, y)
    unscaled = lesson.accumulated_gradient(model, x, y, 10, scale=False)
    assert all(torch.allclose(a, 3.0 * b) for a, b in zip(unscaled, big, strict=True))


def test_total_grad_norm_is_the_norm_of_all_gradients_together():
    model = lesson.make_model()
    x, y = lesson.make_data()
    lesson.big_batch_gradient(model, x, y)
    flat = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert abs(lesson.total_grad_norm(model.parameters()) - flat.norm().item()) < 1e-12


def test_central_differences_match_calculus_and_leave_the_input_alone():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.7]], dtype=F64)

    def func(t):
        return (torch.sin(t) * t**2).sum()

    by_hand = torch.cos(x) * x**2 + 2 * x * torch.sin(x)
    assert torch.allclose(lesson.autograd_gradient(func, x), by_hand)
    assert torch.allclose(lesson.numerical_gradient(func, x), by_hand, atol=1e-8)
    assert torch.equal(x, torch.tensor([[0.3, -1.2], [2.0, 0.7]], dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_numerical_gradient_refuses_low_precision_in_one_line(dtype):
    x = torch.ones(3, dtype=dtype)
    with pytest.raises(TypeError) as refused:
        lesson.numerical_gradient(lambda t: (t**2).sum(), x)
    message = str(refused.value)
    assert "\n" not in message and "float64" in message and str(dtype) in message


def test_float32_central_differences_are_what_the_refusal_is_about():
    x = torch.linspace(-1, 1, 5, dtype=torch.float32)

    def func(t):
        return (torch.exp(t) * 40).sum()

    error = (lesson.central_differences(func, x) - 40 * torch.exp(x)).abs().max().item()
    assert error > 1e-2


def test_first_layer_loss_is_the_model_loss_as_a_function_of_the_weight():
    model = lesson.make_model()
    x, y = lesson.make_data()
    loss = lesson.first_layer_loss(model, x, y)
    expected = torch.nn.functional.mse_loss(model(x), y)
    assert torch.allclose(loss(model[0].weight.detach()), expected)


def test_training_logs_norm_before_and_after_clipping():
    model = lesson.make_model()
    x, y = lesson.make_data()
    norms = lesson.train(model, x, y, steps=10, max_norm=1.0)
    assert any(pre > 1.0 for pre, _ in norms)
    for pre, post in norms:
        assert abs(post - min(pre, 1.0)) < 1e-5  # measured after clipping, not the return value


def test_frozen_layer_gets_no_grad_is_not_optimized_and_does_not_move():
    model = lesson.make_model()
    x, y = lesson.make_data()
    frozen = [p.detach().clone() for p in model[0].parameters()]
    trainable = [p.detach().clone() for p in model[2].parameters()]
    optimizer = lesson.train_step_with_frozen_first_layer(model, x, y)
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(in_optimizer) == 2
    assert all(any(p is q for q in model[2].parameters()) for p in in_optimizer)
    assert all(p.grad is None and not p.requires_grad for p in model[0].parameters())
    assert all(torch.equal(p, q) for p, q in zip(model[0].parameters(), frozen, strict=True))
    assert all(not torch.equal(p, q) for p, q in zip(model[2].parameters(), trainable, strict=True))


def test_zero_grad_trap_moves_a_frozen_layer_only_with_set_to_none_false():
    x, y = lesson.make_data()
    default = lesson.freeze_after_one_step(lesson.make_model(), x, y, set_to_none=True)
    assert default["grad"] is None and not default["moved"]
    trap = lesson.freeze_after_one_step(lesson.make_model(), x, y, set_to_none=False)
    assert torch.equal(trap["grad"], torch.zeros(8, 4, dtype=F64)) and trap["moved"]


def test_no_grad_results_are_ordinary_and_inference_results_are_not():
    t = lesson.made_under(torch.no_grad)
    assert torch.equal(lesson.use_in_autograd(t), t)  # d(Σ t·w)/dw = t
    assert lesson.attempt(lambda: t.mul_(2)) == "ok"
    inference = lesson.made_under(torch.inference_mode)
    assert inference.is_inference() and not t.is_inference()
    refused = lesson.attempt(lambda: lesson.use_in_autograd(inference))
    assert refused.startswith("RuntimeError: Inference tensors cannot be saved for backward")
    assert "\n" not in refused


def test_cells_log_norms_and_the_clipping_figure(runs_dir):
    ns = run_lesson("06", "--max-norm", "2.0", "--steps", "36")
    assert len(ns.lesson.checks) == 31 and ns.lesson.figures == ["grad_norm_clipping"]
    scalars = read_scalars(single_run_dir(runs_dir, "06_gradient_accumulation_and_tricks"))
    pre, post = scalars["grad_norm/pre_clip"], scalars["grad_norm/post_clip"]
    assert [step for step, _ in pre] == [step for step, _ in post] == list(range(36))
    assert scalars["loss"][-1][1] < scalars["loss"][0][1]
    assert all(value <= 2.0 + 1e-6 for _, value in post)  # the setting took effect
    assert any(value > 2.0 for _, value in pre) and any(value < 2.0 for _, value in pre)


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "one-over-k",
        "float32-allowed",
        "no-filter",
        "post-is-pre",
        "train-unweighted",
        "norm-for-value-clip",
        "train-never-zeroed",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("06", old, new)


# Typical wrong answers to 06's exercises, and what the check must say about each.
WRONG = {
    "06.1": [
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes)):
        (loss_fn(model(xb), yb) / len(sizes)).backward()
""",
            "did you divide by the number of micro-batches instead of weighting each "
            "micro-batch's loss by its size, n_i / N?",
        ),
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes)):
        loss_fn(model(xb), yb).backward()
""",
            "each micro-batch's mean loss needs its share n_i / N of the big mean",
        ),
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes)):
        model.zero_grad()
        (loss_fn(model(xb), yb) * len(xb) / len(x)).backward()
""",
            "only the last micro-batch's gradient is left: do not zero the gradients",
        ),
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    loss_fn(model(x), y).backward()
""",
            "06.1 asks for one backward() per micro-batch (3 here, micro-batches of [5, 2, 1] "
            "samples): your code ran 1",
        ),
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes)):
        (loss_fn(model(xb), yb) * len(xb) / len(x)).backward()
    model.zero_grad()
""",
            "zero_grad() ran after the last backward() and wiped the accumulated gradient",
        ),
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    out = model(x)
    for ob, yb in zip(out.split(sizes), y.split(sizes)):
        (loss_fn(ob, yb) * len(ob) / len(x)).backward(retain_graph=True)
""",
            "06.1 asks to run the model on each micro-batch (micro-batches of [5, 2, 1] "
            "samples): it ran on batches of [8] samples",
        ),
    ],
    "06.2": [
        (
            """
def clip_total_norm(parameters, max_norm):
    norms = []
    for p in parameters:
        norm = p.grad.norm()
        norms.append(norm)
        if norm > max_norm:
            p.grad.mul_(max_norm / norm)
    return torch.stack(norms).norm()
""",
            "parameter 0's gradient after clipping differs at index 0 (expected 1.154, got 3) for "
            "gradients [6, -8] and [[14.4, -19.2]] (norms 10 and 24, total norm 26), max_norm = "
            "5: each parameter was clipped by its own norm",
        ),
        (
            """
def clip_total_norm(parameters, max_norm):
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in parameters))
    for p in parameters:
        p.grad.mul_(max_norm / total)
    return total
""",
            "max_norm = 30: scaled although the total norm is below max_norm",
        ),
        (
            """
def clip_total_norm(parameters, max_norm):
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in parameters))
    if total > max_norm:
        for p in parameters:
            p.grad.mul_(max_norm / total)
""",
            "clip_total_norm returned None: return the total norm before clipping",
        ),
        (
            """
def clip_total_norm(parameters, max_norm):
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in parameters))
    for p in parameters:
        p.grad.clamp_(-max_norm, max_norm)
    return total
""",
            "(expected 1.154, got 5) for gradients [6, -8] and [[14.4, -19.2]] (norms 10 and 24, "
            "total norm 26), max_norm = 5: each value was clamped to [-max_norm, max_norm]",
        ),
        (
            """
def clip_total_norm(parameters, max_norm):
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
""",
            "06.2 asks you to write the clipping yourself: your code called "
            "torch.nn.utils.clip_grad.clip_grad_norm_",
        ),
        (
            """
def clip_total_norm(parameters, max_norm):
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in parameters))
    if total > max_norm:
        for p in parameters:
            p.grad.mul_(max_norm / total)
    return torch.sqrt(sum((p.grad ** 2).sum() for p in parameters))
""",
            "that is the norm after clipping: return the one measured before",
        ),
    ],
}

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "06.1": [
        """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    for xb, yb in zip(torch.split(x, sizes), torch.split(y, sizes)):
        loss = ((model(xb) - yb) ** 2).sum() / len(x)  # the big mean's share, written out
        loss.backward()
""",
        """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    start = 0
    for size in sizes:
        xb, yb = x[start : start + size], y[start : start + size]
        (loss_fn(model(xb), yb) * size).backward()
        start += size
    for p in model.parameters():
        p.grad /= len(x)
""",
    ],
    "06.2": [
        """
def clip_total_norm(parameters, max_norm):
    grads = [p.grad for p in parameters]
    total = torch.cat([g.flatten() for g in grads]).norm()
    scale = torch.clamp(max_norm / total, max=1.0)
    for g in grads:
        g *= scale
    return total
""",
        """
def clip_total_norm(parameters, max_norm):
    parameters = list(parameters)
    norms = torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters])
    total = torch.linalg.vector_norm(norms).item()
    if total > max_norm:
        for p in parameters:
            p.grad = p.grad * (max_norm / total)
    return total
""",
    ],
}
