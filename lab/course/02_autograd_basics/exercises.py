# %% [markdown]
# # 02 · Exercises: autograd basics
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("02.1")` shows the next hint. From a terminal: `lab check 02`.

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 02.1 · Let autograd compute dL/dw and dL/db
#
# Same model and loss as in 01: `L = mean((w * x + b - y) ** 2)`. The rule: this time
# autograd computes it — `requires_grad` and `backward()` — and you return `(dL/dw, dL/db)`.
# Leave the caller's `w` and `b` as they were.


# %%
def autograd_gradients(w, b, x, y):
    raise NotImplementedError("02.1: return (dL/dw, dL/db) computed by autograd")


# %%
check_exercise("02.1", autograd_gradients)

# %% [markdown]
# ## 02.2 · A training loop with autograd
#
# Start from `w = b = 0` (scalar tensors of `x.dtype`), take `steps` gradient-descent steps
# of size `lr`, and return the final `(w, b)`. The rule: each step's gradient comes from one
# `backward()`.


# %%
def fit_autograd(x, y, lr, steps):
    raise NotImplementedError("02.2: return (w, b) after `steps` steps")


# %%
check_exercise("02.2", fit_autograd)
