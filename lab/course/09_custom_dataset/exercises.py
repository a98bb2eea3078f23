# %% [markdown]
# # 09 · Exercises: a Dataset of your own
#
# This file is your copy: edit it freely, nothing overwrites it. Replace the
# `raise NotImplementedError` lines in the stub cell with your code, run it (Shift+Enter), then
# run the check cell under it: it says what is right, or the first thing that is wrong. Stuck?
# `hint("09.1")` shows the next hint. From a terminal: `lab check 09`.

# %%
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from lab.exercises import check_exercise, hint

# %% [markdown]
# ## 09.1 · A Dataset over class folders
#
# `root` holds one folder per class (`root/ants/*.png`, `root/bees/*.png`, …). Item `i` is
# `(image, label)`: the image opened with PIL and converted to RGB (files on disk may be
# greyscale, palette or RGBA), passed through `transform` when one is given (and returned as
# the PIL image when not), and the label, the index of its class among the class names in
# sorted order. The check builds a small folder of its own to try your class on.


# %%
class FolderDataset(Dataset):
    def __init__(self, root, transform=None):
        raise NotImplementedError("09.1: find the images and their classes")

    def __len__(self):
        raise NotImplementedError("09.1: the number of images")

    def __getitem__(self, index):
        raise NotImplementedError("09.1: return (image, label)")


# %%
check_exercise("09.1", FolderDataset)
