import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self):
        super().__init__(self.pack, self.unpack)

    @staticmethod
    def pack(tensor):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.to(torch.float16)
        return None, tensor  # indices, masks: as they are

    @staticmethod
    def unpack(packed):
        dtype, tensor = packed
        return tensor if dtype is None else tensor.to(dtype)


def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for start in range(0, len(blocks), size):
        segment = nn.Sequential(*blocks[start : start + size])
        x = checkpoint(segment, x, use_reentrant=False)
    return x
