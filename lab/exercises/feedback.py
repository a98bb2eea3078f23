"""The checks' vocabulary: a problem said in the learner's terms, never a traceback.

A check calls the learner's code through :func:`call` (a known PyTorch error becomes a
sentence about *their* code; a NotImplementedError says whose stub is unfinished), compares
with an independent oracle through :func:`same` / :func:`grad_vs_numerical`, and raises
:class:`Problem` with the first difference: what was expected, what came back, for which input.

What the learner's code did on the way is there to be asked: inside ``with watch(fn, …) as
seen:`` every :func:`call` records the calls it made to those functions (and to backward
passes, optimizer steps, ``zero_grad``, grad-mode switches), so a check can enforce an
exercise's rule ("by hand": no backward pass; "one vector-Jacobian product": one backward
pass; "no loop": as many operations for a big input as for a small one) and name the step
that went wrong. :func:`call` also puts back torch's global state (grad mode, default dtype,
inference and anomaly mode, the seed…) after the learner's code, so an oracle computed after
it sees the state it needs; :func:`evaluate <lab.exercises.checking.evaluate>` runs every
check under :func:`check_state`.

A check's inputs are what a learner could learn by heart (they are in the messages). Wrapped
in :func:`unseen` (values) or :func:`unseen_pick` (a case: another graph, other colours),
they stay as they are for ``lab check`` and the notebook; ``lab grade`` with a seed runs each
check once more with inputs drawn from it (:func:`unseen_inputs`), so an answer that returns
values canned for the usual inputs fails there.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import os
import re
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from lab.exercises import isolation, stubs


class Problem(Exception):
    """The first thing wrong with an answer, as one sentence for the learner."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAttempted(Exception):
    """A stub of the exercise being checked still raises NotImplementedError."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


# --- which exercise is being checked ---------------------------------------------------------

_CURRENT: list[str] = []  # the key of the exercise being checked (a stack: checks may nest)


@contextlib.contextmanager
def checking(key: str):
    """While a check of exercise ``key`` runs: its own stubs are 'not written yet', another
    exercise's stub is named as that exercise's."""
    _CURRENT.append(key)
    try:
        yield
    finally:
        _CURRENT.pop()


# --- torch's global state ---------------------------------------------------------------------


@dataclass
class _State:
    grad: bool
    inference: bool
    dtype: torch.dtype
    anomaly: tuple[bool, bool]
    deterministic: tuple[bool, bool]
    device: torch.device
    rng: torch.Tensor


def _snapshot() -> _State:
    return _State(
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
        torch.get_default_dtype(),
        (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
        (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        torch.get_default_device(),
        torch.get_rng_state(),
    )


_RESTORE_LATER: list[contextlib.ExitStack] = []  # inference mode is a context to exit later


def _restore(state: _State) -> None:
    if torch.is_inference_mode_enabled() != state.inference:
        context = torch.inference_mode(state.inference)
        if _RESTORE_LATER:
            _RESTORE_LATER[-1].enter_context(context)
        else:
            context.__enter__()
    torch.set_grad_enabled(state.grad)
    if torch.get_default_dtype() != state.dtype:
        torch.set_default_dtype(state.dtype)
    if (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()) != state.anomaly:
        torch.autograd.set_detect_anomaly(*state.anomaly)
    if (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    ) != state.deterministic:
        torch.use_deterministic_algorithms(state.deterministic[0], warn_only=state.deterministic[1])
    if torch.get_default_device() != state.device:
        torch.set_default_device(None if state.device == torch.device("cpu") else state.device)
    torch.set_rng_state(state.rng)


STANDARD = _State(
    grad=True,
    inference=False,
    dtype=torch.float32,
    anomaly=(False, True),
    deterministic=(False, False),
    device=torch.device("cpu"),
    rng=torch.Generator().manual_seed(0).get_state(),
)


@contextlib.contextmanager
def check_state():
    """A check runs under torch's defaults, seeded, whatever the learner switched in their
    notebook (``set_grad_enabled(False)``, a default dtype, inference or anomaly mode, a
    seed…); the caller's state is back afterwards."""
    before = _snapshot()
    stack = contextlib.ExitStack()
    _RESTORE_LATER.append(stack)
    try:
        with stack:
            _restore(STANDARD)
            yield
    finally:
        _RESTORE_LATER.remove(stack)
        _restore(before)


# --- what the learner's code called ------------------------------------------------------------


def _code(fn):
    """The code object a call of ``fn`` runs (decorators unwrapped)."""
    fn = inspect.unwrap(getattr(fn, "__func__", fn))
    return getattr(fn, "__code__", None)


def _sgd_step_wrapper():
    # Optimizer.step of every optimizer is wrapped by one profiling wrapper: watch that.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return type(optimizer).step.__code__


BACKWARD = torch.autograd.graph._engine_run_backward  # every backward() and autograd.grad()
OPTIMIZER_STEP = _sgd_step_wrapper()  # optimizer.step(), any optimizer
ZERO_GRAD = (torch.optim.Optimizer.zero_grad, torch.nn.Module.zero_grad)
_GRAD_OFF = {
    _code(torch.no_grad.__init__): "no_grad",
    _code(torch.set_grad_enabled.__init__): "set_grad_enabled",
    _code(torch.inference_mode.__init__): "inference_mode",
}
_AUTOGRAD_GRAD = _code(torch.autograd.grad)

_LABELS: dict = {}  # code object -> a name, for every watched function


def _label(fn) -> str:
    module = getattr(fn, "__module__", "") or ""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "co_qualname", str(fn))
    return f"{module}.{name}" if module else name


def _watch_code(fn):
    code = fn if hasattr(fn, "co_code") else _code(fn)
    if code is not None and code not in _LABELS:
        _LABELS[code] = _label(fn)
    return code


for _fn in (BACKWARD, OPTIMIZER_STEP, *ZERO_GRAD, torch.autograd.grad, torch.Tensor.backward):
    _watch_code(_fn)
_LABELS.update(_GRAD_OFF)


@dataclass
class Call:
    code: object
    label: str
    args: dict
    by_learner: bool  # called from the learner's own code (not from inside torch)


@dataclass
class Seen:
    """What the learner's code called while a :func:`watch` was open (through :func:`call`):
    the watched functions in order, and ``ops``, the number of calls of any function."""

    calls: list[Call] = field(default_factory=list)
    ops: int = 0

    def count(self, *fns) -> int:
        codes = {_watch_code(fn) for fn in fns}
        return sum(each.code in codes for each in self.calls)

    def first(self, *fns) -> Call | None:
        """The first call of any of ``fns``, or None."""
        codes = {_watch_code(fn) for fn in fns}
        return next((each for each in self.calls if each.code in codes), None)

    def order(self, **names) -> list[str]:
        """The names given (``step=OPTIMIZER_STEP``, ``zero_grad=ZERO_GRAD``…) in the order
        the learner's code called them."""
        codes = {}
        for name, fns in names.items():
            for fn in fns if isinstance(fns, tuple | list) else (fns,):
                codes[_watch_code(fn)] = name
        return [codes[each.code] for each in self.calls if each.code in codes]

    def grad_switched_off(self) -> bool:
        """Did the learner's own code turn gradient recording off (no_grad(),
        set_grad_enabled(False), inference_mode())?"""
        for each in self.calls:
            if not each.by_learner or each.code not in _GRAD_OFF:
                continue
            kind = _GRAD_OFF[each.code]
            mode = each.args.get("mode", True)
            if (
                kind == "no_grad"
                or (kind == "set_grad_enabled" and not mode)
                or (kind == "inference_mode" and mode)
            ):
                return True
        return False


_WATCHERS: list[Seen] = []


@contextlib.contextmanager
def watch(*fns):
    """Record what the learner's code calls (through :func:`call`) in this block: calls of
    ``fns`` (functions, methods, or code objects: name here what you will count) and of the
    always-watched ones (BACKWARD, OPTIMIZER_STEP, ZERO_GRAD, grad-mode switches)."""
    for fn in fns:
        _watch_code(fn)
    seen = Seen()
    _WATCHERS.append(seen)
    try:
        yield seen
    finally:
        _WATCHERS.remove(seen)


_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
# code that is not the learner's: torch, the standard library (site-packages too), this engine
_INTERNAL = (_TORCH_DIR, sysconfig.get_paths()["stdlib"], str(Path(__file__).resolve().parent))


def _by_learner(frame) -> bool:
    caller = frame.f_back
    if caller is None:
        return False
    filename = os.path.realpath(caller.f_code.co_filename)
    return not filename.startswith(_INTERNAL) and not filename.endswith(f"{os.sep}checks.py")


def _profile(frame, event, arg):
    if event == "call" or event == "c_call":
        for seen in _WATCHERS:
            seen.ops += 1
        if event == "call":
            label = _LABELS.get(frame.f_code)
            if label is not None:
                record = Call(frame.f_code, label, dict(frame.f_locals), _by_learner(frame))
                for seen in _WATCHERS:
                    seen.calls.append(record)


@contextlib.contextmanager
def _profiled():
    previous = sys.getprofile()
    if previous is _profile:
        yield
        return
    sys.setprofile(_profile)
    try:
        yield
    finally:
        sys.setprofile(previous)


# --- errors, in the learner's terms -----------------------------------------------------------

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
_NO_GRAPH = r"does not require grad and does not have a grad_fn"


def explain(exc: BaseException, who: str, seen: Seen | None = None) -> str:
    """One sentence for an exception from the learner's code; ``seen`` (what that code
    called) tells apart the causes that look the same to PyTorch."""
    if seen is not None and re.search(_NO_GRAPH, str(exc)):
        return _no_graph(seen)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for pattern, meaning in _KNOWN_ERRORS:
        match = re.search(pattern, str(exc))
        if match:
            return meaning.format(*([match.group(0)] + list(match.groups())))
    return f"{who} raised {type(exc).__name__}: {text}"


def _no_graph(seen: Seen) -> str:
    start = (
        "backward()/grad() was called on a result that is not connected to anything requiring grad"
    )
    first_grads = [c for c in seen.calls if c.code == _AUTOGRAD_GRAD and c.by_learner]
    if first_grads and not first_grads[0].args.get("create_graph"):
        return (
            f"{start}: it was computed by an earlier torch.autograd.grad() without "
            "create_graph=True, so it cannot be differentiated again: pass create_graph=True "
            "to the first grad()"
        )
    worked = seen.count(BACKWARD) - 1  # the last one is the one that failed
    if worked and seen.grad_switched_off():
        return (
            f"{start}: the first backward() worked, a later one did not. A tensor made under "
            "torch.no_grad() (e.g. `w = w - lr * w.grad` there) does not require grad: update "
            "the parameters in place (`w -= lr * w.grad`) so they stay the leaves"
        )
    if seen.grad_switched_off():
        return (
            f"{start}: it was computed with gradient recording off (torch.no_grad(), "
            "set_grad_enabled(False) or inference_mode() in your code): compute it with "
            "recording on, and keep no_grad for the parameter updates"
        )
    return f"{start}: create the inputs with requires_grad=True"


def _unwritten(exc: NotImplementedError, who: str) -> Exception:
    """A NotImplementedError: this exercise's stub, another exercise's stub, or neither."""
    message = str(exc)
    said = f'NotImplementedError("{message}")' if message else "NotImplementedError"
    key = stubs.owner(message)
    current = _CURRENT[-1] if _CURRENT else None
    if key is not None and (current is None or key == current):
        return NotAttempted(f"{who} still raises {said}: that part of {key} is not written yet")
    if key is not None:
        from lab.course import exercise

        return Problem(
            f"{who} calls `{exercise(key).target}` of exercise {key}, which is not written yet "
            f"(it raises {said}): finish {key} first"
        )
    subclass = _subclass_missing_a_method(exc)
    if subclass is not None:
        method = _innermost(exc).f_code.co_name
        return Problem(
            f"{who}: PyTorch's own `{method}` ran and raised {said}, so your class "
            f"{subclass.__name__} does not define `{method}` itself: is it spelt exactly "
            f"`{method}`?"
        )
    return Problem(f"{who} raised {said}")


def _subclass_missing_a_method(exc: BaseException) -> type | None:
    """The learner's class whose base-class method (in torch) raised ``exc``: a method the
    subclass was meant to define (``Dataset.__getitem__``, ``Function.backward``)."""
    origin = _innermost(exc)
    if origin is None or not os.path.realpath(origin.f_code.co_filename).startswith(_TORCH_DIR):
        return None
    owner = origin.f_locals.get("self", origin.f_locals.get("ctx"))
    cls = getattr(owner, "_forward_cls", type(owner))  # a custom Function's backward: its ctx
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    where = os.path.realpath(getattr(module, "__file__", "") or "")
    return None if owner is None or where.startswith(_TORCH_DIR) else cls


def _innermost(exc: BaseException):
    tb = exc.__traceback__
    frame = None
    while tb is not None:
        frame, tb = tb.tb_frame, tb.tb_next
    return frame


def call(fn, *args, who: str | None = None, restore: bool = True, **kwargs):
    """Run the learner's code and return what it returns. An unfinished stub of this exercise
    raises :class:`NotAttempted`; any other error, ``sys.exit()`` included, is a
    :class:`Problem` in one sentence. torch's global state is put back afterwards
    (``restore=False`` keeps what the code changed, for a check that asks for that)."""
    who = who or getattr(fn, "__qualname__", None) or "your code"
    before = _snapshot() if restore else None
    with watch() as seen:
        try:
            with _profiled():
                return fn(*args, **kwargs)
        except NotImplementedError as exc:
            raise _unwritten(exc, who) from None
        except (Problem, NotAttempted):
            raise
        except SystemExit as exc:
            raise Problem(
                f"{who} called sys.exit({'' if exc.code is None else repr(exc.code)}): that "
                "ends the check; return the result instead"
            ) from None
        except KeyboardInterrupt:
            if not isolation.IN_CHILD:
                raise  # the learner pressing Ctrl-C; in a check's own process it is the parent's
            raise Problem(f"{who} raised KeyboardInterrupt: return the result instead") from None
        except Exception as exc:  # the learner's bug, told in their terms
            raise Problem(explain(exc, who, seen)) from None
        finally:
            if before is not None:
                _restore(before)


# --- comparing with the oracle ----------------------------------------------------------------


def num(value) -> str:
    return f"{float(value):.4g}"


def index_text(index: tuple[int, ...]) -> str:
    if not index:
        return ""
    return str(index[0]) if len(index) == 1 else str(list(index))


# (rtol, atol) for a learner's result of this dtype: float32 is a reasonable choice
_TOLERANCES = {
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (1e-2, 1e-3),
    torch.float32: (1e-4, 1e-5),
    torch.complex64: (1e-4, 1e-5),
}
DEFAULT_TOLERANCE = (1e-5, 1e-6)  # float64, and whatever else


def tolerance(got: torch.Tensor, rtol=None, atol=None) -> tuple[float, float]:
    """(rtol, atol) for comparing the learner's ``got``: what its dtype can hold."""
    default = _TOLERANCES.get(got.dtype, DEFAULT_TOLERANCE)
    return (default[0] if rtol is None else rtol, default[1] if atol is None else atol)


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
    item = getattr(value, "item", None)  # a NumPy scalar
    if callable(item) and getattr(value, "shape", None) == ():
        return as_tensor(item(), what)
    raise Problem(f"{what} should be a tensor, got {type(value).__name__}")


def same(
    expected: torch.Tensor,
    got,
    what: str,
    *,
    given: str = "",
    mistakes: tuple = (),
    rtol=None,
    atol=None,
) -> None:
    """``got`` must equal the oracle's ``expected``, within what ``got``'s dtype can hold
    (or ``rtol``/``atol``). ``mistakes``: (value a typical wrong answer would give, what the
    learner did); matching one names the mistake."""
    got = as_tensor(got, what)
    rtol, atol = tolerance(got, rtol, atol)
    suffix = f" for {given}" if given else ""
    if tuple(got.shape) != tuple(expected.shape):
        raise Problem(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}{suffix}"
        )
    got = got.cpu()
    index = first_difference(expected, got, rtol, atol)
    if index is None:
        return
    where = f" at index {index_text(index)}" if index else ""
    message = (
        f"{what} differs{where} (expected {num(expected[index])}, got {num(got[index])}){suffix}"
    )
    for value, meaning in mistakes:
        value = torch.as_tensor(value, dtype=expected.dtype)
        if value.shape == got.shape and first_difference(value, got, rtol, atol) is None:
            raise Problem(f"{message}: {meaning}")
    ratio = _constant_ratio(expected, got)
    if ratio is not None and abs(ratio + 1) < 1e-6:
        message += ": the sign is flipped"
    elif ratio is not None:
        message += f": it is {ratio:.3g}× the right value"
    raise Problem(message)


def _constant_ratio(expected: torch.Tensor, got: torch.Tensor) -> float | None:
    """got / expected where that ratio says something: the same over several values, or,
    for a single value, a whole factor (2×, ½×, −1×) a forgotten constant would give."""
    mask = expected.abs() > 1e-9
    if not bool(mask.any()) or bool((got[~mask].abs() > 1e-9).any()):
        return None
    ratios = got.to(expected.dtype)[mask] / expected[mask]
    value = float(ratios.flatten()[0])
    if not math.isfinite(value) or abs(value - 1) < 1e-6:
        return None
    if not bool(torch.allclose(ratios, ratios.flatten()[0].expand_as(ratios), rtol=1e-6)):
        return None
    if ratios.numel() >= 2 or _whole_factor(value):
        return value
    return None


def _whole_factor(value: float) -> bool:
    for candidate in (value, 1 / value if value else 0.0):
        whole = round(candidate)
        if 2 <= abs(whole) <= 16 and abs(candidate - whole) < 1e-6 * abs(whole):
            return True
    return abs(value + 1) < 1e-6


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


def unchanged(before: torch.Tensor, after: torch.Tensor, name: str, fn: str) -> None:
    """The learner's ``fn`` must not have changed its input ``name`` in place."""
    if not torch.equal(before.detach(), after.detach()):
        i = int((before.flatten() != after.detach().flatten()).nonzero()[0])
        raise Problem(
            f"{fn} changed its input {name} in place ({name}[{i}] was "
            f"{num(before.flatten()[i])}, now {num(after.detach().flatten()[i])}): compute "
            "into a new tensor (torch.exp(-x), not x.neg_())"
        )


def _raw_backward(out: torch.Tensor, v: torch.Tensor, count: int) -> None:
    """A custom Function's backward, called as autograd would: what it returned, said."""
    node = out.grad_fn
    if not hasattr(node, "_forward_cls"):
        return
    returned = call(node.apply, v, who="backward")
    if isinstance(returned, list):
        raise Problem(
            f"`backward` returned a list of {len(returned)}: return a tuple (`return grad_x, "
            "grad_y`), one gradient per input of forward — autograd reads a list as one "
            "gradient"
        )
    got = len(returned) if isinstance(returned, tuple) else 1
    if got != count:
        raise Problem(
            f"`backward` returned {got} gradient(s) but `forward` takes {count} input(s): "
            "return one per input, in order (None for a non-tensor one)"
        )


def grad_vs_numerical(apply, inputs, names, v, given=""):
    """Gradcheck in float64, said per element: 'analytic dL/dx[2] = 0.0, numerical 0.196'.
    A forward that changes its inputs in place is said as such (it would spoil the
    numerical gradient)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = call(apply, *leaves, who="forward")
    for name, x, leaf in zip(names, inputs, leaves, strict=True):
        unchanged(x, leaf, name, "forward")
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        raise Problem("the output has no grad_fn: return a tensor computed from the inputs")
    try:  # backward's errors come out of these calls
        _raw_backward(out, v, len(leaves))
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


# --- an exercise's rule -----------------------------------------------------------------------


class _CountOps(TorchFunctionMode):
    """Counts every torch function and tensor method or operator called (``a[i]``, ``@``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def loop_free(fn, small: tuple, big: tuple, *, who: str, rule: str, sizes: str) -> None:
    """``fn`` must do as many operations for ``big`` inputs as for ``small`` ones: a Python
    loop over the data does more. ``rule`` is the exercise's; ``sizes`` says the two sizes
    ("3 points vs 12 points"). ``fn`` must not change its inputs."""
    call(fn, *small, who=who)  # once first: lazy set-up inside torch is not counted
    counts = []
    for args in (small, big):
        with watch() as seen, _CountOps() as ops:
            call(fn, *args, who=who)
        counts.append(seen.ops + ops.count)
    if counts[1] > counts[0] + 4:
        small_size, big_size = sizes.split(" vs ")
        raise Problem(
            f"{rule}: your code made {counts[0]} calls for {small_size} but {counts[1]} for "
            f"{big_size}, so it loops over the data in Python"
        )


# --- inputs the learner has not seen (lab grade) ----------------------------------------------


@dataclass
class UnseenInputs:
    """An open :func:`unseen_inputs` block: the grader's seed, and how many inputs the check
    asked to change in it (none: a check whose inputs are fixed, a quiz)."""

    seed: int
    drawn: int = 0


_GRADING: list[UnseenInputs] = []  # while :func:`unseen_inputs` is open


@contextlib.contextmanager
def unseen_inputs(seed: int):
    """In this block :func:`unseen` and :func:`unseen_pick` give the inputs ``seed`` derives
    (``lab grade`` with ``LAB_GRADE_SEED`` runs every check a second time in one); it gives
    the :class:`UnseenInputs` that counts them."""
    _GRADING.append(UnseenInputs(int(seed)))
    try:
        yield _GRADING[-1]
    finally:
        _GRADING.pop()


def _generator(*parts) -> torch.Generator | None:
    """A generator drawn from the grader's seed and ``parts`` (None when not grading): the
    same input gives the same draw, however often a check builds it."""
    if not _GRADING:
        return None
    _GRADING[-1].drawn += 1
    digest = hashlib.sha256(repr((_GRADING[-1].seed, *parts)).encode("utf-8")).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def unseen(value, *, spread: float = 0.2, kinks: tuple[float, ...] = ()):
    """An input a check defines, as it is; while grading with a seed, moved to values the
    learner has not seen: each element by up to ``spread`` × max(|element|, 1), same shape,
    dtype and device, the same draw each time the check builds the same input. ``kinks``:
    where the exercise's oracle is not smooth or not defined (a clamp's limits, 0 for a log):
    each element stays on its side of every kink and at least half as far from it (one
    sitting on a kink stays there). Integers and booleans (labels, indices, sizes) are never
    changed; a float, or a tuple or list of floats, comes back as one. One line per input:
    ``X = unseen(torch.tensor([0.5, -1.0]))``, ``xs = unseen((0.5, -1.5))``."""
    if not _GRADING:
        return value
    if isinstance(value, float | tuple | list) and _floats(value):  # (0.5, -1.5): one tensor
        moved = unseen(torch.tensor(value, dtype=torch.float64), spread=spread, kinks=kinks)
        return moved.item() if isinstance(value, float) else type(value)(moved.tolist())
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return value
    original = value.detach().to(device="cpu", dtype=torch.float64)
    generator = _generator(value.dtype, value.shape, original.numpy().tobytes(), spread, kinks)
    stays = ~torch.isfinite(original)  # left as they are: on a kink, or not a number
    for kink in kinks:
        stays |= original == kink
    scale = spread * original.abs().clamp(min=1.0)
    moved, todo = original.clone(), ~stays
    for _ in range(64):  # redraw those that crossed a kink or came too close to it
        noise = 2 * torch.rand(original.shape, generator=generator, dtype=torch.float64) - 1
        moved = torch.where(todo, original + scale * noise, moved)
        todo &= ~_clear_of(kinks, original, moved)
        if not bool(todo.any()):
            break
    moved = torch.where(todo, original, moved)  # never clear in 64 draws: as it was
    result = moved.to(device=value.device, dtype=value.dtype)
    return result.requires_grad_(True) if value.requires_grad and value.is_leaf else result


def _floats(value) -> bool:
    values = value if isinstance(value, tuple | list) else [value]
    return bool(values) and all(isinstance(each, float) for each in values)


def _clear_of(kinks, original: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    clear = torch.ones_like(original, dtype=torch.bool)
    for kink in kinks:
        before, after = original - kink, moved - kink
        clear &= (torch.sign(before) == torch.sign(after)) & (after.abs() >= before.abs() / 2)
    return clear


def _stable_key(value) -> str:
    """``repr`` that is the same in every process: functions by their qualified names (their
    repr holds a memory address), so one seed picks the same case wherever it is graded."""
    if isinstance(value, tuple | list):
        return "(" + ",".join(_stable_key(each) for each in value) + ")"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return repr(value)


def unseen_pick(usual, alternatives):
    """``usual``; while grading with a seed, one of ``alternatives`` instead (another graph,
    other colours: for an answer that could be right for the usual case only whatever its
    values). The same pick each time the check asks with the same ``usual``."""
    generator = _generator("pick", _stable_key(usual), len(alternatives))
    if generator is None:
        return usual
    return alternatives[int(torch.randint(len(alternatives), (1,), generator=generator))]


__all__ = [
    "BACKWARD",
    "OPTIMIZER_STEP",
    "ZERO_GRAD",
    "NotAttempted",
    "Problem",
    "Seen",
    "as_tensor",
    "call",
    "check_state",
    "checking",
    "explain",
    "first_difference",
    "grad_vs_numerical",
    "index_text",
    "loop_free",
    "num",
    "numerical_vjp",
    "pair",
    "same",
    "tolerance",
    "unchanged",
    "unseen",
    "unseen_inputs",
    "unseen_pick",
    "watch",
]
