"""Lesson 18: what backward nodes save, the version counter and in-place changes (views,
mark_dirty), saved_tensors_hooks counting bytes exactly, save_on_cpu and checkpointing."""

from __future__ import annotations

import textwrap

import pytest
import torch
from support import answers
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_image_sizes, read_scalars, single_run_dir
from torch import nn

from lab.exercises.checking import PASSED, evaluate

F64 = torch.float64
lesson = definitions("18")

# Slips the lesson's own checks must catch.
MUTATIONS = [
    # the saved tensor is not changed in place after all: no error to explain
    ("    y.add_(1)\n", "    y = y + 1\n"),
    # a Function that changes its input in place without telling autograd
    ("        ctx.mark_dirty(x)\n", ""),
    # a counter that counts elements, not bytes
    ('"bytes": tensor.nbytes', '"bytes": tensor.numel()'),
    # a hook that leaks: it keeps every tensor it saw with its log entry
    ('"parameter": parameter}', '"parameter": parameter, "tensor": tensor}'),
    # a checkpoint that changes gradients: the recomputation draws new dropout masks
    (
        "checkpoint(self.block, x, use_reentrant=False)",
        "checkpoint(self.block, x, use_reentrant=False, preserve_rng_state=False)",
    ),
    # no checkpoint at all: same gradients, nothing saved
    ("return checkpoint(self.block, x, use_reentrant=False)", "return self.block(x)"),
    # the per-node count in elements, not bytes: the inspector's bytes no longer match it
    ("packed.append(s.nbytes)", "packed.append(s.numel())"),
    # a count that keeps only the first tensor each node saves (the second product saves two)
    ("counted[out.grad_fn] = sum(packed)", "counted[out.grad_fn] = packed[0] if packed else 0"),
]
SMALL = ("--blocks", "2", "--width", "8", "--batch", "3", "--repeats", "1")


def test_saved_tensors_are_what_each_derivative_needs():
    x = torch.randn(3, dtype=F64, requires_grad=True)
    w = torch.randn(3, dtype=F64, requires_grad=True)
    assert set(lesson.saved_tensors((x * w).grad_fn)) == {"_saved_self", "_saved_other"}
    assert lesson.saved_tensors((x + w).grad_fn) == {}
    assert set(lesson.saved_tensors(torch.sigmoid(x).grad_fn)) == {"_saved_result"}
    assert lesson.saved_tensors((x.sin()).grad_fn)["_saved_self"] is x
    assert "freed" in lesson.read_after_backward(x * w)


def test_versions_count_in_place_operations_shared_with_views():
    assert lesson.versions() == [
        ("created", 0, 0),
        ("base.add_(1)", 1, 1),
        ("base[0] = 5", 2, 2),
        ("view.mul_(2)", 3, 3),
    ]


def test_in_place_change_of_a_saved_tensor_is_refused_and_of_an_unsaved_one_allowed():
    assert "is at version 1; expected version 0" in lesson.in_place_after_save()
    x = torch.tensor([0.5, -1.0, 2.0], dtype=F64, requires_grad=True)
    (want,) = torch.autograd.grad((2 * (x + 1)).sum(), x)
    assert torch.equal(lesson.in_place_unsaved(), want)


def test_in_place_on_a_view_routes_the_gradient_through_copyslices():
    name, grad = lesson.scale_a_slice()
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64, requires_grad=True)
    (want,) = torch.autograd.grad(torch.cat([x[:1], 3 * x[1:]]).sum(), x)
    assert name == "CopySlices" and torch.equal(grad, want)


def test_mark_dirty_gives_the_true_gradient_and_its_absence_a_stale_one():
    name, grad = lesson.through_the_changed_input(lesson.ScaleInPlace)
    assert name == "ScaleInPlaceBackward" and grad.tolist() == [3.0, 3.0, 3.0]
    name, grad = lesson.through_the_changed_input(lesson.ScaleInPlaceUntold)
    assert name == "CloneBackward0" and grad.tolist() == [1.0, 1.0, 1.0]
    assert "leaf Variable" in lesson.on_a_leaf(lesson.ScaleInPlace)
    assert lesson.on_a_leaf(lesson.ScaleInPlaceUntold) is None


@pytest.mark.parametrize(("blocks", "width", "batch"), [(1, 4, 2), (3, 8, 5)])
def test_saved_bytes_equal_the_hand_count_and_the_graph_walk(blocks, width, batch):
    model = lesson.make_model(blocks, width, dropout=0.0, seed=1)
    x = lesson.model_input(batch, width, seed=1)
    saved = lesson.SavedBytes(model)
    lesson.training_step(model, x, 0, saved)
    # by hand, float64: Linear saves its input (and its weight, unless the input is the data),
    # GELU its input; the walk counts the same tensors through the graph instead of hooks
    kinds = saved.total("kind")
    assert kinds["Linear"] == 8 * blocks * batch * (width + 4 * width)
    assert kinds["GELU"] == 8 * blocks * batch * 4 * width
    assert saved.total(parameter=True) == 8 * (2 * blocks - 1) * 4 * width * width
    torch.manual_seed(0)
    walked = lesson.saved_by_node_type(model(x))
    assert sum(walked.values()) == saved.total() + saved.total(parameter=True)
    assert set(saved.total("block")) == {str(n) for n in range(blocks)}
    assert not model._forward_pre_hooks and not model[0][0]._forward_pre_hooks  # removed


def test_the_leak_detector_sees_a_hook_that_keeps_tensors():
    model = lesson.make_model(2, 4, dropout=0.1, seed=0)
    x = lesson.model_input(3, 4, seed=0)
    kept = []
    leaky = torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t)
    assert lesson.activations_alive_after_backward(model, x, lesson.SavedBytes(model)) == 0
    assert lesson.activations_alive_after_backward(model, x, leaky) > 0


def test_save_on_cpu_leaves_gradients_unchanged():
    model = lesson.make_model(2, 8, dropout=0.2, seed=0)
    x = lesson.model_input(4, 8, seed=0)
    grads, freed = lesson.save_on_cpu_step(model, x)
    plain = lesson.training_step(model, x, lesson.SEED)
    assert freed is None  # measured on CUDA only
    assert all(torch.equal(a, b) for a, b in zip(grads, plain, strict=True))


def test_checkpointed_copy_recomputes_saves_inputs_only_and_keeps_gradients():
    model = lesson.make_model(3, 8, dropout=0.3, seed=2)
    x = lesson.model_input(5, 8, seed=2)
    light = lesson.checkpointed_copy(model)
    saved = lesson.SavedBytes(light)
    got = lesson.training_step(light, x, 7, saved)
    # the oracle: the plain model, by torch's autograd, with the same dropout masks
    torch.manual_seed(7)
    want = torch.autograd.grad(model(x).pow(2).mean(), list(model.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(got, want, strict=True))
    assert saved.total() == 3 * x.nbytes and saved.total(parameter=True) == 0
    calls = lesson.forward_calls(light, lambda: lesson.training_step(light, x, 7))
    assert calls == {"0": 2, "1": 2, "2": 2}


def test_cells_log_saved_bytes_and_draw_them(runs_dir):
    ns = run_lesson("18", *SMALL)
    assert len(ns.lesson.checks) == 22
    assert ns.lesson.figures == ["inspector/saved_bytes", "saved_bytes_per_block"]
    assert ns.x.shape == (3, 8)  # the settings took effect
    run_dir = single_run_dir(runs_dir, "18_saved_tensors_and_memory")
    scalars = read_scalars(run_dir)
    # per block, float64: plain = the inputs of Linear, GELU, Linear and the dropout mask
    # (float64 on the CPU); checkpointed = the block's input only
    assert scalars["saved_bytes/plain"] == [(0, 8 * 3 * (8 + 3 * 32)), (1, 8 * 3 * (8 + 3 * 32))]
    assert scalars["saved_bytes/checkpointed"] == [(0, 8 * 3 * 8), (1, 8 * 3 * 8)]
    assert scalars["checkpoint/time_ratio"][0][1] > 0
    assert read_image_sizes(run_dir)["saved_bytes_per_block"][0][1] > 300


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "no-in-place",
        "no-mark-dirty",
        "elements-not-bytes",
        "leaky-hook",
        "rng",
        "no-ckpt",
        "node-count-elements",
        "node-count-first-only",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("18", old, new, *SMALL)


# --- exercises -------------------------------------------------------------------------------

HOOKS = """
class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self):
        super().__init__(self.pack, self.unpack)
"""

# Typical wrong answers to 18's exercises, and what the check must say about each.
WRONG = {
    "18.1": [
        (
            HOOKS
            + """
    @staticmethod
    def pack(tensor):
        return tensor

    @staticmethod
    def unpack(packed):
        return packed
""",
            "pack kept 240 bytes for a float64 tensor of 30 elements (8 bytes each): store a "
            "float16 (or bfloat16) copy, 2 bytes per element",
        ),
        (
            HOOKS
            + """
    @staticmethod
    def pack(tensor):
        return tensor.half() if tensor.is_floating_point() else tensor

    @staticmethod
    def unpack(packed):
        return packed
""",
            "unpack gave back float16 for a float64 tensor: convert back to the dtype it had",
        ),
        (
            HOOKS
            + """
    @staticmethod
    def pack(tensor):
        return tensor.half() if tensor.is_floating_point() else tensor

    @staticmethod
    def unpack(packed):
        return packed.double() if packed.is_floating_point() else packed
""",
            "unpack gave back float64 for a float32 tensor",
        ),
        (
            """
class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self):
        super().__init__(self.pack, self.unpack)

    def pack(self, tensor):
        self.dtype = tensor.dtype  # one dtype for every tensor: the last one packed
        return tensor.half() if tensor.is_floating_point() else tensor

    def unpack(self, packed):
        return packed.to(self.dtype)
""",
            "unpack gave back float32 for a float64 tensor: convert back to the dtype it had — "
            "keep that dtype in what pack returns (several tensors are packed before any",
        ),
        (
            HOOKS
            + """
    @staticmethod
    def pack(tensor):
        return tensor.dtype, tensor.half()

    @staticmethod
    def unpack(packed):
        dtype, tensor = packed
        return tensor.to(dtype)
""",
            "int64 tensor (the indices gather or max save) [0, 3, 2049, 70001] came back as "
            "[0, 3, 2048, ",
        ),
        (
            """
class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    kept = []

    def __init__(self):
        super().__init__(self.pack, self.unpack)

    def pack(self, tensor):
        self.kept.append(tensor)  # the original too, just in case
        if tensor.is_floating_point():
            return tensor.dtype, tensor.half()
        return None, tensor

    def unpack(self, packed):
        dtype, tensor = packed
        return tensor if dtype is None else tensor.to(dtype)
""",
            "4 of the 4 tensors pack received are still alive after backward: store nothing "
            "outside what pack returns",
        ),
        (
            """
class Box:  # a small box around the saved tensor: still its 8 bytes per element
    def __init__(self, tensor):
        self.tensor = tensor

class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self):
        super().__init__(Box, lambda box: box.tensor)
""",
            "pack kept 240 bytes for a float64 tensor of 30 elements (8 bytes each)",
        ),
        (
            HOOKS
            + """
    @staticmethod
    def pack(tensor):
        return lambda: tensor  # a closure holds the tensor as it is

    @staticmethod
    def unpack(packed):
        return packed()
""",
            "pack kept 240 bytes for a float64 tensor of 30 elements (8 bytes each)",
        ),
        (
            HOOKS
            + """
    @staticmethod
    def pack(tensor):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.to(torch.float16)
        return None, tensor

    @staticmethod
    def unpack(packed):
        raise NotImplementedError("18.1: give back a tensor of the original dtype")
""",
            "pack is written; unpack still raises NotImplementedError",
        ),
        (
            HOOKS
            + """
    @staticmethod
    def pack(tensor):  # int8 with a scale: 1 byte, too coarse
        if not tensor.is_floating_point():
            return None, tensor
        scale = tensor.abs().max() / 127
        return (tensor.dtype, scale), (tensor / scale).round().to(torch.int8)

    @staticmethod
    def unpack(packed):
        meta, data = packed
        return data if meta is None else (data.double() * meta[1]).to(meta[0])
""",
            "more than float16 or bfloat16 rounding (0.4 %)",
        ),
        (
            HOOKS
            + """
    @staticmethod
    def pack(tensor):
        packed = (tensor.dtype, tensor.half()) if tensor.is_floating_point() else (None, tensor)

    @staticmethod
    def unpack(packed):
        dtype, tensor = packed
        return tensor if dtype is None else tensor.to(dtype)
""",
            "pack returned None: return what unpack needs (a missing return?)",
        ),
    ],
    "18.2": [
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for start in range(0, len(blocks), size):
        x = checkpoint(nn.Sequential(*blocks[start:start + size]), x, use_reentrant=True)
    return x
""",
            "with use_reentrant=True (the old default) and an input that needs no gradient",
        ),
        (
            """
def checkpointed_segments(blocks, x, segments):
    with torch.no_grad():  # saves memory: nothing is recorded
        for block in blocks:
            x = block(x)
    return x
""",
            "the output is cut from the graph, so no gradient reaches the blocks: don't run "
            "them under torch.no_grad()",
        ),
        (
            """
def checkpointed_segments(blocks, x, segments):
    for block in blocks:
        x = block(x)
    return x
""",
            "the gradients are right, but nothing was checkpointed: the forward saved 10752 "
            "bytes of activations, as many as the plain blocks",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for start in range(0, len(blocks), size):
        segment = nn.Sequential(*blocks[start:start + size])
        x = checkpoint(segment, x, use_reentrant=False, preserve_rng_state=False)
    return x
""",
            "the gradients match without dropout but not with it: the recomputation drew "
            "other dropout masks",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for start in range(0, len(blocks), size):
        segment = nn.Sequential(*blocks[start:start + size])
        x = checkpoint(segment, x.detach(), use_reentrant=False)
    return x
""",
            "block(s) 0, 1, 2 got no gradient: the gradient stops where a segment's input is "
            "detached",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint_sequential

def checkpointed_segments(blocks, x, segments):
    return checkpoint_sequential(nn.Sequential(*blocks), segments, x, use_reentrant=False)
""",
            "block(s) 3, 4, 5 did not run again in backward: they ran outside checkpoint, so "
            "their activations were saved (5632 bytes in all) — checkpoint every segment, the "
            "last one too",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    return checkpoint(nn.Sequential(*blocks), x, use_reentrant=False)
""",
            "checkpoint recomputed the blocks in 1 segment(s) (0, 1, 2, 3, 4, 5), expected 2 "
            "segments of 3 blocks",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for start in range(0, len(blocks), size):
        segment = nn.Sequential(*blocks[start:start + size])
        segment(x)  # a look at the output first
        x = checkpoint(segment, x, use_reentrant=False)
    return x
""",
            "in the forward the blocks ran in the order 0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5, for "
            "6 blocks in 2 segments of 3: each block must run exactly once, in order",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for k in range(segments):
        group = blocks[k * size : (k + 1) * size]

        def run(t):  # reads `group` when called: in backward, that is the last segment
            for block in group:
                t = block(t)
            return t

        x = checkpoint(run, x, use_reentrant=False)
    return x
""",
            "in backward checkpoint recomputed the blocks 3, 4, 5, 3, 4, 5 instead of 3, 4, 5, "
            "0, 1, 2, for 6 blocks in 2 segments of 3: a segment ran other blocks",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for k in range(segments):  # k, not k * size: the segments overlap
        x = checkpoint(nn.Sequential(*blocks[k : k + size]), x, use_reentrant=False)
    return x
""",
            "in the forward the blocks ran in the order 0, 1, 2, 1, 2, 3, for 6 blocks in 2 "
            "segments of 3",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    for start in range(0, len(blocks), segments):  # `segments` taken as the segment size
        x = checkpoint(nn.Sequential(*blocks[start : start + segments]), x, use_reentrant=False)
    return x
""",
            "checkpoint recomputed the blocks in 3 segment(s) (0, 1; 2, 3; 4, 5), expected 2 "
            "segments of 3 blocks: `segments` is how many segments there are",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    x = x.detach().requires_grad_()  # so that the reentrant variant gives a gradient
    size = len(blocks) // segments
    for start in range(0, len(blocks), size):
        x = checkpoint(nn.Sequential(*blocks[start : start + size]), x, use_reentrant=True)
    return x
""",
            "got no gradient from torch.autograd.grad: with use_reentrant=True checkpoint runs "
            "its own backward inside",
        ),
        (
            """
from torch.utils.checkpoint import checkpoint

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for start in range(0, len(blocks), size):
        x = checkpoint(nn.Sequential(*blocks[start : start + size]), x)
    return x
""",
            "checkpoint without use_reentrant runs the reentrant variant",
        ),
    ],
}

# Correct answers unlike the reference solutions; each must pass.
RIGHT = {
    "18.1": [
        """
class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self):
        super().__init__(self.pack, self.unpack)

    def pack(self, tensor):  # bfloat16 keeps float32's range
        if not tensor.is_floating_point():
            return {"tensor": tensor}
        return {"tensor": tensor.to(torch.bfloat16), "dtype": tensor.dtype}

    def unpack(self, packed):
        return packed["tensor"].to(packed.get("dtype", packed["tensor"].dtype))
""",
        """
import numpy as np

class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self):
        super().__init__(self.pack, self.unpack)

    @staticmethod
    def pack(tensor):  # a float16 NumPy copy: 2 bytes per element too
        if tensor.is_floating_point():
            return tensor.dtype, tensor.detach().cpu().numpy().astype(np.float16)
        return None, tensor

    @staticmethod
    def unpack(packed):
        dtype, data = packed
        return data if dtype is None else torch.from_numpy(data).to(dtype)
""",
        """
class Packed:  # a small class instead of a tuple; always converts back with .to(dtype)
    def __init__(self, tensor):
        self.dtype = tensor.dtype
        self.data = tensor.half() if tensor.dtype in (torch.float32, torch.float64) else tensor

class HalfPrecisionSaves(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self):
        super().__init__(Packed, lambda packed: packed.data.to(packed.dtype))
""",
    ],
    "18.2": [
        """
import functools
from torch.utils.checkpoint import checkpoint

def run_blocks(blocks, x):
    for block in blocks:
        x = block(x)
    return x

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for k in range(segments):
        segment = functools.partial(run_blocks, blocks[k * size : (k + 1) * size])
        x = checkpoint(segment, x, use_reentrant=False, preserve_rng_state=True)
    return x
""",
        """
import torch.utils.checkpoint

def checkpointed_segments(blocks, x, segments):
    size = len(blocks) // segments
    for group in [blocks[i : i + size] for i in range(0, len(blocks), size)]:

        def run(t, group=group):  # bound now, not when backward calls it again
            for block in group:
                t = block(t)
            return t

        x = torch.utils.checkpoint.checkpoint(run, x, use_reentrant=False)
    return x
""",
    ],
}


@pytest.mark.parametrize(("key", "source"), answers.cases(RIGHT))
def test_a_different_correct_answer_passes_in_the_notebook_and_lab_check(key, source, tmp_path):
    in_cell, from_file = answers.verdicts(key, source, tmp_path)
    assert in_cell.status == from_file.status == PASSED, (in_cell.message, from_file.message)


def test_checking_18_2_leaves_the_learners_random_state_alone():
    namespace = {"torch": torch, "nn": nn}
    exec(textwrap.dedent(RIGHT["18.2"][0]), namespace)  # noqa: S102 - a correct answer
    torch.manual_seed(123)
    before = torch.get_rng_state()
    assert evaluate("18.2", namespace["checkpointed_segments"]).status == PASSED
    assert torch.equal(torch.get_rng_state(), before)
