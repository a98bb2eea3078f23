"""20 · debugging gradients: a stable BCE against the closed form softplus(z) − t·z and its
gradient σ(z) − t; a tanh Function's first and second derivatives against tanh's own."""

from __future__ import annotations

import types

import torch
from torch.overrides import TorchFunctionMode

from lab.exercises.feedback import (
    NotAttempted,
    Problem,
    as_tensor,
    call,
    explain,
    grad_vs_numerical,
    num,
    same,
    unseen,
)

F64 = torch.float64
# |z| = 800: σ(−800) is exactly 0 in float64, so any log of a probability overflows there
# (beyond |z| ≈ 745; exp(|z|) beyond 709.8): unseen values stay beyond ±750. No z is exactly
# 0, where max(z, 0) has a kink and conventions differ; unseen ones stay clear of it too.
Z = torch.tensor([-800.0, -30.0, -2.0, 0.5, 3.0, 30.0, 800.0], dtype=F64)
T = torch.tensor([1.0, 0.0, 1.0, 0.25, 1.0, 1.0, 0.0], dtype=F64)  # targets in [0, 1]
BUILTINS = ("binary_cross_entropy_with_logits",)


class _Calls(TorchFunctionMode):
    """Records the names of the torch functions called, whatever name they were imported as."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.add(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


def _bce_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(z, t) for 20.1; while grading, moved on their sides of the kinks above (0 and 1 stay)."""
    return unseen(Z, kinks=(-750.0, 0.0, 750.0)), unseen(T, kinks=(0.0, 1.0))


def _where(z: torch.Tensor, t: torch.Tensor, index: int) -> str:
    return f"z = {num(z[index])}, t = {num(t[index])}"


def _overflow(z, t, values: torch.Tensor, bad: list[int], names: set[str]) -> str:
    """What overflowed, told from where (z ≫ 0, z ≪ 0 or both) and what was called."""
    positive, negative = any(z[i] > 0 for i in bad), any(z[i] < 0 for i in bad)
    i = max(bad) if positive else bad[0]
    where = f"the loss is {num(values[i])} at {_where(z, t, i)}"
    if positive and negative or "sigmoid" in names:
        return (
            f"{where}: σ(z) rounds to exactly 0 or 1 and its log overflows; work from the "
            "logit: log σ(z) = −softplus(−z), log(1 − σ(z)) = −softplus(z)"
        )
    if positive:
        return (
            f"{where}: exp(z) overflows when z is very large; use |z|: max(z, 0) + "
            "log1p(exp(−|z|)), or softplus"
        )
    return (
        f"{where}: exp(−z) overflows when z is very negative; use |z|: max(z, 0) + "
        "log1p(exp(−|z|)), or softplus"
    )


def check_stable_bce(stable_bce) -> str:
    Z, T = _bce_inputs()
    z = Z.clone().requires_grad_(True)
    with _Calls() as calls:
        loss = call(stable_bce, z, T.clone(), who="stable_bce")
    if calls.names & set(BUILTINS):
        raise Problem(
            "that calls the built-in binary_cross_entropy_with_logits: the exercise is to write "
            "it stably yourself (hint: softplus)"
        )
    if loss is None:
        raise Problem("stable_bce returned None: return the loss (a missing return?)")
    loss = loss if isinstance(loss, torch.Tensor) else as_tensor(loss, "stable_bce(z, t)")
    if tuple(loss.shape) != tuple(Z.shape):
        raise Problem(
            f"stable_bce returned shape {tuple(loss.shape)}: return one loss per element, shape "
            f"{tuple(Z.shape)} (no mean or sum)"
        )
    expected = torch.nn.functional.softplus(Z) - T * Z  # the closed form, stable by itself
    values = loss.detach().to(F64)
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad:
        raise Problem(_overflow(Z, T, values, bad, calls.names))
    given = f"z = {Z.tolist()}, t = {T.tolist()}"
    softplus = torch.nn.functional.softplus
    mistakes = (
        (
            softplus(-Z) - T * Z,
            "the sign inside softplus is flipped: the loss is softplus(z) − t·z",
        ),
        (
            softplus(Z) - (1 - T) * Z,
            "t and 1 − t are swapped: t·softplus(−z) + (1 − t)·softplus(z)",
        ),
        (softplus(Z) + T * Z, "the sign of t·z is flipped: the loss is softplus(z) − t·z"),
        (softplus(Z), "the −t·z term is missing: the loss is softplus(z) − t·z"),
    )
    if any(torch.allclose(values, value) for value, _ in mistakes):
        same(expected, values, "the loss", given=given, mistakes=mistakes)  # names the mistake
    for index in (0, len(Z) - 1):  # the extremes: a clamp or an ε caps the loss there
        if 1 < values[index] < 0.5 * expected[index]:
            raise Problem(
                f"the loss at {_where(Z, T, index)} should be {num(expected[index])} but is "
                f"{num(values[index])}: a clamp (of σ(z) or of z) or an ε added inside the log "
                "caps the loss (and zeroes its gradient there); compute it from the logit "
                "instead"
            )
    same(expected, values, "the loss", given=given)
    if loss.grad_fn is None:
        raise Problem("the loss has no grad_fn: compute it with torch ops on z, not .item()/NumPy")
    (grad,) = torch.autograd.grad(loss.sum(), z)
    nan = (~torch.isfinite(grad)).nonzero().flatten().tolist()
    if nan:
        raise Problem(
            f"the loss is finite but its gradient is {num(grad[nan[0]])} at "
            f"{_where(Z, T, nan[0])}: "
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
    ".detach(), .data or .clone() of y, or a copy kept on ctx, cuts the second derivative)"
)


def _tanh_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, the upstream gradient, the second backward's upstream) for 20.2."""
    return unseen(X), unseen(V), unseen(W)


def check_tanh(MyTanh) -> str:
    _unfinished(MyTanh)
    X, V, W = _tanh_inputs()
    given = f"x = {X.tolist()}"
    x = X.clone().requires_grad_(True)
    out = call(MyTanh.apply, x, who="MyTanh.forward")
    if out is None:
        raise Problem("forward returned None: return y = torch.tanh(x) (a missing return?)")
    same(torch.tanh(X), out, "forward", given=given)
    saved = _saved(out)
    if saved == [] and not _tensors_on(out.grad_fn):
        raise Problem(
            "forward saved nothing for backward (ctx.saved_tensors is empty): call "
            "ctx.save_for_backward(y) in forward, with y its result"
        )
    _grad_output_unchanged(MyTanh, X, V)
    grad_vs_numerical(MyTanh.apply, [X], ["x"], V.clone(), given=given)
    first, leaf, upstream = _first_derivative(MyTanh, X, V)
    if first.grad_fn is None:
        raise Problem(
            "the gradient your backward returns is cut off from the graph (computed under "
            "no_grad, through NumPy, or from detached tensors), so there is no second "
            "derivative: write backward with torch ops on ctx.saved_tensors"
        )
    try:
        first.backward(W.clone())
    except RuntimeError as error:
        if "once_differentiable" in str(error):
            raise Problem(
                "backward is marked @once_differentiable, so a second derivative raises: "
                "remove the decorator — written with torch ops, backward is differentiable"
            ) from None
        if "modified by an inplace operation" in str(error):
            raise Problem(
                "backward changed a saved tensor in place (y.pow_(), y *= …), which the second "
                "derivative still needs as it was: compute new tensors, grad_output * (1 - y**2)"
            ) from None
        raise Problem(f"the second backward raised RuntimeError: {error}") from None
    y = torch.tanh(X)
    if leaf.grad is None:
        raise Problem(f"the second derivative d/dx is missing: {CUT}")
    same(
        V * W * (-2 * y * (1 - y**2)),
        leaf.grad,
        "the second derivative (d/dx of your backward)",
        given=given,
        mistakes=((torch.zeros_like(X), f"it is 0: {CUT}"),),
    )
    same((1 - y**2) * W, upstream.grad, "d(backward)/d grad_output", given=given)
    inputs = (X.clone().requires_grad_(True),)
    if not call(torch.autograd.gradgradcheck, MyTanh.apply, inputs, raise_exception=False):
        raise Problem("torch.autograd.gradgradcheck fails on MyTanh")
    if not any(t.data_ptr() == out.data_ptr() for t in saved):
        what = (
            "the input x" if any(t.data_ptr() == x.data_ptr() for t in saved) else "other tensors"
        )
        raise Problem(
            f"gradcheck and gradgradcheck pass, but forward saved {what}, not its output: the "
            "exercise is a backward that uses the saved output y (tanh′ = 1 − y²) — "
            "ctx.save_for_backward(y) with y = torch.tanh(x)"
        )
    return "forward equals torch.tanh; gradcheck and gradgradcheck pass (float64)"


def _unfinished(MyTanh) -> None:
    """Both stubs untouched: not attempted; only forward: say so (backward's is said by the
    gradient check)."""
    try:
        MyTanh.apply(X.clone())
    except NotImplementedError:
        try:
            stand_in = types.SimpleNamespace(saved_tensors=(X.clone(),), needs_input_grad=(True,))
            MyTanh.backward(stand_in, V.clone())
        except NotImplementedError:
            raise NotAttempted() from None
        except Exception:  # noqa: S110 - backward is written; it may need what forward saves
            pass
        raise Problem("backward is written; forward still raises NotImplementedError") from None
    except Exception:  # noqa: S110 - forward's own error is told where it is checked
        pass


def _grad_output_unchanged(MyTanh, X: torch.Tensor, V: torch.Tensor) -> None:
    upstream, x = V.clone(), X.clone().requires_grad_(True)
    try:
        torch.autograd.grad(MyTanh.apply(x), x, upstream)
    except Exception:  # noqa: S110 - backward's own errors are told by the gradient check
        return
    if not torch.equal(upstream, V):
        raise Problem(
            "backward changed grad_output in place (grad_output.mul_(), *=): it belongs to the "
            "caller — return a new tensor, grad_output * (1 - y**2)"
        )


def _saved(out: torch.Tensor) -> list[torch.Tensor]:
    try:
        return list(out.grad_fn.saved_tensors)
    except (AttributeError, RuntimeError):
        return []


def _tensors_on(ctx) -> bool:
    """Whether forward kept a tensor on ctx as an attribute (ctx.y = y)."""
    return any(isinstance(value, torch.Tensor) for value in vars(ctx).values()) if ctx else False


def _first_derivative(MyTanh, X: torch.Tensor, V: torch.Tensor):
    """(dL/dx with create_graph, x, the upstream gradient) — upstream needs grad, as
    gradgradcheck makes it."""
    x = X.clone().requires_grad_(True)
    upstream = V.clone().requires_grad_(True)
    try:
        (first,) = torch.autograd.grad(MyTanh.apply(x), x, upstream, create_graph=True)
    except RuntimeError as error:
        if "leaf Variable that requires grad is being used in an in-place" in str(error):
            raise Problem(
                "backward changed grad_output in place (grad_output.mul_(), *=): return a new "
                "tensor, grad_output * (1 - y**2)"
            ) from None
        raise Problem(explain(error, "backward")) from None
    return first, x, upstream


CHECKS = {"stable_bce": check_stable_bce, "MyTanh": check_tanh}
