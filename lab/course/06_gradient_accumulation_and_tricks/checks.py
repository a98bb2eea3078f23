"""06 · accumulation against the big batch's backward (one backward per micro-batch),
clipping against clip_grad_norm_ (written by hand)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lab.exercises.feedback import (
    BACKWARD,
    ZERO_GRAD,
    Problem,
    as_tensor,
    call,
    num,
    same,
    unseen,
    watch,
)

F64 = torch.float64
SIZES = [5, 2, 1]  # uneven on purpose: equal micro-batches hide the weighting mistake
CLIPPING = (
    torch.nn.utils.clip_grad_norm_,
    torch.nn.utils.clip_grad_norm,
    torch.nn.utils.get_total_norm,
    torch.nn.utils.clip_grads_with_norm_,
)


def _setup():
    torch.manual_seed(0)
    model = nn.Linear(3, 1).to(F64)
    x = unseen(torch.randn(sum(SIZES), 3, dtype=F64))
    y = unseen(torch.randn(sum(SIZES), 1, dtype=F64))
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
    batches: list[int] = []
    learner.register_forward_pre_hook(lambda module, args: batches.append(len(args[0])))
    with watch(*ZERO_GRAD) as seen:
        call(
            accumulate_gradients,
            learner,
            loss_fn,
            x.clone(),
            y.clone(),
            list(SIZES),
            who="accumulate_gradients",
        )
    given = f"micro-batches of {SIZES} samples"
    order = seen.order(backward=BACKWARD, zero_grad=ZERO_GRAD)
    if any(p.grad is None for p in learner.parameters()) and order[-1:] == ["zero_grad"]:
        raise Problem(
            "the parameters' .grad is None: zero_grad() ran after the last backward() and "
            "wiped the accumulated gradient; leave it in the parameters (the optimizer step "
            "after accumulating needs it)"
        )
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
    if order.count("backward") != len(SIZES):
        raise Problem(
            f"06.1 asks for one backward() per micro-batch ({len(SIZES)} here, {given}): your "
            f"code ran {order.count('backward')}, so the gradient never accumulated over "
            "micro-batches"
        )
    if sorted(batches) != sorted(SIZES):
        raise Problem(
            f"06.1 asks to run the model on each micro-batch ({given}): it ran on batches of "
            f"{batches} samples"
        )
    return f"one backward per micro-batch of {SIZES}, accumulated, equals the big batch's"


GRADS = ([6.0, -8.0], [[14.4, -19.2]])  # norms 10 and 24: total 26


def _clip_grads() -> list[torch.Tensor]:
    # unseen: each value within 10 %, so the total norm stays within 26 ± 2.6, between the
    # two max_norm below
    return [unseen(torch.tensor(g, dtype=F64), spread=0.1) for g in GRADS]


def _params():
    one = torch.zeros(2, dtype=F64, requires_grad=True)
    two = torch.zeros(1, 2, dtype=F64, requires_grad=True)
    one.grad, two.grad = _clip_grads()
    return [one, two]


def _shown(values: torch.Tensor) -> str:
    """[6, -8] for tensor([6., -8.]), nested as the tensor is."""
    return "[" + ", ".join(map(_shown, values)) + "]" if values.dim() else num(values)


def check_clip_total_norm(clip_total_norm) -> str:
    originals = _clip_grads()
    own = [float(g.norm()) for g in originals]
    total = float(torch.cat([g.flatten() for g in originals]).norm())
    shown = " and ".join(_shown(g) for g in originals)
    own_shown = " and ".join(num(n) for n in own)
    for max_norm in (5.0, 30.0):  # clipped to about a fifth, then untouched
        mine, theirs = _params(), _params()
        given = (
            f"gradients {shown} (norms {own_shown}, total norm {num(total)}), "
            f"max_norm = {num(max_norm)}"
        )
        norm = torch.nn.utils.clip_grad_norm_(mine, max_norm)  # the oracle
        with watch(*CLIPPING) as seen:
            returned = call(clip_total_norm, theirs, max_norm, who="clip_total_norm")
        used = seen.first(*CLIPPING)
        if used is not None:
            raise Problem(
                f"06.2 asks you to write the clipping yourself: your code called {used.label}"
            )
        if returned is None:
            raise Problem("clip_total_norm returned None: return the total norm before clipping")
        same(
            norm,
            as_tensor(returned, "the returned norm"),
            "the returned total norm",
            given=given,
            mistakes=(
                (torch.tensor(own[0]), "that is one parameter's norm: take all of them together"),
                (
                    torch.tensor(sum(own)),
                    "that adds up the parameters' norms: the total norm is the square root of "
                    "the sum of all squared gradient values",
                ),
                (
                    torch.tensor(min(max_norm, total)),
                    "that is the norm after clipping: return the one measured before",
                ),
            ),
        )
        for index, (right, got) in enumerate(zip(mine, theirs, strict=True)):
            original = originals[index]
            same(
                right.grad,
                got.grad,
                f"parameter {index}'s gradient after clipping",
                given=given,
                mistakes=(
                    (
                        original.clamp(-max_norm, max_norm),
                        "each value was clamped to [-max_norm, max_norm]: scale all the "
                        "gradients together by max_norm / total norm instead",
                    ),
                    (
                        original * min(1.0, max_norm / own[index]),
                        "each parameter was clipped by its own norm: use the total norm over "
                        "all parameters",
                    ),
                    (
                        original * max_norm / total,
                        "scaled although the total norm is below max_norm: clip only when it "
                        "is above",
                    ),
                ),
            )
    return "gradients are scaled by max_norm / total norm only above max_norm, like clip_grad_norm_"


CHECKS = {"accumulate_gradients": check_accumulate, "clip_total_norm": check_clip_total_norm}
