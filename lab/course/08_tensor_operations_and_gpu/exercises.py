# %% [markdown]
# # 08 · Exercises: broadcasting and batched products
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("08.1")` shows the next hint. From a terminal: `lab check 08`.

# %%
import torch

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 08.1 · All pairwise squared distances, without a loop
#
# `a` is `(n, d)`, `b` is `(m, d)`. Return the `(n, m)` matrix of `‖a[i] − b[j]‖²`. The
# rule: by broadcasting — no Python loop (the check counts the operations for a small and a
# big input), no `torch.cdist`.


# %%
def pairwise_sq_dists(a, b):
    raise NotImplementedError("08.1: return the (n, m) matrix")


# %%
check_exercise("08.1", pairwise_sq_dists)

# %% [markdown]
# ## 08.2 · A batch of matrix-vector products
#
# `A` is `(B, n, n)`, `x` is `(B, n)`. Return the `(B, n)` tensor whose row `k` is
# `A[k] @ x[k]`. The rule: without a Python loop over the batch.


# %%
def batched_matvec(A, x):
    raise NotImplementedError("08.2: return the (B, n) products")


# %%
check_exercise("08.2", batched_matvec)
