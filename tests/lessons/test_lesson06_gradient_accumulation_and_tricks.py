"""Lesson 06: accumulation, clipping, numerical gradients, gradcheck, frozen parameters."""

from __future__ import annotations

import torch
from support.tbutil import read_scalars, single_run_dir

from lab.lessons import lesson06_gradient_accumulation_and_tricks as lesson

F64 = torch.float64


def same(grads_a, grads_b, factor: float = 1.0) -> bool:
    return all(torch.allclose(a, factor * b) for a, b in zip(grads_a, grads_b, strict=True))


def test_accumulation_equals_big_batch_for_even_and_uneven_micro_batches():
    x, y = lesson.make_data(n=30)
    model = lesson.make_model()
    big = lesson.big_batch_gradient(model, x, y)
    for micro_batch in (10, 7, 30, 1):  # 7 → sizes 7, 7, 7, 7, 2
        assert same(lesson.accumulated_gradient(model, x, y, micro_batch), big), micro_batch


def test_unweighted_accumulation_is_k_times_too_large():
    x, y = lesson.make_data(n=30)
    model = lesson.make_model()
    big = lesson.big_batch_gradient(model, x, y)
    assert same(lesson.accumulated_gradient(model, x, y, 10, scale=False), big, factor=3.0)


def test_total_grad_norm_is_the_norm_of_all_gradients_together():
    model = lesson.make_model()
    x, y = lesson.make_data()
    lesson.big_batch_gradient(model, x, y)
    flat = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert abs(lesson.total_grad_norm(model.parameters()) - flat.norm().item()) < 1e-12


def test_central_differences_match_autograd_and_calculus():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.7]], dtype=F64)

    def func(t):
        return (torch.sin(t) * t**2).sum()

    by_hand = torch.cos(x) * x**2 + 2 * x * torch.sin(x)
    assert torch.allclose(lesson.autograd_gradient(func, x), by_hand)
    assert torch.allclose(lesson.numerical_gradient(func, x), by_hand, atol=1e-8)
    assert torch.equal(x, torch.tensor([[0.3, -1.2], [2.0, 0.7]], dtype=F64))  # input untouched


def test_training_logs_norm_before_and_after_clipping():
    model = lesson.make_model()
    x, y = lesson.make_data()
    norms = lesson.train(model, x, y, steps=10, max_norm=1.0)
    assert any(pre > 1.0 for pre, _ in norms)
    for pre, post in norms:
        assert post <= 1.0
        # measured after clipping: min(pre, max_norm), not pre
        assert abs(post - min(pre, 1.0)) < 1e-5


def test_frozen_layer_gets_no_grad_and_does_not_move():
    model = lesson.make_model()
    x, y = lesson.make_data()
    frozen = [p.detach().clone() for p in model[0].parameters()]
    trainable = [p.detach().clone() for p in model[2].parameters()]
    lesson.train_step_with_frozen_first_layer(model, x, y)
    assert all(p.grad is None and not p.requires_grad for p in model[0].parameters())
    assert all(torch.equal(p, q) for p, q in zip(model[0].parameters(), frozen, strict=True))
    assert all(not torch.equal(p, q) for p, q in zip(model[2].parameters(), trainable, strict=True))


def test_main_logs_gradient_norms_per_step(runs_dir):
    lesson.main(["--device", "cpu"])
    scalars = read_scalars(single_run_dir(runs_dir, "06_gradient_accumulation_and_tricks"))
    pre, post = scalars["grad_norm/pre_clip"], scalars["grad_norm/post_clip"]
    assert [step for step, _ in pre] == [step for step, _ in post] == list(range(40))
    assert len(scalars["loss"]) == 40
    assert scalars["loss"][-1][1] < scalars["loss"][0][1]
    assert all(value <= 1.0 for _, value in post)
    assert any(value > 1.0 for _, value in pre) and any(value < 1.0 for _, value in pre)
