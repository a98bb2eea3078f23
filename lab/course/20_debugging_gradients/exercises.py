# %% [markdown]
# # 20 · Exercises: debugging gradients
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("20.1")` shows the next hint. From a terminal: `lab check 20`.

# %%
import torch
import torch.nn.functional as F

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 20.1 · A binary cross-entropy that cannot overflow
#
# The textbook loss of a logit `z` and a target `t` in [0, 1] is
# `−[t·log σ(z) + (1 − t)·log(1 − σ(z))]`. Written like that it gives `inf` (and `nan`
# gradients) once `|z|` is large: `σ(−800)` is exactly 0 in float64. Return the same loss,
# elementwise (no mean), stable for every `z`, with a finite gradient everywhere — without
# calling the built-in `binary_cross_entropy_with_logits`.


# %%
def naive_bce(z, t):  # the unstable version, to compare with
    s = torch.sigmoid(z)
    return -(t * torch.log(s) + (1 - t) * torch.log(1 - s))


def stable_bce(z, t):
    raise NotImplementedError("20.1: the same loss, stable for every z")


# %%
check_exercise("20.1", stable_bce)

# %% [markdown]
# ## 20.2 · A tanh that survives a second derivative
#
# Write a custom `autograd.Function` for `tanh` whose `backward` uses the saved **output**
# `y`, not the input (tanh′(x) = 1 − y²), and is itself differentiable, so that a second
# derivative through it is right: the check runs `gradcheck` and `gradgradcheck`.


# %%
class MyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        raise NotImplementedError("20.2: write forward")

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("20.2: write backward")


# %%
check_exercise("20.2", MyTanh)
