# %% [markdown]
# # 01 · Exercises: the gradient by hand
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("01.1")` shows the next hint. From a terminal: `lab check 01`.

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 01.1 · dL/dw and dL/db by the chain rule
#
# The model is `y_hat = w * x + b`, the loss `L = mean((y_hat - y) ** 2)`. Return
# `(dL/dw, dL/db)` as tensors. The rule: by hand, with the chain rule — no autograd (no
# `backward()`, no `torch.autograd`); the check compares your numbers with autograd's and
# notices a backward pass in your code.


# %%
def manual_gradients(w, b, x, y):
    raise NotImplementedError("01.1: return (dL/dw, dL/db)")


# %%
check_exercise("01.1", manual_gradients)

# %% [markdown]
# ## 01.2 · One step of gradient descent
#
# Return the new `(w, b)` after one step with learning rate `lr`, using your gradient from
# 01.1 (call `manual_gradients`, or write it again): by hand again, no autograd.


# %%
def descent_step(w, b, x, y, lr):
    raise NotImplementedError("01.2: return the new (w, b)")


# %%
check_exercise("01.2", descent_step)
