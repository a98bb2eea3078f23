# %% [markdown]
# # 13 · Exercises: transforms
#
# This file is your copy: edit it freely, nothing overwrites it. Replace the
# `raise NotImplementedError` in the stub cell with your code, run it (Shift+Enter), then run
# the check cell under it: it says what is right, or the first thing that is wrong. Stuck?
# `hint("13.1")` shows the next hint. From a terminal: `lab check 13`.

# %%
import torch
from torchvision import transforms

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 13.1 · A Normalize from measured statistics
#
# `images` is a `(N, C, H, W)` tensor of your data set. Return a `transforms.Normalize` whose
# mean and std are these images' own, per channel, so that after it each channel has mean 0
# and standard deviation 1 (measured in float32 or float64, either is fine).


# %%
def normalize_from_data(images):
    raise NotImplementedError("13.1: return transforms.Normalize(mean, std)")


# %%
check_exercise("13.1", normalize_from_data)
