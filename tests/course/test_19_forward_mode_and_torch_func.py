"""Lesson 19: dual numbers, forward_ad and torch.func.jvp, jacfwd vs jacrev, Hessians,
per-sample gradients with vmap."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support import answers
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_histograms, read_scalars, single_run_dir
from torch.autograd.functional import hessian, jacobian

from lab.exercises.checking import PASSED

F64 = torch.float64
lesson = definitions("19")

# Small slips the lesson's own checks must catch.
MUTATIONS = [
    # the product rule with one term: (ab)′ = a′b′
    (
        "self.tangent * other.value + self.value * other.tangent",
        "self.tangent * other.tangent",
    ),
    # jvp and vjp swapped: vᵀJ where J v was meant
    ("    _, jv = jvp(func, (x,), (v,))\n", "    jv = vjp(func, x)[1](v)[0]\n"),
    # forward-mode columns stacked as rows: the transposed Jacobian
    (
        "return torch.stack(columns, dim=1), len(columns)",
        "return torch.stack(columns), len(columns)",
    ),
    # the mixed partials in the wrong order: ∂/∂x (∂g/∂y), the transpose
    (
        "jacfwd(jacrev(func, argnums=0), argnums=1)",
        "jacfwd(jacrev(func, argnums=1), argnums=0)",
    ),
    # the loop oracle that forgets to reset .grad: each sample's gradient holds the earlier ones
    (
        "        model.zero_grad()\n        F.cross_entropy(model(sample[None])",
        "        F.cross_entropy(model(sample[None])",
    ),
]


def random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_dual_numbers_give_the_derivative_of_a_polynomial_and_of_sin():
    x = random(6)
    dual = lesson.Dual(x, torch.ones_like(x))
    result = 2 * dual * dual * dual + dual * 5 + 1  # 2x³ + 5x + 1
    assert torch.allclose(result.value, 2 * x**3 + 5 * x + 1)
    assert torch.allclose(result.tangent, 6 * x**2 + 5)
    assert torch.allclose(
        lesson.dual_sin(lesson.Dual(x, 2 * torch.ones_like(x))).tangent, 2 * torch.cos(x)
    )
    leaf = x.clone().requires_grad_(True)
    (reverse,) = torch.autograd.grad(lesson.wiggle(leaf).sum(), leaf)
    assert torch.allclose(lesson.wiggle(lesson.Dual(x, torch.ones_like(x))).tangent, reverse)


def non_square(x):
    """R⁴ → R²."""
    return torch.stack([x[0] * torch.cos(x[1]) + x[3] ** 2, torch.tanh(x[2] * x[3]) - x[1]])


@pytest.mark.parametrize("func", [non_square, "spiral"], ids=["non_square", "spiral"])
def test_forward_ad_and_func_jvp_equal_the_reverse_mode_jacobian_times_v(func):
    func = getattr(lesson, func) if isinstance(func, str) else func
    size = 4 if func is non_square else 3
    x, v, u = random(size, seed=1), random(size, seed=2), random(2, seed=3)
    J = jacobian(func, x)
    primal, tangent = lesson.jvp_forward_ad(func, x, v)
    assert torch.allclose(primal, func(x)) and torch.allclose(tangent, J @ v)
    jv, ujt = lesson.jvp_and_vjp(func, x, u, v)
    assert torch.allclose(jv, J @ v) and torch.allclose(ujt, u @ J)


def test_forward_ad_leaves_no_dual_tensor_behind():
    x, v = random(3), random(3, seed=1)
    primal, tangent = lesson.jvp_forward_ad(lesson.spiral, x, v)
    with torch.autograd.forward_ad.dual_level():
        assert torch.autograd.forward_ad.unpack_dual(primal).tangent is None
    assert tangent.shape == (2,)


@pytest.mark.parametrize(("inputs", "outputs"), [(3, 7), (6, 2)])
def test_jacobians_by_columns_and_rows_count_one_pass_per_input_or_output(inputs, outputs):
    matrix = random(outputs, inputs, seed=4)

    def func(x):
        return torch.sin(matrix @ x) * x.sum()

    x = random(inputs, seed=5)
    reference = jacobian(func, x)
    by_columns, forward_passes = lesson.jacobian_by_columns(func, x)
    by_rows, reverse_passes = lesson.jacobian_by_rows(func, x)
    assert (forward_passes, reverse_passes) == (inputs, outputs)
    assert torch.allclose(by_columns, reference) and torch.allclose(by_rows, reference)


def test_agree_refuses_a_transpose_without_raising():
    square = random(3, 3)
    assert lesson.agree(square, square.clone())
    assert not lesson.agree(square, square.T)
    assert not lesson.agree(random(2, 3), random(3, 2))


def test_hessian_rows_by_double_backward_equal_functional_hessian():
    def quartic(t):
        return (t**4).sum() + t[0] * t[1] * t[2] - torch.cos(t).prod()

    x = random(4, seed=6)
    assert torch.allclose(lesson.hessian_by_double_backward(quartic, x), hessian(quartic, x))


def test_mixed_partials_in_x_then_y_by_hand():
    def func(x, y):  # Σᵢⱼ xᵢ yⱼ²: ∂²/∂xᵢ∂yⱼ = 2yⱼ in every row
        return (x[:, None] * y[None, :] ** 2).sum()

    x, y = random(2), random(5, seed=1)
    mixed = lesson.mixed_partials(func, x, y)
    assert mixed.shape == (2, 5)
    assert torch.allclose(mixed, 2 * y.expand(2, 5))
    matrix = random(2, 5, seed=2)
    by_lesson = lesson.mixed_partials(lambda a, b: lesson.bilinear(a, b, matrix), x, y)
    assert torch.allclose(by_lesson, matrix * (1 - torch.tanh(y) ** 2))


def test_per_sample_gradients_equal_the_loop_and_average_to_the_batch_gradient():
    model = lesson.classifier("cpu", features=4, hidden=6, classes=5)
    x, y = random(9, 4, seed=7), torch.tensor([0, 4, 1, 3, 2, 2, 0, 1, 4])
    vmapped = lesson.per_sample_grads(model, x, y)
    looped = lesson.looped_grads(model, x, y)
    assert all(p.grad is None for p in model.parameters())  # the loop leaves .grad clean
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert vmapped[name].shape == (9, *p.shape)
        assert torch.allclose(vmapped[name], looped[name])
        assert torch.allclose(vmapped[name].mean(0), p.grad)


def test_best_time_returns_the_fastest_of_its_repeats():
    calls = []
    seconds = lesson.best_time(lambda: calls.append(1), repeats=4)
    assert len(calls) == 4 and 0 <= seconds < 1


def test_cells_log_errors_timings_the_histogram_and_both_figures(runs_dir):
    ns = run_lesson("19", "--tall", "40", "--narrow", "3", "--samples", "12", "--repeats", "1")
    assert len(ns.lesson.checks) == 23
    assert ns.lesson.figures == ["jacfwd_vs_jacrev", "per_sample_grad_norms"]
    assert ns.passes == {"tall": {"jacfwd": 3, "jacrev": 40}, "wide": {"jacfwd": 40, "jacrev": 3}}
    run = single_run_dir(runs_dir, "19_forward_mode_and_torch_func")
    scalars = read_scalars(run)
    assert scalars["check/forward_ad_error"][0][1] < 1e-12
    for tag in ("tall_jacfwd", "tall_jacrev", "wide_jacfwd", "wide_jacrev"):
        assert scalars[f"jacobian_ms/{tag}"][0][1] > 0
    ((step, low, high, count),) = read_histograms(run)["per_sample/grad_norm"]
    assert count == 12 and 0 <= low <= high  # one norm per sample (the setting took effect)


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=["product-rule", "jvp-vjp-swapped", "columns-as-rows", "mixed-order", "loop-accumulates"],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("19", old, new, "--tall", "20", "--samples", "8", "--repeats", "1")


DUAL_HEAD = """
class Dual:
    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    @staticmethod
    def lift(other):
        return other if isinstance(other, Dual) else Dual(other, 0.0)
"""
DUAL_RIGHT_TAIL = """
    def __pow__(self, n):
        return Dual(self.value**n, n * self.value ** (n - 1) * self.tangent)

    def exp(self):
        return Dual(torch.exp(self.value), torch.exp(self.value) * self.tangent)

    def log(self):
        return Dual(torch.log(self.value), self.tangent / self.value)

    def sin(self):
        return Dual(torch.sin(self.value), torch.cos(self.value) * self.tangent)
"""


def dual(add="", sub="", mul="", div="", reflected="", tail=DUAL_RIGHT_TAIL) -> str:
    """A Dual class, right except where a piece is replaced."""
    add = (
        add
        or """
    def __add__(self, other):
        other = Dual.lift(other)
        return Dual(self.value + other.value, self.tangent + other.tangent)
"""
    )
    sub = (
        sub
        or """
    def __sub__(self, other):
        other = Dual.lift(other)
        return Dual(self.value - other.value, self.tangent - other.tangent)
"""
    )
    mul = (
        mul
        or """
    def __mul__(self, other):
        o = Dual.lift(other)
        return Dual(self.value * o.value, self.tangent * o.value + self.value * o.tangent)
"""
    )
    div = (
        div
        or """
    def __truediv__(self, other):
        o = Dual.lift(other)
        tangent = (self.tangent * o.value - self.value * o.tangent) / o.value**2
        return Dual(self.value / o.value, tangent)
"""
    )
    reflected = (
        reflected
        or """
    def __radd__(self, other):
        return Dual.lift(other) + self

    def __rsub__(self, other):
        return Dual.lift(other) - self

    def __rmul__(self, other):
        return Dual.lift(other) * self

    def __rtruediv__(self, other):
        return Dual.lift(other) / self
"""
    )
    return DUAL_HEAD + add + sub + mul + div + reflected + tail


NORMS_HEAD = """
from torch.func import functional_call, grad, vmap

def per_sample_grad_norms(model, x, y, loss_fn):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def one_loss(params, xi, yi):
        return loss_fn(functional_call(model, params, (xi[None],)), yi[None])

    grads = vmap(grad(one_loss), in_dims=(None, 0, 0))(params, x, y)
"""

# Typical wrong answers to 19's exercises, and what the check must say about each.
WRONG = {
    "19.1": [
        (
            dual(
                mul="""
    def __mul__(self, other):
        other = Dual.lift(other)
        return Dual(self.value * other.value, self.tangent * other.tangent)
"""
            ),
            "the tangent of a * b differs at index 0 (expected 1.25, got -1.5) for a = Dual([0.5, "
            "1.5, 2.0], [1.0, -2.0, 0.5]), b = Dual([2.0, -0.5, 1.25], [-1.5, 0.25, 3.0]): the "
            "tangent of a·b is a′b + ab′ (the product rule), not a′·b′",
        ),
        (
            dual(
                div="""
    def __truediv__(self, other):
        o = Dual.lift(other)
        tangent = (self.tangent * o.value + self.value * o.tangent) / o.value**2
        return Dual(self.value / o.value, tangent)
"""
            ),
            "the quotient rule has a minus: (a′b − ab′)/b²",
        ),
        (
            dual(
                add="""
    def __add__(self, other):
        return Dual(self.value + other.value, self.tangent + other.tangent)
"""
            ),
            "a + 2 raised AttributeError ('int' object has no attribute 'value'): a plain number "
            "has no .value or .tangent; turn it into Dual(number, 0) first",
        ),
        (
            dual(
                reflected="""
    def __radd__(self, other):
        return Dual.lift(other) + self

    def __rtruediv__(self, other):
        return Dual.lift(other) / self
"""
            ),
            "3 * a raised TypeError (unsupported operand type(s) for *: 'int' and 'Dual'): when "
            "the number comes first, Python asks Dual.__rmul__: define it",
        ),
        (
            dual(
                reflected="""
    def __radd__(self, other):
        return self + other

    def __rsub__(self, other):
        return self - other

    def __rmul__(self, other):
        return self * other

    def __rtruediv__(self, other):
        return Dual.lift(other) / self
"""
            ),
            "the value of 1 - a differs at index 0 (expected 0.5, got -0.5)",
        ),
        (
            dual(
                tail=DUAL_RIGHT_TAIL.replace(
                    "torch.exp(self.value) * self.tangent", "torch.exp(self.value)"
                )
            ),
            "exp(a)′ = exp(a)·a′: multiply by the incoming tangent a′ (the chain rule)",
        ),
        (
            dual(tail=DUAL_RIGHT_TAIL.replace("def sin(self):", "def sine(self):")),
            "a.sin() raised AttributeError: 'Dual' object has no attribute 'sin'",
        ),
        (
            DUAL_HEAD
            + """
    def __add__(self, other):
        other = Dual.lift(other)
        return Dual(self.value + other.value, self.tangent + other.tangent)

    def __mul__(self, other):
        raise NotImplementedError("19.1: the product rule")
""",
            "the steps before work; `__mul__` still raises NotImplementedError",
        ),
        (
            dual(
                mul="""
    def __mul__(self, other):  # a Dual on the right only
        return Dual(
            self.value * other.value, self.tangent * other.value + self.value * other.tangent
        )
"""
            ),
            "a * 3 raised AttributeError ('int' object has no attribute 'value'): a plain number "
            "has no .value or .tangent; turn it into Dual(number, 0) first",
        ),
        (
            dual(
                reflected="""
    def __radd__(self, other):
        return self + other

    def __rsub__(self, other):
        return Dual.lift(other) - self

    def __rmul__(self, other):
        return self * other

    def __rtruediv__(self, other):
        return self / other
"""
            ),
            "the value of 1 / a differs at index 0 (expected 2, got 0.5) for a = Dual([0.5, 1.5, "
            "2.0], [1.0, -2.0, 0.5]), b = Dual([2.0, -0.5, 1.25], [-1.5, 0.25, 3.0]): "
            "__rtruediv__(self, other) computes other / self: 1 / a, not a / 1",
        ),
        (
            dual(
                add="""
    def __add__(self, other):
        other = Dual.lift(other)
        self.value = self.value + other.value  # changes a itself
        self.tangent = self.tangent + other.tangent
        return self
"""
            ),
            "a + b returned its operand a itself, changed: return a new Dual(value, tangent) and "
            "leave the operands as they were",
        ),
        (
            dual(
                tail=DUAL_RIGHT_TAIL.replace(
                    "torch.exp(self.value), torch.exp(self.value) * self.tangent",
                    "math.exp(self.value), math.exp(self.value) * self.tangent",
                )
            ).replace("class Dual", "import math\n\nclass Dual", 1),
            "a.exp() raised ValueError (only one element tensors can be converted to Python "
            "scalars): value and tangent are tensors of several elements — use torch.exp",
        ),
        (
            """
class Dual:  # every operation through PyTorch's own forward mode
    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    def _jvp(self, f, *others):
        others = [o if isinstance(o, Dual) else Dual(torch.tensor(float(o)), torch.tensor(0.0))
                  for o in others]
        primals = (self.value, *(o.value for o in others))
        tangents = (self.tangent, *(o.tangent for o in others))
        return Dual(*torch.func.jvp(f, primals, tangents))

    def __add__(self, other):
        return self._jvp(torch.add, other)
""",
            "your Dual called PyTorch's forward mode (torch.func.jvp, jacfwd or "
            "forward_ad.make_dual): carry the tangent yourself",
        ),
    ],
    "19.2": [
        (
            """
def per_sample_grad_norms(model, x, y, loss_fn):
    norms = []
    for xi, yi in zip(x, y):
        params = list(model.parameters())
        grads = torch.autograd.grad(loss_fn(model(xi[None]), yi[None]), params)
        norms.append(torch.cat([g.flatten() for g in grads]).norm())
    return torch.stack(norms)
""",
            "the model ran 6 times for 6 samples: that is a Python loop; vmap(grad(loss)) runs "
            "it once over the whole batch",
        ),
        (
            """
def per_sample_grad_norms(model, x, y, loss_fn):
    model.zero_grad()
    loss_fn(model(x), y).backward()
    grads = [p.grad for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return torch.cat([g.flatten() for g in grads]).norm()
""",
            "one number came back, the norm of the batch's mean gradient: return one norm per "
            "sample, shape (6,)",
        ),
        (
            NORMS_HEAD
            + "    return torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()], 1)\n",
            "shape (6, 4): one norm per parameter tensor; a sample's gradient norm covers all "
            "parameters together, sqrt(Σ_p ‖g_p‖²)",
        ),
        (
            NORMS_HEAD + "    return sum(g.flatten(1).norm(dim=1) for g in grads.values())\n",
            "you added the parameters' norms: the gradient's norm is sqrt(Σ_p ‖g_p‖²), not "
            "Σ_p ‖g_p‖",
        ),
        (
            NORMS_HEAD + "    return sum((g.flatten(1) ** 2).sum(1) for g in grads.values())\n",
            "those are squared norms: take the square root",
        ),
        (
            NORMS_HEAD.replace("in_dims=(None, 0, 0)", "in_dims=(0, 0, 0)")
            + "    return torch.cat([g.flatten(1) for g in grads.values()], dim=1).norm(dim=1)\n",
            "pass shared arguments such as the parameters with in_dims=None",
        ),
        (
            NORMS_HEAD.replace("return loss_fn(", "return torch.nn.functional.cross_entropy(")
            + "    return torch.cat([g.flatten(1) for g in grads.values()], dim=1).norm(dim=1)\n",
            "loss_fn was never called: a sample's loss is loss_fn(model(xᵢ), yᵢ) with the loss_fn "
            "passed in",
        ),
        (
            NORMS_HEAD
            + "    return torch.cat([g.flatten(1) for g in grads.values()], dim=1).norm(dim=0)\n",
            "shape (26,): one norm per parameter element — that norm ran over the samples "
            "(dim=0); take it over the parameters, dim=1",
        ),
        (
            """
from torch.func import functional_call, grad, vmap

def per_sample_grad_norms(model, x, y, loss_fn):
    params = {name: p.detach() for name, p in model.named_parameters()}

    def one_loss(xi, yi):  # the sample first: grad differentiates with respect to it
        return loss_fn(functional_call(model, params, (xi[None],)), yi[None])

    return vmap(grad(one_loss))(x, y).flatten(1).norm(dim=1)
""",
            "those are the norms of the gradient with respect to the input x",
        ),
        (
            NORMS_HEAD
            + "    weights = [g for name, g in grads.items() if name.endswith('weight')]\n"
            + "    return torch.cat([g.flatten(1) for g in weights], dim=1).norm(dim=1)\n",
            "those cover the weights only: the biases are parameters too",
        ),
        (
            NORMS_HEAD
            + "    norms = torch.cat([g.flatten(1) for g in grads.values()], 1).norm(dim=1)\n",
            "per_sample_grad_norms returned None: return the norms (a missing return?)",
        ),
    ],
}

# Correct answers that differ from the reference solution: each must pass.
RIGHT = {
    "19.1": [
        # tensors of the result built explicitly, reflected ops written out, pow via exp/log
        """
class Dual:
    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    def _pair(self, other):
        if isinstance(other, Dual):
            return other.value, other.tangent
        return other, torch.zeros_like(self.tangent)

    def __add__(self, other):
        v, t = self._pair(other)
        return Dual(self.value + v, self.tangent + t)

    __radd__ = __add__

    def __sub__(self, other):
        v, t = self._pair(other)
        return Dual(self.value - v, self.tangent - t)

    def __rsub__(self, other):
        return Dual(other - self.value, -self.tangent)

    def __mul__(self, other):
        v, t = self._pair(other)
        return Dual(self.value * v, self.tangent * v + self.value * t)

    __rmul__ = __mul__

    def __truediv__(self, other):
        v, t = self._pair(other)
        return Dual(self.value / v, self.tangent / v - self.value * t / v**2)

    def __rtruediv__(self, other):
        return Dual(other / self.value, -other * self.tangent / self.value**2)

    def __pow__(self, n):
        return Dual(self.value**n, n * self.value ** (n - 1) * self.tangent)

    def exp(self):
        e = torch.exp(self.value)
        return Dual(e, e * self.tangent)

    def log(self):
        return Dual(torch.log(self.value), self.tangent / self.value)

    def sin(self):
        return Dual(torch.sin(self.value), torch.cos(self.value) * self.tangent)
""",
        # a dataclass; subtraction through negation, division through ** -1
        """
from dataclasses import dataclass


def as_dual(x):
    return x if isinstance(x, Dual) else Dual(torch.as_tensor(x, dtype=torch.float64), 0.0)


@dataclass
class Dual:
    value: torch.Tensor
    tangent: torch.Tensor

    def __add__(self, other):
        o = as_dual(other)
        return Dual(self.value + o.value, self.tangent + o.tangent)

    __radd__ = __add__

    def __neg__(self):
        return Dual(-self.value, -self.tangent)

    def __sub__(self, other):
        return self + -as_dual(other)

    def __rsub__(self, other):
        return as_dual(other) + -self

    def __mul__(self, other):
        o = as_dual(other)
        return Dual(self.value * o.value, self.tangent * o.value + self.value * o.tangent)

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self * as_dual(other) ** -1

    def __rtruediv__(self, other):
        return as_dual(other) * self**-1

    def __pow__(self, n):
        return Dual(self.value**n, n * self.value ** (n - 1) * self.tangent)

    def exp(self):
        e = self.value.exp()
        return Dual(e, e * self.tangent)

    def log(self):
        return Dual(self.value.log(), self.tangent / self.value)

    def sin(self):
        return Dual(self.value.sin(), self.value.cos() * self.tangent)
""",
    ],
    "19.2": [
        # torch.func.vmap over a per-sample grad of a plain function, norms via vector_norm
        """
import torch.func

def per_sample_grad_norms(model, x, y, loss_fn):
    names = [name for name, _ in model.named_parameters()]
    values = tuple(p.detach() for _, p in model.named_parameters())

    def loss_of(values, xi, yi):
        out = torch.func.functional_call(model, dict(zip(names, values)), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    grads = torch.func.vmap(torch.func.grad(loss_of), in_dims=(None, 0, 0))(values, x, y)
    squares = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0)
    return torch.sqrt(squares)
""",
        # one unbatched sample at a time (cross-entropy takes it), jacrev for grad
        """
from torch.func import functional_call, jacrev, vmap

def per_sample_grad_norms(model, x, y, loss_fn):
    params = dict(model.named_parameters())

    def loss_of(p, xi, yi):
        return loss_fn(functional_call(model, p, xi), yi)

    grads = vmap(jacrev(loss_of), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([g.reshape(len(x), -1) for g in grads.values()], dim=1)
    return torch.linalg.vector_norm(flat, dim=1)
""",
        # in float32
        """
from torch.func import functional_call, grad, vmap

def per_sample_grad_norms(model, x, y, loss_fn):
    params = {k: v.detach().float() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    grads = vmap(grad(one), in_dims=(None, 0, 0))(params, x.float(), y)
    return sum(g.pow(2).flatten(1).sum(1) for g in grads.values()).sqrt()
""",
    ],
}


@pytest.mark.parametrize(("key", "source"), answers.cases(RIGHT))
def test_a_different_correct_answer_passes_in_the_notebook_and_lab_check(key, source, tmp_path):
    in_cell, from_file = answers.verdicts(key, source, tmp_path)
    assert in_cell.status == from_file.status == PASSED, (in_cell.message, from_file.message)
