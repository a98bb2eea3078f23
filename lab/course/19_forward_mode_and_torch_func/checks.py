"""19 · forward mode: a Dual class against torch.func.jvp, per-sample norms against a loop."""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from lab.exercises.feedback import NotAttempted, Problem, as_tensor, call, same

F64 = torch.float64
A = torch.tensor([0.5, 1.5, 2.0], dtype=F64)  # positive: log and division are defined
B = torch.tensor([2.0, -0.5, 1.25], dtype=F64)
VA = torch.tensor([1.0, -2.0, 0.5], dtype=F64)  # tangents that are not all ones: a missing
VB = torch.tensor([-1.5, 0.25, 3.0], dtype=F64)  # chain-rule factor cannot pass by luck

CHAIN = "multiply by the incoming tangent a′ (the chain rule)"
# (what is computed, the Dual expression, the same on tensors, the method it needs,
#  typical wrong tangents: (value, meaning))
STEPS = (
    ("a + b", lambda a, b: a + b, lambda a, b: a + b, "__add__", ()),
    (
        "a * b",
        lambda a, b: a * b,
        lambda a, b: a * b,
        "__mul__",
        (
            (VA * VB, "the tangent of a·b is a′b + ab′ (the product rule), not a′·b′"),
            (VA * B, "that is a′b alone: the product rule has a second term, ab′"),
        ),
    ),
    (
        "a - b",
        lambda a, b: a - b,
        lambda a, b: a - b,
        "__sub__",
        ((VA + VB, "the tangent of a − b is a′ − b′: subtract the tangents too"),),
    ),
    (
        "a / b",
        lambda a, b: a / b,
        lambda a, b: a / b,
        "__truediv__",
        (
            ((VA * B + A * VB) / B**2, "the quotient rule has a minus: (a′b − ab′)/b²"),
            (VA / VB, "tangents do not divide: (a/b)′ = (a′b − ab′)/b²"),
            (VA / B, "that is a′/b alone: (a/b)′ = (a′b − ab′)/b²"),
        ),
    ),
    (
        "a + 2",
        lambda a, b: a + 2,
        lambda a, b: a + 2,
        "__add__",
        ((VA + 1, "a plain number is a constant: its tangent is 0, not 1"),),
    ),
    (
        "2 + a",
        lambda a, b: 2 + a,
        lambda a, b: 2 + a,
        "__radd__",
        ((VA + 1, "a plain number is a constant: its tangent is 0, not 1"),),
    ),
    (
        "3 * a",
        lambda a, b: 3 * a,
        lambda a, b: 3 * a,
        "__rmul__",
        (
            (VA, "the constant scales the tangent too: (3a)′ = 3a′"),
            (3 * VA + A, "a plain number is a constant: its tangent is 0, not 1"),
        ),
    ),
    (
        "1 - a",
        lambda a, b: 1 - a,
        lambda a, b: 1 - a,
        "__rsub__",
        ((VA, "(1 − a)′ = −a′: __rsub__(self, other) computes other − self"),),
    ),
    (
        "1 / a",
        lambda a, b: 1 / a,
        lambda a, b: 1 / a,
        "__rtruediv__",
        ((VA / A**2, "(1/a)′ = −a′/a²: __rtruediv__(self, other) computes other / self"),),
    ),
    (
        "a ** 3",
        lambda a, b: a**3,
        lambda a, b: a**3,
        "__pow__",
        ((3 * A**2, f"(a³)′ = 3a²·a′: {CHAIN}"),),
    ),
    (
        "a.exp()",
        lambda a, b: a.exp(),
        torch.exp,
        "exp",
        ((torch.exp(A), f"exp(a)′ = exp(a)·a′: {CHAIN}"),),
    ),
    ("a.log()", lambda a, b: a.log(), torch.log, "log", ((1 / A, f"log(a)′ = a′/a: {CHAIN}"),)),
    (
        "a.sin()",
        lambda a, b: a.sin(),
        torch.sin,
        "sin",
        (
            (torch.cos(A), f"sin(a)′ = cos(a)·a′: {CHAIN}"),
            (-torch.cos(A) * VA, "sin(a)′ = +cos(a)·a′ (it is cos′ that has the minus)"),
        ),
    ),
)


def _composite(x, exp, log, sin):
    """(sin x · exp x + 3) / (1 + x²) − log x − 2x: every operation of the class at once."""
    return (sin(x) * exp(x) + 3) / (1 + x**2) - log(x) - 2 * x


def _jvp(torch_fn, primals, tangents) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle: (f(primals), its tangent) by PyTorch's forward mode."""
    with warnings.catch_warnings():
        # forward mode's first use loads PyTorch's decompositions through torch.jit.script,
        # whose deprecation notice is about PyTorch's code, not the learner's
        warnings.filterwarnings("ignore", category=FutureWarning)
        return torch.func.jvp(torch_fn, primals, tangents)


def _run_step(Dual, label, dual_fn, torch_fn, method, mistakes, first: bool):
    a, b = call(Dual, A.clone(), VA.clone(), who="Dual(...)"), Dual(B.clone(), VB.clone())
    try:
        result = dual_fn(a, b)
    except NotImplementedError:
        if first:
            raise NotAttempted() from None
        raise Problem(
            f"the steps before work; `{method}` still raises NotImplementedError"
        ) from None
    except AttributeError as exc:
        if "'value'" in str(exc) or "'tangent'" in str(exc):
            raise Problem(
                f"{label} raised AttributeError ({exc}): a plain number has no .value or "
                ".tangent; turn it into Dual(number, 0) first"
            ) from None
        raise Problem(f"{label} raised AttributeError: {exc}") from None
    except TypeError as exc:
        if "unsupported operand" in str(exc):
            raise Problem(
                f"{label} raised TypeError ({exc}): when the number comes first, Python asks "
                f"Dual.{method}: define it"
            ) from None
        raise Problem(f"{label} raised TypeError: {exc}") from None
    except Exception as exc:
        raise Problem(f"{label} raised {type(exc).__name__}: {exc}") from None
    if not (hasattr(result, "value") and hasattr(result, "tangent")):
        raise Problem(f"{label} returned {type(result).__name__}: return a Dual(value, tangent)")
    unary = method in ("exp", "log", "sin")
    value, tangent = _jvp(torch_fn, *(((A,), (VA,)) if unary else ((A, B), (VA, VB))))
    given = f"a = Dual({A.tolist()}, {VA.tolist()}), b = Dual({B.tolist()}, {VB.tolist()})"
    same(value, result.value, f"the value of {label}", given=given)
    same(tangent, result.tangent, f"the tangent of {label}", given=given, mistakes=mistakes)


def check_dual(Dual) -> str:
    for n, (label, dual_fn, torch_fn, method, mistakes) in enumerate(STEPS):
        _run_step(Dual, label, dual_fn, torch_fn, method, mistakes, first=n == 0)
    x = Dual(A.clone(), VA.clone())
    got = _composite(x, lambda d: d.exp(), lambda d: d.log(), lambda d: d.sin())
    _, tangent = _jvp(lambda t: _composite(t, torch.exp, torch.log, torch.sin), (A,), (VA,))
    same(tangent, got.tangent, "the tangent of (sin x · eˣ + 3)/(1 + x²) − log x − 2x")
    return (
        f"all {len(STEPS)} operations and a composite carry the tangent that torch.func.jvp "
        "computes (float64)"
    )


# --- 19.2 -----------------------------------------------------------------------------------


class _Counted(nn.Module):
    """A small classifier that counts how often it runs: vmap runs it once for the batch."""

    def __init__(self):
        super().__init__()
        self.hidden, self.out = nn.Linear(3, 4), nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.out(torch.tanh(self.hidden(x)))


def _model() -> _Counted:
    torch.manual_seed(1919)
    return _Counted().to(F64)


def _looped_grads(model, x, y) -> torch.Tensor:
    """The oracle: [N, P], sample i's gradient over all parameters, one autograd.grad each."""
    twin = copy.deepcopy(model)
    params = list(twin.parameters())
    rows = []
    for xi, yi in zip(x, y, strict=True):
        grads = torch.autograd.grad(F.cross_entropy(twin(xi[None]), yi[None]), params)
        rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


def check_per_sample_grad_norms(per_sample_grad_norms) -> str:
    model = _model()
    x = torch.tensor(
        [
            [0.5, -1.0, 2.0],
            [1.5, 0.2, -0.3],
            [-2.0, 1.0, 0.0],
            [0.1, 0.1, 0.1],
            [3.0, -1.0, 1.0],
            [-0.7, 2.2, -1.4],
        ],
        dtype=F64,
    )
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rows = _looped_grads(model, x, y)
    model.calls = 0
    got = as_tensor(
        call(
            per_sample_grad_norms,
            model,
            x.clone(),
            y.clone(),
            F.cross_entropy,
            who="per_sample_grad_norms",
        ),
        "per_sample_grad_norms",
    )
    if model.calls >= len(x):
        raise Problem(
            f"the model ran {model.calls} times for {len(x)} samples: that is a Python loop; "
            "vmap(grad(loss)) runs it once over the whole batch"
        )
    if model.calls == 0:
        raise Problem("the model never ran: call it through functional_call(model, params, (x,))")
    if any(p.grad is not None for p in model.parameters()):
        raise Problem(
            "the model's .grad was filled in: torch.func.grad returns the gradients, no "
            "backward() needed"
        )
    if any(not torch.equal(before[name], p.detach()) for name, p in model.named_parameters()):
        raise Problem("the model's parameters changed: compute the norms, update nothing")
    expected = rows.norm(dim=1)
    given = f"a 3-4-2 tanh classifier and {len(x)} samples"
    if got.dim() == 0:
        batch = rows.mean(0).norm()
        if torch.isclose(got.to(F64), batch):
            raise Problem(
                "one number came back, the norm of the batch's mean gradient: return one norm "
                f"per sample, shape ({len(x)},)"
            )
    if got.dim() == 2 and got.shape[0] == len(x):
        raise Problem(
            f"shape {tuple(got.shape)}: one norm per parameter tensor; a sample's gradient norm "
            "covers all parameters together, sqrt(Σ_p ‖g_p‖²)"
        )
    sizes = [p.numel() for p in model.parameters()]
    per_param = torch.stack([chunk.norm(dim=1) for chunk in rows.split(sizes, dim=1)], dim=1)
    same(
        expected,
        got,
        "the per-sample norm",
        given=given,
        mistakes=(
            (
                per_param.sum(1),
                "you added the parameters' norms: the gradient's norm is sqrt(Σ_p ‖g_p‖²), "
                "not Σ_p ‖g_p‖",
            ),
            (expected**2, "those are squared norms: take the square root"),
            (
                expected / len(x),
                f"they are 1/{len(x)} of the right ones: each sample's loss is its own, not "
                "divided by the batch size",
            ),
        ),
    )
    return f"{len(x)} per-sample gradient norms equal a loop's, from one vmapped model call"


CHECKS = {"Dual": check_dual, "per_sample_grad_norms": check_per_sample_grad_norms}
