# %% [markdown]
# # 18 · Exercises: saved tensors and memory
#
# This file is your copy: edit it freely, nothing overwrites it. For each exercise, replace
# the `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong and for
# which input. Stuck? `hint("18.1")` shows the next hint. From a terminal: `lab check 18`.

# %%
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 18.1 · Saved tensors in half precision
#
# Inside `with HalfPrecisionSaves(): loss = model(x)`, autograd should keep every
# floating-point tensor it saves as float16 (or bfloat16): 2 bytes per element instead of 4
# or 8. `pack(tensor)` returns whatever `unpack` will need; `unpack(packed)` gives back a
# tensor of the dtype the original had. Tensors that are not floating point (indices, masks)
# must come back exactly as they were. And keep nothing anywhere else: a tensor you hold on
# to keeps its memory after the graph is gone.


# %%
class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self):
        super().__init__(self.pack, self.unpack)

    @staticmethod
    def pack(tensor):
        raise NotImplementedError("18.1: return what unpack needs, floats stored in 2 bytes")

    @staticmethod
    def unpack(packed):
        raise NotImplementedError("18.1: give back a tensor of the original dtype")


# %%
check_exercise("18.1", HalfPrecisionSaves)

# %% [markdown]
# ## 18.2 · Checkpointing in segments
#
# `checkpointed_segments(blocks, x, segments)` runs the list of `blocks` on `x`, one after the
# other, in `segments` checkpointed segments of consecutive blocks (`segments` divides
# `len(blocks)`; every segment checkpointed, the last one too). The gradients must be the plain
# run's — the blocks contain dropout — and the forward must save only each segment's input.
# The input `x` is data: it does not require grad.


# %%
def checkpointed_segments(blocks, x, segments):
    raise NotImplementedError("18.2: run the blocks in checkpointed segments")


# %%
check_exercise("18.2", checkpointed_segments)
