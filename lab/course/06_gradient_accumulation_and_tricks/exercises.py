# %% [markdown]
# # 06 · Exercises: gradient accumulation and clipping
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("06.1")` shows the next hint. From a terminal: `lab check 06`.

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 06.1 · Accumulation that equals the big batch
#
# Split `x`, `y` into micro-batches of the given `sizes` (uneven, e.g. `[5, 2, 1]`) and call
# `backward()` once per micro-batch so that afterwards every parameter's `.grad` equals the
# gradient of `loss_fn(model(x), y)` on the whole batch. `loss_fn` takes the mean. The rule:
# the model runs on each micro-batch and each gets its own `backward()` (that is the point:
# the big batch never has to fit in memory at once).


# %%
def accumulate_gradients(model, loss_fn, x, y, sizes):
    raise NotImplementedError("06.1: leave the big batch's gradient in the parameters")


# %%
check_exercise("06.1", accumulate_gradients)

# %% [markdown]
# ## 06.2 · Clipping by the total norm, by hand
#
# Like `torch.nn.utils.clip_grad_norm_`: if the norm of all the parameters' gradients taken
# together exceeds `max_norm`, scale them all so that it equals `max_norm`. Return the total
# norm measured before clipping. The rule: write it yourself — no `clip_grad_norm_` or
# `get_total_norm`.


# %%
def clip_total_norm(parameters, max_norm):
    raise NotImplementedError("06.2: clip the gradients, return the total norm")


# %%
check_exercise("06.2", clip_total_norm)
