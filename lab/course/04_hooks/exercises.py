# %% [markdown]
# # 04 · Exercises: hooks
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("04.1")` shows the next hint. From a terminal: `lab check 04`.

# %%
import torch
from torch import nn

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 04.1 · A hook that clips a gradient
#
# Return a tensor hook (for `t.register_hook`) that clips every value of the gradient to
# `[-limit, limit]`, for whatever `limit` it is made with. A hook must not change its
# argument in place: return the clipped gradient as a new tensor.


# %%
def make_clip_hook(limit):
    raise NotImplementedError("04.1: return a hook function")


# %%
check_exercise("04.1", make_clip_hook)

# %% [markdown]
# ## 04.2 · What each Linear layer outputs
#
# Run `model(x)` once and return `{layer name: mean of that layer's output}` for every
# `nn.Linear` in the model (names as `model.named_modules()` gives them), recorded by forward
# hooks. Leave the model as you found it: no hooks behind (the check counts them, global
# ones too).


# %%
def linear_output_means(model, x):
    raise NotImplementedError("04.2: return {name: output mean}")


# %%
check_exercise("04.2", linear_output_means)
