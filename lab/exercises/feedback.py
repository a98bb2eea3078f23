"""The checks' vocabulary: a problem said in the learner's terms, never a traceback.

A check calls the learner's code through :func:`call` (a stub's NotImplementedError becomes
:class:`NotAttempted`, a known PyTorch error becomes a sentence about *their* code), compares
with an independent oracle through :func:`same` / :func:`grad_vs_numerical`, and raises
:class:`Problem` with the first difference: what was expected, what came back, for which input.
"""

from __future__ import annotations

import math
import re

import torch


class Problem(Exception):
    """The first thing wrong with an answer, as one sentence for the learner."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAttempted(Exception):
    """The stub still raises NotImplementedError."""


# (pattern in PyTorch's message, what it means for the learner's code)
_KNOWN_ERRORS = (
    (
        r"modified by an inplace operation",
        "a tensor saved with save_for_backward was modified in place afterwards (e.g. `x.mul_()`"
        " or `x += ...` after saving x): compute into a new tensor instead",
    ),
    (
        r"returned an incorrect number of gradients \(expected (\d+), got (\d+)\)",
        "`backward` returned {2} gradient(s) but `forward` takes {1} input(s): return one per "
        "input, in order (None for a non-tensor one)",
    ),
    (
        r"a leaf Variable that requires grad is being used in an in-place operation",
        "a parameter was updated in place while autograd was recording: do the update inside "
        "`with torch.no_grad():`",
    ),
    (
        r"does not require grad and does not have a grad_fn",
        "backward()/grad() was called on a result that is not connected to anything requiring "
        "grad: create the inputs with requires_grad=True (for a second derivative, pass "
        "create_graph=True to the first grad())",
    ),
    (
        r"The size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)",
        "the shapes do not broadcast (sizes {1} and {2} meet on one axis): give each input "
        "its own axis with None or unsqueeze, e.g. a[:, None, :]",
    ),
    (
        r"mat1 and mat2 shapes cannot be multiplied \((\w+) and (\w+)\)",
        "the matrix product's shapes do not fit ({1} and {2}): a vector needs a trailing "
        "axis, x.unsqueeze(-1), to be multiplied as a column",
    ),
    (
        r"'NoneType' object has no attribute '(next_functions|name)'",
        "next_functions holds (None, 0) for inputs that need no gradient: skip those entries",
    ),
    (
        r"backward through the graph a second time",
        "the graph was used for a second backward after its buffers were freed: pass "
        "retain_graph=True to the first backward, or rebuild the graph",
    ),
    (
        r"backend='[^']*' raised:\n([^\n]*)",
        "the torch.compile backend raised {1} while compiling: a backend, and each compiler "
        "given to aot_autograd, is called as f(graph, example_inputs) and returns a callable "
        "(e.g. make_boxed_func(graph.forward))",
    ),
    (
        r"vmap: Expected all tensors to have the same size in the mapped dimension",
        "vmap mapped arguments whose first axes differ in size: map only what has a batch axis "
        "(the samples) and pass shared arguments such as the parameters with in_dims=None, "
        "e.g. in_dims=(None, 0, 0)",
    ),
    (
        r"unsupported operand type\(s\) for .*NoneType",
        "a `.grad` was None: either that tensor is not a leaf created with requires_grad=True, "
        "or backward() was not called before reading it",
    ),
)


def explain(exc: BaseException, who: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for pattern, meaning in _KNOWN_ERRORS:
        match = re.search(pattern, str(exc))
        if match:
            return meaning.format(*([match.group(0)] + list(match.groups())))
    return f"{who} raised {type(exc).__name__}: {text}"


def call(fn, *args, who: str | None = None, **kwargs):
    """Run the learner's code; a stub says 'not attempted', any other error one sentence."""
    who = who or getattr(fn, "__qualname__", None) or "your code"
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise NotAttempted() from None
    except (Problem, NotAttempted):
        raise
    except Exception as exc:  # the learner's bug, told in their terms
        raise Problem(explain(exc, who)) from None


def num(value) -> str:
    return f"{float(value):.4g}"


def index_text(index: tuple[int, ...]) -> str:
    if not index:
        return ""
    return str(index[0]) if len(index) == 1 else str(list(index))


def first_difference(expected: torch.Tensor, got: torch.Tensor, rtol=1e-5, atol=1e-6):
    """Index (tuple) of the first element that differs, or None when all are close."""
    close = torch.isclose(got.to(expected.dtype), expected, rtol=rtol, atol=atol)
    if bool(close.all()):
        return None
    if expected.dim() == 0:
        return ()
    flat = int((~close).flatten().nonzero()[0])
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), expected.shape))


def as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if value is None:
        raise Problem(
            f"{what} is None: .grad is only filled in for a leaf tensor created with "
            "requires_grad=True, and only after backward()"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    raise Problem(f"{what} should be a tensor, got {type(value).__name__}")


def same(
    expected: torch.Tensor,
    got,
    what: str,
    *,
    given: str = "",
    mistakes: tuple = (),
    rtol=1e-5,
    atol=1e-6,
) -> None:
    """``got`` must equal the oracle's ``expected``. ``mistakes``: (value a typical wrong
    answer would give, what the learner probably did); matching one names the mistake."""
    got = as_tensor(got, what)
    suffix = f" for {given}" if given else ""
    if tuple(got.shape) != tuple(expected.shape):
        raise Problem(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}{suffix}"
        )
    index = first_difference(expected, got.cpu(), rtol, atol)
    if index is None:
        return
    where = f" at index {index_text(index)}" if index else ""
    message = (
        f"{what} differs{where} (expected {num(expected[index])}, got {num(got[index])}){suffix}"
    )
    for value, meaning in mistakes:
        value = torch.as_tensor(value, dtype=expected.dtype)
        if value.shape == got.shape and first_difference(value, got.cpu(), rtol, atol) is None:
            raise Problem(f"{message}: {meaning}")
    ratio = _constant_ratio(expected, got.cpu())
    if ratio is not None:
        message += f": it is {_times(ratio)} the right value"
    raise Problem(message)


def _times(ratio: float) -> str:
    return f"{ratio:.3g}×" if ratio != -1 else "−1× (the sign is flipped)"


def _constant_ratio(expected: torch.Tensor, got: torch.Tensor) -> float | None:
    mask = expected.abs() > 1e-9
    if not bool(mask.any()) or bool((got[~mask].abs() > 1e-9).any()):
        return None
    ratios = got.to(expected.dtype)[mask] / expected[mask]
    if bool(torch.allclose(ratios, ratios.flatten()[0].expand_as(ratios), rtol=1e-6)):
        value = float(ratios.flatten()[0])
        return value if math.isfinite(value) and abs(value - 1) > 1e-6 else None
    return None


def numerical_vjp(fn, inputs: list[torch.Tensor], v: torch.Tensor, eps=1e-6):
    """vᵀ·J for each input by central differences (float64): the oracle that needs no
    autograd at all."""
    grads = []
    for position, x in enumerate(inputs):
        grad = torch.zeros_like(x)
        flat = grad.view(-1)
        for i in range(x.numel()):
            shifted = [t.detach().clone() for t in inputs]
            shifted[position].view(-1)[i] += eps
            up = fn(*shifted).detach()
            shifted[position].view(-1)[i] -= 2 * eps
            down = fn(*shifted).detach()
            flat[i] = ((up - down) / (2 * eps) * v).sum()
        grads.append(grad)
    return grads


def grad_vs_numerical(apply, inputs, names, v, given=""):
    """Gradcheck in float64, said per element: 'analytic dL/dx[2] = 0.0, numerical 0.196'."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = call(apply, *leaves, who="forward")
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        raise Problem("the output has no grad_fn: return a tensor computed from the inputs")
    try:  # backward's errors come out of this call
        analytic = call(torch.autograd.grad, out, leaves, v, allow_unused=True, who="backward")
    except NotAttempted:
        raise Problem("forward works; `backward` still raises NotImplementedError") from None
    numerical = numerical_vjp(apply, inputs, v)
    ignoring_v = numerical_vjp(apply, inputs, torch.ones_like(v))
    for name, a, n, ones in zip(names, analytic, numerical, ignoring_v, strict=True):
        if a is None:
            raise Problem(f"`backward` returned None for {name}: it needs a gradient")
        index = first_difference(n, a.detach(), rtol=1e-4, atol=1e-6)
        if index is not None and first_difference(ones, a.detach(), 1e-4, 1e-6) is None:
            raise Problem(
                f"`backward` ignored grad_output: dL/d{name} must be grad_output times the "
                "local derivative (the chain rule), not the local derivative alone"
            )
        if index is not None:
            at = f"[{index_text(index)}]" if index else ""
            raise Problem(
                f"gradcheck fails: analytic dL/d{name}{at} = {num(a[index])}, numerical "
                f"{num(n[index])}{f' for {given}' if given else ''}"
            )
    return analytic


def pair(value, what: str) -> tuple:
    """A function that should return two things did: say what came back otherwise."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        kind = f"{len(value)} values" if isinstance(value, tuple | list) else type(value).__name__
        raise Problem(f"{what} should return a pair, got {kind}")
    return tuple(value)
