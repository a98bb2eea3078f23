"""20 · debugging gradients: a stable BCE against the closed form softplus(z) − t·z and its
gradient σ(z) − t; a tanh Function's first and second derivatives against tanh's own."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from lab.exercises.feedback import Problem, as_tensor, call, grad_vs_numerical, num, same

F64 = torch.float64
# |z| = 800: σ(−800) is exactly 0 in float64, so any log of a probability overflows there.
# No z is exactly 0, where max(z, 0) has a kink and conventions differ.
Z = torch.tensor([-800.0, -30.0, -2.0, 0.5, 3.0, 30.0, 800.0], dtype=F64)
T = torch.tensor([1.0, 0.0, 1.0, 0.25, 1.0, 1.0, 0.0], dtype=F64)
BUILTINS = ("binary_cross_entropy_with_logits",)


class _Calls(TorchFunctionMode):
    """Records the names of the torch functions called, whatever name they were imported as."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.add(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


def _where(index: int) -> str:
    return f"z = {num(Z[index])}, t = {num(T[index])}"


def check_stable_bce(stable_bce) -> str:
    z = Z.clone().requires_grad_(True)
    with _Calls() as calls:
        loss = call(stable_bce, z, T.clone(), who="stable_bce")
    if calls.names & set(BUILTINS):
        raise Problem(
            "that calls the built-in binary_cross_entropy_with_logits: the exercise is to write "
            "it stably yourself (hint: softplus)"
        )
    loss = loss if isinstance(loss, torch.Tensor) else as_tensor(loss, "stable_bce(z, t)")
    if tuple(loss.shape) != tuple(Z.shape):
        raise Problem(
            f"stable_bce returned shape {tuple(loss.shape)}: return one loss per element, shape "
            f"{tuple(Z.shape)} (no mean or sum)"
        )
    expected = torch.nn.functional.softplus(Z) - T * Z  # the closed form, stable by itself
    values = loss.detach()
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad and any(Z[i] > 0 for i in bad):  # inf at both ends: a log of σ(z) or of 1 − σ(z)
        i = max(bad)
        raise Problem(
            f"the loss is {num(values[i])} at {_where(i)}: σ(z) rounds to exactly 0 or 1 and its "
            "log overflows; work from the logit: log σ(z) = −softplus(−z)"
        )
    if bad:  # inf only where z is very negative: e^(−z) itself
        raise Problem(
            f"the loss is {num(values[bad[0]])} at {_where(bad[0])}: exp(−z) overflows when z is "
            "very negative; use |z|: max(z, 0) + log1p(exp(−|z|)), or softplus"
        )
    given = f"z = {Z.tolist()}, t = {T.tolist()}"
    mistakes = (
        (
            torch.nn.functional.softplus(-Z) - T * Z,
            "the sign inside softplus is flipped: the loss is softplus(z) − t·z",
        ),
        (
            torch.nn.functional.softplus(Z) - (1 - T) * Z,
            "t and 1 − t are swapped: t·softplus(−z) + (1 − t)·softplus(z)",
        ),
    )
    if any(torch.allclose(values, value) for value, _ in mistakes):
        same(expected, values, "the loss", given=given, mistakes=mistakes)  # names the mistake
    for index in (0, len(Z) - 1):  # the extremes: a clamped probability caps the loss there
        if values[index] < 0.5 * expected[index]:
            raise Problem(
                f"the loss at {_where(index)} should be {num(expected[index])} but is "
                f"{num(values[index])}: clamping the probability caps the loss (and zeroes its "
                "gradient there); compute it from the logit instead"
            )
    same(expected, values, "the loss", given=given)
    if loss.grad_fn is None:
        raise Problem("the loss has no grad_fn: compute it with torch ops on z, not .item()/NumPy")
    (grad,) = torch.autograd.grad(loss.sum(), z)
    nan = (~torch.isfinite(grad)).nonzero().flatten().tolist()
    if nan:
        raise Problem(
            f"the loss is finite but its gradient is {num(grad[nan[0]])} at {_where(nan[0])}: "
            "torch.where still runs backward through the branch it did not pick (0 × inf = "
            "nan); make every branch safe on its own, or use softplus"
        )
    same(torch.sigmoid(Z) - T, grad, "the gradient d loss/dz", given=given)
    return "equals softplus(z) − t·z at |z| up to 800, with the finite gradient σ(z) − t"


X = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], dtype=F64)
V = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=F64)  # upstream gradients
W = torch.tensor([0.5, 1.0, -1.5, 2.0, 1.0], dtype=F64)  # the second backward's upstream
CUT = (
    "save tensors with ctx.save_for_backward and use them as they are in backward (a "
    ".detach() or .clone() of y, or a copy kept on ctx, cuts the second derivative)"
)


def check_tanh(MyTanh) -> str:
    out = call(MyTanh.apply, X.clone(), who="MyTanh.forward")
    given = f"x = {X.tolist()}"
    same(torch.tanh(X), out, "forward", given=given)
    grad_vs_numerical(MyTanh.apply, [X], ["x"], V, given=given)
    x = X.clone().requires_grad_(True)
    upstream = V.clone().requires_grad_(True)  # as gradgradcheck does
    (first,) = call(
        torch.autograd.grad, MyTanh.apply(x), x, upstream, create_graph=True, who="backward"
    )
    if first.grad_fn is None:
        raise Problem(
            "the gradient your backward returns is cut off from the graph (computed under "
            "no_grad, through NumPy, or from detached tensors), so there is no second "
            "derivative: write backward with torch ops on ctx.saved_tensors"
        )
    try:
        first.backward(W)
    except RuntimeError as error:
        if "once_differentiable" in str(error):
            raise Problem(
                "backward is marked @once_differentiable, so a second derivative raises: "
                "remove the decorator — written with torch ops, backward is differentiable"
            ) from None
        raise Problem(f"the second backward raised RuntimeError: {error}") from None
    y = torch.tanh(X)
    if x.grad is None:
        raise Problem(f"the second derivative d/dx is missing: {CUT}")
    same(
        V * W * (-2 * y * (1 - y**2)),
        x.grad,
        "the second derivative (d/dx of your backward)",
        given=given,
        mistakes=((torch.zeros_like(X), f"it is 0: {CUT}"),),
    )
    same((1 - y**2) * W, upstream.grad, "d(backward)/d grad_output", given=given)
    inputs = (X.clone().requires_grad_(True),)
    if not call(torch.autograd.gradgradcheck, MyTanh.apply, inputs, raise_exception=False):
        raise Problem("torch.autograd.gradgradcheck fails on MyTanh")
    return "forward equals torch.tanh; gradcheck and gradgradcheck pass (float64)"


CHECKS = {"stable_bce": check_stable_bce, "MyTanh": check_tanh}
