"""04 · hooks: a clipping hook against clamp, forward hooks against the layers run by hand."""

from __future__ import annotations

import torch
from torch import nn

from lab.exercises.feedback import Problem, as_tensor, call, same, unseen

F64 = torch.float64
G = torch.tensor([-3.0, -0.5, 0.2, 2.5], dtype=F64)  # a gradient with values past the limit
LIMITS = (0.75, 2.0)  # two limits: a hook that ignores its limit cannot pass


def check_clip_hook(make_clip_hook) -> str:
    grads = unseen(G, kinks=(*LIMITS, *(-limit for limit in LIMITS)))
    for limit in LIMITS:
        hook = call(make_clip_hook, limit, who="make_clip_hook")
        if not callable(hook):
            raise Problem(f"make_clip_hook should return a function, got {type(hook).__name__}")
        grad = grads.clone()
        returned = call(hook, grad, who="your hook")
        if not torch.equal(grad, grads):
            raise Problem(
                "the hook changed its argument in place: return a new tensor "
                "(grad.clamp(...), not grad.clamp_(...))"
            )
        if returned is None:
            raise Problem(
                "the hook returned None, so autograd keeps the gradient unchanged: return the "
                "clipped tensor"
            )
        given = f"grad = {grads.tolist()}, limit = {limit}"
        same(
            grads.clamp(-limit, limit),
            as_tensor(returned, "the hook's result"),
            "the clipped gradient",
            given=given,
            mistakes=(
                (
                    grads.clamp(max=limit),
                    "only the upper side was clipped: clip to [-limit, limit]",
                ),
                (
                    grads * limit / grads.norm(),
                    "that rescales by the norm; clip each value instead",
                ),
                (
                    grads.clamp(-1, 1),
                    "the hook clips to [-1, 1] whatever limit it was made with: use `limit`",
                ),
            ),
        )
        x = torch.zeros(4, dtype=F64, requires_grad=True)
        x.register_hook(hook)
        (x * grads).sum().backward()  # dL/dx = grads before the hook
        same(grads.clamp(-limit, limit), x.grad, "x.grad with the hook registered", given=given)
    return "the hook clips every gradient value to [-limit, limit] (limits 0.75 and 2)"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(F64)


def check_linear_output_means(linear_output_means) -> str:
    global_hooks = nn.modules.module._global_forward_hooks
    before = dict(global_hooks)
    try:
        return _check_linear_output_means(linear_output_means, len(before))
    finally:  # a global hook left behind would run in every later check of this process
        for handle_id in set(global_hooks) - set(before):
            del global_hooks[handle_id]


def _check_linear_output_means(linear_output_means, global_before: int) -> str:
    model = _model()
    x = unseen(torch.linspace(-1, 1, 15, dtype=F64).reshape(5, 3))
    with torch.no_grad():  # the layers run by hand, before the learner's code: the oracle
        h = model[0](x)
        out = model[2](torch.relu(h))
    right = {"0": h.mean(), "2": out.mean()}
    inputs = {"0": x.mean(), "2": torch.relu(h).mean()}
    got = call(linear_output_means, model, x.clone(), who="linear_output_means")
    if not isinstance(got, dict):
        raise Problem(f"linear_output_means should return a dict, got {type(got).__name__}")
    if len(got) == 1 and list(got)[0] in right:
        raise Problem(
            f"only {list(got)[0]!r} has a mean, expected {sorted(right)}: every hook wrote "
            "under the same name — a function defined in a loop sees the loop variable's last "
            "value; bind it when registering (name=name as a default argument, or "
            "functools.partial)"
        )
    if sorted(got) != sorted(right):
        raise Problem(
            f"keys {sorted(got)}, expected the Linear layers' names {sorted(right)} "
            "(from model.named_modules())"
        )
    for name, value in right.items():
        same(
            value,
            got[name],
            f"the mean for layer {name!r}",
            given="the 3-4-2 model on a 5×3 input",
            mistakes=(
                (
                    inputs[name],
                    "that is the layer's input: a forward hook is called as "
                    "hook(module, inputs, output)",
                ),
            ),
        )
    left = sum(len(module._forward_hooks) for module in model.modules())
    left += len(nn.modules.module._global_forward_hooks) - global_before
    if left:
        raise Problem(
            f"{left} forward hook(s) still registered after your function returned: keep the "
            "handles of register_forward_hook and call handle.remove()"
        )
    return "each Linear's output mean is recorded, and no hook is left behind"


CHECKS = {"make_clip_hook": check_clip_hook, "linear_output_means": check_linear_output_means}
