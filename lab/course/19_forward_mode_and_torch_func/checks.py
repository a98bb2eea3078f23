"""19 · forward mode: a Dual class against torch.func.jvp, per-sample norms against a loop."""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from lab.exercises.feedback import NotAttempted, Problem, as_tensor, call, same, unseen

F64 = torch.float64


def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, B, VA, VB): the values of a (positive: log and 1/a are defined) and b (not 0: a / b
    is), and their tangents, not all ones: a missing chain-rule factor cannot pass by luck."""
    A = unseen(torch.tensor([0.5, 1.5, 2.0], dtype=F64), kinks=(0.0,))
    B = unseen(torch.tensor([2.0, -0.5, 1.25], dtype=F64), kinks=(0.0,))
    VA = unseen(torch.tensor([1.0, -2.0, 0.5], dtype=F64))
    VB = unseen(torch.tensor([-1.5, 0.25, 3.0], dtype=F64))
    return A, B, VA, VB


CHAIN = "multiply by the incoming tangent a′ (the chain rule)"
# (what is computed, the Dual expression, the same on tensors, the method it needs,
#  typical wrong tangents at the inputs (A, B, VA, VB): (value, meaning))
STEPS = (
    ("a + b", lambda a, b: a + b, lambda a, b: a + b, "__add__", ()),
    (
        "a * b",
        lambda a, b: a * b,
        lambda a, b: a * b,
        "__mul__",
        lambda A, B, VA, VB: (
            (VA * VB, "the tangent of a·b is a′b + ab′ (the product rule), not a′·b′"),
            (VA * B, "that is a′b alone: the product rule has a second term, ab′"),
        ),
    ),
    (
        "a - b",
        lambda a, b: a - b,
        lambda a, b: a - b,
        "__sub__",
        lambda A, B, VA, VB: (
            (VA + VB, "the tangent of a − b is a′ − b′: subtract the tangents too"),
        ),
    ),
    (
        "a / b",
        lambda a, b: a / b,
        lambda a, b: a / b,
        "__truediv__",
        lambda A, B, VA, VB: (
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
        lambda A, B, VA, VB: ((VA + 1, "a plain number is a constant: its tangent is 0, not 1"),),
    ),
    ("a - 2", lambda a, b: a - 2, lambda a, b: a - 2, "__sub__", ()),
    (
        "a * 3",
        lambda a, b: a * 3,
        lambda a, b: a * 3,
        "__mul__",
        lambda A, B, VA, VB: ((VA, "the constant scales the tangent too: (3a)′ = 3a′"),),
    ),
    ("a / 4", lambda a, b: a / 4, lambda a, b: a / 4, "__truediv__", ()),
    (
        "2 + a",
        lambda a, b: 2 + a,
        lambda a, b: 2 + a,
        "__radd__",
        lambda A, B, VA, VB: ((VA + 1, "a plain number is a constant: its tangent is 0, not 1"),),
    ),
    (
        "3 * a",
        lambda a, b: 3 * a,
        lambda a, b: 3 * a,
        "__rmul__",
        lambda A, B, VA, VB: (
            (VA, "the constant scales the tangent too: (3a)′ = 3a′"),
            (3 * VA + A, "a plain number is a constant: its tangent is 0, not 1"),
        ),
    ),
    (
        "1 - a",
        lambda a, b: 1 - a,
        lambda a, b: 1 - a,
        "__rsub__",
        lambda A, B, VA, VB: ((VA, "(1 − a)′ = −a′: __rsub__(self, other) computes other − self"),),
    ),
    (
        "1 / a",
        lambda a, b: 1 / a,
        lambda a, b: 1 / a,
        "__rtruediv__",
        lambda A, B, VA, VB: (
            (VA / A**2, "(1/a)′ = −a′/a²: __rtruediv__(self, other) computes other / self"),
        ),
    ),
    (
        "a ** 3",
        lambda a, b: a**3,
        lambda a, b: a**3,
        "__pow__",
        lambda A, B, VA, VB: ((3 * A**2, f"(a³)′ = 3a²·a′: {CHAIN}"),),
    ),
    (
        "a ** -0.5",
        lambda a, b: a**-0.5,
        lambda a, b: a**-0.5,
        "__pow__",
        lambda A, B, VA, VB: ((-0.5 * A**-1.5, f"(aⁿ)′ = n·aⁿ⁻¹·a′: {CHAIN}"),),
    ),
    (
        "a.exp()",
        lambda a, b: a.exp(),
        torch.exp,
        "exp",
        lambda A, B, VA, VB: ((torch.exp(A), f"exp(a)′ = exp(a)·a′: {CHAIN}"),),
    ),
    (
        "a.log()",
        lambda a, b: a.log(),
        torch.log,
        "log",
        lambda A, B, VA, VB: ((1 / A, f"log(a)′ = a′/a: {CHAIN}"),),
    ),
    (
        "a.sin()",
        lambda a, b: a.sin(),
        torch.sin,
        "sin",
        lambda A, B, VA, VB: (
            (torch.cos(A), f"sin(a)′ = cos(a)·a′: {CHAIN}"),
            (-torch.cos(A) * VA, "sin(a)′ = +cos(a)·a′ (it is cos′ that has the minus)"),
        ),
    ),
)


VALUE_SLIPS = {  # typical wrong values at a's value A: (value, meaning)
    "1 - a": lambda A: ((A - 1, "__rsub__(self, other) computes other − self: 1 − a, not a − 1"),),
    "1 / a": lambda A: ((A, "__rtruediv__(self, other) computes other / self: 1 / a, not a / 1"),),
}
FORWARD_AD = (
    "your Dual called PyTorch's forward mode (torch.func.jvp, jacfwd or forward_ad.make_dual): "
    "carry the tangent yourself, with the rules of differentiation — jvp is the check's oracle"
)


@contextmanager
def without_forward_ad():
    """While the learner's Dual runs, PyTorch's forward-mode AD refuses, in their terms: every
    way in (torch.func.jvp, jacfwd, forward_ad.make_dual) makes its dual tensors here."""
    import torch._functorch.predispatch as predispatch

    def refuse(*args, **kwargs):
        raise Problem(FORWARD_AD)

    saved = predispatch._make_dual
    predispatch._make_dual = refuse
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # as in _jvp
            yield
    finally:
        predispatch._make_dual = saved


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


def _untouched(Dual) -> bool:
    """Every operation still raises the stub's NotImplementedError."""
    A, B, VA, VB = inputs()
    for _, dual_fn, _, _, _ in STEPS:
        try:
            with without_forward_ad():
                dual_fn(Dual(A.clone(), VA.clone()), Dual(B.clone(), VB.clone()))
        except NotImplementedError:
            continue
        except Exception:
            return False
        return False
    return True


def _run_step(Dual, label, dual_fn, torch_fn, method, mistakes, first: bool):
    A, B, VA, VB = inputs()
    a, b = call(Dual, A.clone(), VA.clone(), who="Dual(...)"), Dual(B.clone(), VB.clone())
    operands = {"a": (a, _parts(a)), "b": (b, _parts(b))}
    try:
        with without_forward_ad():
            result = dual_fn(a, b)
    except Problem:
        raise
    except NotImplementedError:
        before = "" if first else "the steps before work; "
        raise Problem(f"{before}`{method}` still raises NotImplementedError") from None
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
        raise Problem(_raised(label, exc)) from None
    except Exception as exc:
        raise Problem(_raised(label, exc)) from None
    if not (hasattr(result, "value") and hasattr(result, "tangent")):
        raise Problem(f"{label} returned {type(result).__name__}: return a Dual(value, tangent)")
    _operands_unchanged(label, operands, result)
    unary = method in ("exp", "log", "sin")
    value, tangent = _jvp(torch_fn, *(((A,), (VA,)) if unary else ((A, B), (VA, VB))))
    given = f"a = Dual({A.tolist()}, {VA.tolist()}), b = Dual({B.tolist()}, {VB.tolist()})"
    slips = VALUE_SLIPS[label](A) if label in VALUE_SLIPS else ()
    same(value, result.value, f"the value of {label}", given=given, mistakes=slips)
    mistakes = mistakes(A, B, VA, VB) if mistakes else ()
    same(tangent, result.tangent, f"the tangent of {label}", given=given, mistakes=mistakes)


def _raised(label: str, exc: Exception) -> str:
    if "only one element tensors" in str(exc) or "must be real number, not Tensor" in str(exc):
        return (
            f"{label} raised {type(exc).__name__} ({exc}): value and tangent are tensors of "
            "several elements — use torch.exp, torch.log, torch.sin, torch.cos, not math"
        )
    return f"{label} raised {type(exc).__name__}: {exc}"


def _parts(dual) -> dict:
    """A copy of a Dual's value and tangent, as its __init__ stored them."""
    return {part: copy.deepcopy(getattr(dual, part, None)) for part in ("value", "tangent")}


def _operands_unchanged(label: str, operands: dict, result) -> None:
    """Each operation returns a new Dual and leaves its operands as they were."""
    for name, (operand, was) in operands.items():
        if result is operand:
            raise Problem(
                f"{label} returned its operand {name} itself, changed: return a new "
                "Dual(value, tangent) and leave the operands as they were"
            )
        for part, before in was.items():
            now = getattr(operand, part, None)
            if isinstance(before, torch.Tensor):
                unchanged = isinstance(now, torch.Tensor) and torch.equal(now, before)
            else:
                unchanged = now is before or bool(now == before)
            if not unchanged:
                raise Problem(
                    f"{label} changed {name}.{part}: an operation returns a new "
                    "Dual(value, tangent) and leaves its operands as they were (no +=, no "
                    "in-place add_ / mul_)"
                )


def check_dual(Dual) -> str:
    if _untouched(Dual):
        raise NotAttempted()
    for n, (label, dual_fn, torch_fn, method, mistakes) in enumerate(STEPS):
        _run_step(Dual, label, dual_fn, torch_fn, method, mistakes, first=n == 0)
    A, _, VA, _ = inputs()
    x = Dual(A.clone(), VA.clone())
    with without_forward_ad():
        got = _composite(x, lambda d: d.exp(), lambda d: d.log(), lambda d: d.sin())
    _, tangent = _jvp(lambda t: _composite(t, torch.exp, torch.log, torch.sin), (A,), (VA,))
    given = f"x = Dual({A.tolist()}, {VA.tolist()})"
    same(tangent, got.tangent, "the tangent of (sin x · eˣ + 3)/(1 + x²) − log x − 2x", given=given)
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


class _Loss:
    """The loss_fn handed to the answer: cross-entropy with label smoothing (not the plain
    F.cross_entropy an answer might call by itself), counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, logits, target):
        self.calls += 1
        return F.cross_entropy(logits, target, label_smoothing=0.2)


def _looped_grads(model, x, y, wrt_input=False) -> torch.Tensor:
    """The oracle: [N, P], sample i's gradient over all parameters (or over its input), one
    autograd.grad each."""
    twin = copy.deepcopy(model)
    params = list(twin.parameters())
    rows = []
    for xi, yi in zip(x, y, strict=True):
        xi = xi[None].clone().requires_grad_(wrt_input)
        loss = _Loss()(twin(xi), yi[None])
        grads = torch.autograd.grad(loss, [xi] if wrt_input else params)
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
    x = unseen(x)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rows = _looped_grads(model, x, y)
    model.calls, loss_fn = 0, _Loss()
    got = call(
        per_sample_grad_norms, model, x.clone(), y.clone(), loss_fn, who="per_sample_grad_norms"
    )
    if got is None:
        raise Problem("per_sample_grad_norms returned None: return the norms (a missing return?)")
    got = as_tensor(got, "per_sample_grad_norms")
    if model.calls >= len(x):
        raise Problem(
            f"the model ran {model.calls} times for {len(x)} samples: that is a Python loop; "
            "vmap(grad(loss)) runs it once over the whole batch"
        )
    if model.calls == 0:
        raise Problem("the model never ran: call it through functional_call(model, params, (x,))")
    if loss_fn.calls == 0:
        raise Problem(
            "loss_fn was never called: a sample's loss is loss_fn(model(xᵢ), yᵢ) with the "
            "loss_fn passed in (here a cross-entropy with label smoothing), not one of your own"
        )
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
    if got.dim() == 1 and got.shape[0] == rows.shape[1] != len(x):
        raise Problem(
            f"shape ({rows.shape[1]},): one norm per parameter element — that norm ran over "
            f"the samples (dim=0); take it over the parameters, dim=1, one per sample ({len(x)},)"
        )
    sizes = [p.numel() for p in model.parameters()]
    weights = [name.endswith("weight") for name, _ in model.named_parameters()]
    weight_columns = torch.cat([torch.full((n,), w) for n, w in zip(sizes, weights, strict=True)])
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
            (
                _looped_grads(model, x, y, wrt_input=True).norm(dim=1),
                "those are the norms of the gradient with respect to the input x: grad "
                "differentiates the first argument, so put the parameters first",
            ),
            (
                rows[:, weight_columns].norm(dim=1),
                "those cover the weights only: the biases are parameters too — all of "
                "model.named_parameters()",
            ),
        ),
    )
    return f"{len(x)} per-sample gradient norms equal a loop's, from one vmapped model call"


CHECKS = {"Dual": check_dual, "per_sample_grad_norms": check_per_sample_grad_norms}
