"""06 · accumulation against the big batch's backward, clipping against clip_grad_norm_."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lab.exercises.feedback import Problem, as_tensor, call, num, same

F64 = torch.float64
SIZES = [5, 2, 1]  # uneven on purpose: equal micro-batches hide the weighting mistake


def _setup():
    torch.manual_seed(0)
    model = nn.Linear(3, 1).to(F64)
    x = torch.randn(sum(SIZES), 3, dtype=F64)
    y = torch.randn(sum(SIZES), 1, dtype=F64)
    return model, x, y


def _grads(model, loss) -> list[torch.Tensor]:
    return [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]


def check_accumulate(accumulate_gradients) -> str:
    model, x, y = _setup()
    loss_fn = nn.MSELoss()
    big = _grads(model, loss_fn(model(x), y))  # the oracle: one backward on the big batch
    parts = [
        _grads(model, loss_fn(model(xb), yb))
        for xb, yb in zip(x.split(SIZES), y.split(SIZES), strict=True)
    ]
    learner = copy.deepcopy(model)
    call(accumulate_gradients, learner, loss_fn, x, y, SIZES, who="accumulate_gradients")
    given = f"micro-batches of {SIZES} samples"
    for index, (param, right) in enumerate(zip(learner.parameters(), big, strict=True)):
        name = ("weight", "bias")[index]
        unweighted = sum(part[index] for part in parts)
        same(
            right,
            param.grad,
            f"the accumulated {name}.grad",
            given=given,
            mistakes=(
                (
                    unweighted / len(SIZES),
                    "did you divide by the number of micro-batches instead of weighting each "
                    "micro-batch's loss by its size, n_i / N?",
                ),
                (
                    unweighted,
                    "each micro-batch's mean loss needs its share n_i / N of the big mean: "
                    "scale it before backward()",
                ),
                (
                    parts[-1][index] * SIZES[-1] / sum(SIZES),
                    "only the last micro-batch's gradient is left: do not zero the gradients "
                    "between micro-batches",
                ),
            ),
        )
    return f"the gradient accumulated over {SIZES} equals the big batch's (float64)"


ORIGINAL = (torch.tensor([3.0, 4.0], dtype=F64), torch.tensor([[0.0, 12.0]], dtype=F64))


def _params(g1, g2):
    one = torch.zeros(2, dtype=F64, requires_grad=True)
    two = torch.zeros(1, 2, dtype=F64, requires_grad=True)
    one.grad, two.grad = torch.tensor(g1, dtype=F64), torch.tensor(g2, dtype=F64)
    return [one, two]


def check_clip_total_norm(clip_total_norm) -> str:
    for max_norm in (6.5, 20.0):  # the total norm is 13: clipped by half, then untouched
        mine = _params([3.0, 4.0], [[0.0, 12.0]])
        theirs = _params([3.0, 4.0], [[0.0, 12.0]])
        given = f"gradients [3, 4] and [[0, 12]] (total norm 13), max_norm = {num(max_norm)}"
        norm = torch.nn.utils.clip_grad_norm_(mine, max_norm)  # the oracle
        returned = call(clip_total_norm, theirs, max_norm, who="clip_total_norm")
        if returned is None:
            raise Problem("clip_total_norm returned None: return the total norm before clipping")
        same(
            norm,
            as_tensor(returned, "the returned norm"),
            "the returned total norm",
            given=given,
            mistakes=((torch.tensor(5.0), "that is one parameter's norm: add up all of them"),),
        )
        for index, (right, got) in enumerate(zip(mine, theirs, strict=True)):
            original, own_norm = ORIGINAL[index], (5.0, 12.0)[index]
            same(
                right.grad,
                got.grad,
                f"parameter {index}'s gradient after clipping",
                given=given,
                mistakes=(
                    (
                        original * min(1.0, max_norm / own_norm),
                        "each parameter was clipped by its own norm: use the total norm over "
                        "all parameters",
                    ),
                    (
                        original * max_norm / 13,
                        "scaled although the total norm is below max_norm: clip only when it "
                        "is above",
                    ),
                ),
            )
    return "gradients are scaled by max_norm / total norm only above max_norm, like clip_grad_norm_"


CHECKS = {"accumulate_gradients": check_accumulate, "clip_total_norm": check_clip_total_norm}
