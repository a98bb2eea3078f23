# %% [markdown]
# # 03 · Exercises: the computational graph
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("03.1")` shows the next hint. From a terminal: `lab check 03`.

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 03.1 · Every node of a backward graph
#
# Return the set of node type names (`"MulBackward0"`, `"AccumulateGrad"`, …) reachable from
# `t.grad_fn`. Try it: `graph_ops((torch.ones(2, requires_grad=True) * 3).sum())`.


# %%
def graph_ops(t):
    raise NotImplementedError("03.1: return the set of node names")


# %%
check_exercise("03.1", graph_ops)

# %% [markdown]
# ## 03.2 · A loss whose target gets no gradient
#
# `target` was computed by something that requires grad (say, a second network). Return the
# mean squared error between `pred` and `target` such that only `pred` receives a gradient.


# %%
def stop_gradient_mse(pred, target):
    raise NotImplementedError("03.2: return the loss")


# %%
check_exercise("03.2", stop_gradient_mse)
