# %% [markdown]
# # 05 · Exercises: Jacobians and second derivatives
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("05.1")` shows the next hint. From a terminal: `lab check 05`.

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 05.1 · One row of a Jacobian, with one backward pass
#
# `f` maps a vector `x` to a vector `y`. Return row `i` of its Jacobian, dyᵢ/dx. The rule:
# a single vector-Jacobian product — one backward pass (`torch.autograd.grad` with
# `grad_outputs`), not the whole Jacobian (`jacobian`, `jacrev`) to read one row of it.
# Leave the caller's `x` as it was.


# %%
def jacobian_row(f, x, i):
    raise NotImplementedError("05.1: return row i of the Jacobian of f at x")


# %%
check_exercise("05.1", jacobian_row)

# %% [markdown]
# ## 05.2 · A second derivative
#
# `f` works elementwise (like `torch.sin`). Return d²f/dx² at every element of `x`. The
# rule: autograd differentiates twice (no finite differences); leave the caller's `x` as it
# was.


# %%
def second_derivative(f, x):
    raise NotImplementedError("05.2: return d²f/dx² at x")


# %%
check_exercise("05.2", second_derivative)
