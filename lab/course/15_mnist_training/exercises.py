# %% [markdown]
# # 15 · Exercises: the training step
#
# This file is your copy: edit it freely, nothing overwrites it. Replace the
# `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then run
# the check cell under it: it says what is right, or the first thing that is wrong. Stuck?
# `hint("15.1")` shows the next hint. From a terminal: `lab check 15`.

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 15.1 · One training step
#
# Do one optimization step of `model` on the batch `(x, y)` with `optimizer` and `loss_fn`,
# and return the loss (as a float) the gradient was taken of. The parameters' `.grad` may
# still hold the previous step's gradient when this is called: this step's update must use
# this batch's gradient alone.


# %%
def train_step(model, optimizer, loss_fn, x, y):
    raise NotImplementedError("15.1: one step; return the loss as a float")


# %%
check_exercise("15.1", train_step)
