# %% [markdown]
# # 19 · Exercises: forward mode and torch.func
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("19.1")` shows the next hint. From a terminal: `lab check 19`.

# %%
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 19.1 · A dual-number class
#
# A `Dual(value, tangent)` stands for `value + tangent·ε` with `ε² = 0`; `value` and
# `tangent` are tensors (elementwise). Make every operation carry the tangent along: `+`,
# `-`, `*`, `/` between two Duals **and** with a plain number on either side (`2 * d`,
# `d + 1`, `1 / d`: a number is a constant), `d ** n` for a number `n`, and the methods
# `d.exp()`, `d.log()`, `d.sin()`. Each returns a new `Dual` and leaves its operands as they
# were. By hand, with the rules of differentiation: the check compares every tangent with
# `torch.func.jvp`, which is the oracle, not part of your answer.


# %%
class Dual:
    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    def __add__(self, other):
        raise NotImplementedError("19.1: Dual + Dual, Dual + number")

    def __sub__(self, other):
        raise NotImplementedError("19.1: Dual - Dual, Dual - number")

    def __mul__(self, other):
        raise NotImplementedError("19.1: the product rule")

    def __truediv__(self, other):
        raise NotImplementedError("19.1: the quotient rule")

    def __radd__(self, other):  # number + Dual
        raise NotImplementedError("19.1: number + Dual")

    def __rsub__(self, other):  # number - Dual
        raise NotImplementedError("19.1: number - Dual")

    def __rmul__(self, other):  # number * Dual
        raise NotImplementedError("19.1: number * Dual")

    def __rtruediv__(self, other):  # number / Dual
        raise NotImplementedError("19.1: number / Dual")

    def __pow__(self, n):  # Dual ** number
        raise NotImplementedError("19.1: Dual ** n")

    def exp(self):
        raise NotImplementedError("19.1: exp")

    def log(self):
        raise NotImplementedError("19.1: log")

    def sin(self):
        raise NotImplementedError("19.1: sin")


# %%
check_exercise("19.1", Dual)

# %% [markdown]
# ## 19.2 · Per-sample gradient norms with vmap
#
# Return a tensor of shape `(N,)`: for each of the `N` samples in `x`, the norm of the
# gradient of **that sample's** loss `loss_fn(model(xᵢ), yᵢ)` with respect to all of the
# model's parameters together (`sqrt(Σ_p ‖∂lossᵢ/∂p‖²)`). Use `functional_call` and
# `vmap(grad(...))`, not a Python loop over the samples (the check counts how often the
# model runs), and leave the model's `.grad` alone.


# %%
def per_sample_grad_norms(model, x, y, loss_fn):
    raise NotImplementedError("19.2: one gradient norm per sample, with vmap(grad(...))")


# %%
check_exercise("19.2", per_sample_grad_norms)
