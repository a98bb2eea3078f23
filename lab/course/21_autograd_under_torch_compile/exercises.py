# %% [markdown]
# # 21 · Exercises: autograd under torch.compile
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("21.1")` shows the next hint. From a terminal: `lab check 21`.
# (Each check compiles a few small functions: it takes a few seconds.)

# %%
import torch
import torch._dynamo
from functorch.compile import default_partition, make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 21.1 · A backend that reports the backward graph
#
# `fn(*inputs)` returns a scalar; some inputs require grad. Compile `fn` with `torch.compile`
# and a backend of your own, run it forward **and backward** once, and return the ops of the
# **backward** graph AOTAutograd built, in graph order: `str(node.target)` for each
# `call_function` node (`'aten.mm.default'`, `'aten.tanh_backward.default'`, …), as a list.
# Start each call with `torch._dynamo.reset()`, so that every call compiles afresh.


# %%
def backward_ops(fn, *inputs):
    raise NotImplementedError("21.1: compile fn, run backward, return the backward graph's ops")


# %%
check_exercise("21.1", backward_ops)

# %% [markdown]
# ## 21.2 · Predict what is saved for backward
#
# The forward graph hands the backward graph exactly what backward needs (with
# `default_partition`, the same tensors eager autograd saves). For each function below, with
# **both** `x` and `w` requiring grad, predict that set, in these names: `"x"`, `"w"` (an
# input), `"out"` (the function's result), `"sin(x)"` (the intermediate of `cos_of_sin`); an
# empty `set()` when nothing is saved. Reason from the derivatives: what does each op's
# backward need? Then check — and read the backward graphs to see why.

# %%
FUNCTIONS = {
    "sin": lambda x, w: torch.sin(x),
    "exp": lambda x, w: torch.exp(x),
    "relu": lambda x, w: torch.relu(x),
    "times_three": lambda x, w: 3 * x,
    "sum_of_both": lambda x, w: x + w,
    "product": lambda x, w: x * w,
    "cos_of_sin": lambda x, w: torch.cos(torch.sin(x)),
    "tanh_of_product": lambda x, w: torch.tanh(x * w),
}


# %%
def predicted_saves():
    raise NotImplementedError("21.2: return {function name: set of saved names} for FUNCTIONS")


# %%
check_exercise("21.2", predicted_saves)
