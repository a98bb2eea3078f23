# %% [markdown]
# # 07 · Exercises: custom autograd Functions
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("07.1")` shows the next hint. From a terminal: `lab check 07`.

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 07.1 · A sigmoid with its own backward
#
# Write `forward` (σ(x) = 1 / (1 + e⁻ˣ)) and `backward` of a custom `autograd.Function`.
# Save with `ctx.save_for_backward` what `backward` needs, and remember the chain rule:
# `backward` gets dL/dσ (`grad_output`) and returns dL/dx. `forward` must leave its input
# as it was (no in-place ops on `x`).


# %%
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        raise NotImplementedError("07.1: write forward")

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("07.1: write backward")


# %%
check_exercise("07.1", MySigmoid)

# %% [markdown]
# ## 07.2 · Two inputs: x · y + x
#
# `forward(ctx, x, y)` returns `x * y + x`; `backward` returns one gradient per input, in
# order, as a tuple: `(dL/dx, dL/dy)`.


# %%
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        raise NotImplementedError("07.2: write forward")

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("07.2: write backward")


# %%
check_exercise("07.2", MulAdd)
