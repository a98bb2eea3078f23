"""18 · saved tensors and memory: the answers run on small models whose plain gradients torch
computes (float64); what the answer saves is weighed with the check's own saved-tensor hooks."""

from __future__ import annotations

import functools
import gc
import types
import warnings
import weakref

import numpy as np
import torch
from torch import nn

from lab.exercises.feedback import NotAttempted, Problem, call, num, same, unseen, unseen_pick

F64 = torch.float64


def blocks(count: int, dropout: float, seed: int = 18) -> list[nn.Module]:
    """`count` blocks Linear(8, 16) → GELU → Dropout → Linear(16, 8), float64."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [
            nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Dropout(dropout), nn.Linear(16, 8)).to(
                F64
            )
            for _ in range(count)
        ]


def stored_bytes(packed) -> int:
    """Bytes of every tensor or array that what a pack hook returned holds: looked for in
    containers, in objects' attributes and in closures, each storage counted once."""
    storages, todo, seen = {}, [packed], set()
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, str | bytes | int | float | bool | type(None)):
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        elif isinstance(item, np.ndarray):
            storages[(item.__array_interface__["data"][0], item.nbytes)] = item.nbytes
        elif isinstance(item, tuple | list | set | frozenset):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, types.FunctionType):
            todo.extend(cell.cell_contents for cell in item.__closure__ or ())
        elif isinstance(item, functools.partial):
            todo.extend((item.func, item.args, item.keywords))
        elif not isinstance(item, type | types.ModuleType | types.BuiltinFunctionType):
            todo.extend(getattr(item, "__dict__", {}).values())  # an object of one's own
    return sum(storages.values())


class Weighing(torch.autograd.graph.saved_tensors_hooks):
    """The check's scale: around a pack/unpack pair (or none), weighs what each pack stores
    (activations; parameters apart) and keeps a weak reference to every tensor packed."""

    def __init__(self, parameters, pack=None, unpack=None):
        self.inner_pack = pack or (lambda tensor: tensor)
        self.inner_unpack = unpack or (lambda packed: packed)
        self.parameters = {p.untyped_storage().data_ptr() for p in parameters}
        self.activations = self.floats = self.float_bytes = 0
        self.refs = []
        super().__init__(self.pack, self.unpack)

    def pack(self, tensor):
        packed = call(self.inner_pack, tensor, who="pack")
        if tensor.untyped_storage().data_ptr() not in self.parameters:
            self.activations += stored_bytes(packed)
            self.refs.append(weakref.ref(tensor))
        if tensor.is_floating_point():
            self.floats += tensor.numel()
            self.float_bytes += stored_bytes(packed)
        return packed

    def unpack(self, packed):
        return call(self.inner_unpack, packed, who="unpack")


# --- 18.1 · saved tensors in half precision --------------------------------------------------


def check_half_precision_saves(HalfPrecisionSaves) -> str:
    hooks = call(HalfPrecisionSaves, who="HalfPrecisionSaves()")
    if not isinstance(hooks, torch.autograd.graph.saved_tensors_hooks):
        raise Problem(
            "HalfPrecisionSaves() should be a torch.autograd.graph.saved_tensors_hooks: keep "
            "the stub's class line and its __init__"
        )
    pack, unpack = hooks.pack_hook, hooks.unpack_hook
    _unfinished(pack, unpack)
    _round_trip_floats(pack, unpack)
    _round_trip_others(pack, unpack)
    ratio = _in_a_model(pack, unpack)
    return (
        f"floats saved in 2 bytes per element ({ratio:.1f}× fewer than float64) and given back "
        "in their dtype; indices and masks untouched; gradients within float16 rounding; "
        "nothing kept alive"
    )


def _unfinished(pack, unpack) -> None:
    """Both stubs untouched: not attempted; one of them: say which."""
    sample = torch.ones(2, dtype=F64)
    try:
        packed = pack(sample)
    except NotImplementedError:
        try:
            unpack(sample)
        except NotImplementedError:
            raise NotAttempted() from None
        except Exception:  # noqa: S110 - unpack is written: only pack is missing
            pass
        raise Problem("unpack is written; pack still raises NotImplementedError") from None
    except Exception:  # noqa: S110 - pack's own error is told where it is checked
        return
    try:
        unpack(packed)
    except NotImplementedError:
        raise Problem("pack is written; unpack still raises NotImplementedError") from None
    except Exception:  # noqa: S110 - told where it is checked
        pass


def _round_trip_floats(pack, unpack) -> None:
    generator = torch.Generator().manual_seed(1)
    originals = [
        unseen(torch.randn(6, 5, generator=generator, dtype=dtype))
        for dtype in (F64, torch.float32)
    ]
    packed = [call(pack, t.clone(), who="pack") for t in originals]  # all packed, then unpacked
    if any(stored is None for stored in packed):
        raise Problem("pack returned None: return what unpack needs (a missing return?)")
    for original, stored in zip(originals, packed, strict=True):
        kind = str(original.dtype).removeprefix("torch.")
        if stored_bytes(stored) > 2 * original.numel():
            raise Problem(
                f"pack kept {stored_bytes(stored)} bytes for a {kind} tensor of "
                f"{original.numel()} elements ({original.element_size()} bytes each): store a "
                "float16 (or bfloat16) copy, 2 bytes per element"
            )
    for original, stored in zip(originals, packed, strict=True):
        kind = str(original.dtype).removeprefix("torch.")
        back = call(unpack, stored, who="unpack")
        if not isinstance(back, torch.Tensor):
            raise Problem(f"unpack should give back a tensor, got {type(back).__name__}")
        if back.dtype != original.dtype:
            raise Problem(
                f"unpack gave back {str(back.dtype).removeprefix('torch.')} for a {kind} "
                f"tensor: convert back to the dtype it had — keep that dtype in what pack "
                "returns (several tensors are packed before any is unpacked)"
            )
        given = f"a {kind} tensor of shape {tuple(original.shape)}"
        try:
            same(original, back, "unpack(pack(t))", given=given, rtol=4e-3, atol=1e-6)
        except Problem as problem:
            raise Problem(
                f"{problem.message}: more than float16 or bfloat16 rounding (0.4 %) — store "
                "the float as it is in 2 bytes, tensor.to(torch.float16), nothing coarser"
            ) from None


def _round_trip_others(pack, unpack) -> None:
    for original, what in (
        (torch.tensor([0, 3, 2049, 70001]), "the indices gather or max save"),
        (torch.tensor([True, False, True]), "a mask"),
    ):
        back = call(unpack, call(pack, original.clone(), who="pack"), who="unpack")
        if (
            not isinstance(back, torch.Tensor)
            or back.dtype != original.dtype
            or not torch.equal(back, original)
        ):
            shown = back.tolist() if isinstance(back, torch.Tensor) else back
            raise Problem(
                f"{str(original.dtype).removeprefix('torch.')} tensor ({what}) "
                f"{original.tolist()} came back as {shown}: compress only floating-point "
                "tensors (tensor.is_floating_point()), give the others back as they are"
            )


def _model_step(layers, x, hooks=None) -> list[torch.Tensor]:
    with hooks or torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        hidden = torch.nn.functional.gelu(layers[0](x))
        top, _ = hidden.max(dim=1)  # saves int64 indices
        out = layers[1](hidden).pow(2).mean() + top.sum()
    grads = torch.autograd.grad(out, [p for layer in layers for p in layer.parameters()])
    return list(grads)


def _in_a_model(pack, unpack) -> float:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        layers = [nn.Linear(6, 32).to(F64), nn.Linear(32, 4).to(F64)]
        x = unseen(torch.randn(8, 6, dtype=F64))
    parameters = [p for layer in layers for p in layer.parameters()]
    plain = _model_step(layers, x)
    weighing = Weighing([*parameters, x], pack, unpack)
    compressed = _model_step(layers, x, weighing)
    for n, (want, got) in enumerate(zip(plain, compressed, strict=True)):
        error = float((got - want).norm() / want.norm())
        if got.dtype != want.dtype or error > 1e-2:
            raise Problem(
                f"with your hooks the gradient of parameter {n} is {error:.1%} off the plain "
                f"one ({got.dtype}): float16 rounding should cost well under 1 %"
            )
    gc.collect()
    alive = sum(ref() is not None for ref in weighing.refs)
    if alive:
        raise Problem(
            f"{alive} of the {len(weighing.refs)} tensors pack received are still alive after "
            "backward: store nothing outside what pack returns — a tensor kept elsewhere "
            "keeps its memory after the graph is gone"
        )
    if weighing.float_bytes > 2 * weighing.floats:
        raise Problem(
            f"in a model, pack stored {weighing.float_bytes} bytes for {weighing.floats} "
            "floating-point elements: 2 bytes per element at most"
        )
    return 8 * weighing.floats / max(1, weighing.float_bytes)


# --- 18.2 · checkpointing in segments ---------------------------------------------------------

SEED = 5
BLOCKS = (6, (2, 3))  # 6 blocks, in 2 segments then in 3
# for grading: other numbers of blocks and segments (sizes written out for 6 blocks fail there),
# never as many segments as blocks in one, where `segments` taken as the size would pass
OTHER_BLOCKS = [(8, (4, 2)), (10, (5, 2)), (12, (3, 4))]
REENTRANT = "None of the inputs have requires_grad"
IMPLICIT = "use_reentrant parameter should be passed explicitly"


def _run(checkpointed_segments, pieces, x, segments):
    """(output, warnings raised, the order the blocks' forwards ran in — the list grows on
    while backward recomputes them)."""
    order: list[int] = []
    for k, block in enumerate(pieces):
        block.register_forward_pre_hook(lambda *_, k=k: order.append(k))
    torch.manual_seed(SEED)  # the plain run draws its dropout masks from the same state
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call(
            checkpointed_segments, list(pieces), x.clone(), segments, who="checkpointed_segments"
        )
    if not isinstance(out, torch.Tensor):
        raise Problem(f"checkpointed_segments should return a tensor, got {type(out).__name__}")
    return out, [str(w.message) for w in caught], order


def _plain(pieces, x):
    torch.manual_seed(SEED)
    for block in pieces:
        x = block(x)
    return x


def _parameters(pieces) -> list[torch.Tensor]:
    return [p for block in pieces for p in block.parameters()]


def _listed(blocks) -> str:
    return ", ".join(map(str, blocks))


def check_checkpointed_segments(checkpointed_segments) -> str:
    count, segment_counts = unseen_pick(BLOCKS, OTHER_BLOCKS)
    with torch.random.fork_rng(devices=[]):  # the learner's random state is left alone
        for segments in segment_counts:
            saved, plain_saved = _check_segments(checkpointed_segments, count, segments)
    return (
        f"gradients equal the plain blocks' (dropout included); {segments} segments save "
        f"{saved} bytes of activations instead of {plain_saved}, each block recomputed once"
    )


def _data() -> torch.Tensor:
    """What runs through the blocks: a batch of 4."""
    return unseen(torch.randn(4, 8, dtype=F64, generator=torch.Generator().manual_seed(2)))


def _check_segments(checkpointed_segments, count: int, segments: int) -> tuple[int, int]:
    size = count // segments
    given = f"{count} blocks in {segments} segments of {size}"
    reference, pieces = blocks(count, 0.25), blocks(count, 0.25)
    x = _data()
    plain = Weighing(_parameters(reference))
    with plain:
        want_out = _plain(reference, x)
    want = torch.autograd.grad(want_out.pow(2).sum(), _parameters(reference))
    weighing = Weighing(_parameters(pieces))
    with weighing:
        out, caught, order = _run(checkpointed_segments, pieces, x, segments)
    forward = list(order)
    if forward != list(range(count)):
        raise Problem(
            f"in the forward the blocks ran in the order {_listed(forward)}, for {given}: each "
            f"block must run exactly once, in order — segments blocks[0:{size}], "
            f"blocks[{size}:{2 * size}], … (checkpoint itself runs a segment again, in backward)"
        )
    same(want_out.detach(), out, "the output", given=given)
    if not out.requires_grad:
        if any(IMPLICIT in message for message in caught):
            raise Problem(
                "checkpoint without use_reentrant runs the reentrant variant, and with an input "
                "that needs no gradient (the data) its output needs none either, so no gradient "
                "reaches the blocks: pass use_reentrant=False"
            )
        if any(REENTRANT in message for message in caught):
            raise Problem(
                "with use_reentrant=True (the old default) and an input that needs no gradient "
                "(the data), checkpoint's output needs none either, so no gradient reaches the "
                "blocks: pass use_reentrant=False"
            )
        raise Problem(
            "the output is cut from the graph, so no gradient reaches the blocks: don't run "
            "them under torch.no_grad() — checkpoint itself decides what to keep"
        )
    got = torch.autograd.grad(out.pow(2).sum(), _parameters(pieces), allow_unused=True)
    recomputed = order[len(forward) :]
    _check_missing(got, out)
    _check_recomputed_blocks(recomputed, count, size, given)
    _compare_gradients(checkpointed_segments, want, got, count, segments, given)
    _check_segments_recomputed(
        recomputed, count, segments, size, plain.activations, weighing.activations
    )
    _check_saved(weighing.activations, segments * x.nbytes, segments)
    return weighing.activations, plain.activations


def _check_missing(got, out: torch.Tensor) -> None:
    missing = sorted({n // 4 for n, g in enumerate(got) if g is None})  # 4 parameters a block
    if not missing:
        return
    if _reentrant_in(out.grad_fn):
        raise Problem(
            f"block(s) {_listed(missing)} got no gradient from torch.autograd.grad: with "
            "use_reentrant=True checkpoint runs its own backward inside, and its blocks' "
            "parameters are not in the graph that autograd.grad walks — pass "
            "use_reentrant=False (and leave x as it is: it is data)"
        )
    raise Problem(
        f"block(s) {_listed(missing)} got no gradient: the gradient stops where a segment's "
        "input is detached — pass each segment's output on as it is"
    )


def _reentrant_in(grad_fn) -> bool:
    """Whether the graph holds a reentrant checkpoint (CheckpointFunctionBackward)."""
    todo, seen = [grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "CheckpointFunction" in node.name():
            return True
        todo.extend(next_node for next_node, _ in node.next_functions)
    return False


def _check_recomputed_blocks(recomputed: list[int], count: int, size: int, given: str) -> None:
    """Each block recomputed at most once: a segment recomputes its own blocks, no others."""
    if len(recomputed) == len(set(recomputed)):
        return
    expected = [k for start in reversed(range(0, count, size)) for k in range(start, start + size)]
    raise Problem(
        f"in backward checkpoint recomputed the blocks {_listed(recomputed)} instead of "
        f"{_listed(expected)}, for {given}: a segment ran other blocks when checkpoint called "
        "it again — a function that reads a loop variable sees its last value by then; bind "
        "the blocks when you make it (nn.Sequential(*blocks[...]), functools.partial, or a "
        "default argument)"
    )


def _check_segments_recomputed(
    recomputed: list[int], count: int, segments: int, size: int, plain: int, saved: int
) -> None:
    """Every block recomputed once in backward, in `segments` runs of `size` blocks."""
    if not recomputed:
        raise Problem(
            f"the gradients are right, but nothing was checkpointed: the forward saved {saved} "
            f"bytes of activations{', as many as the plain blocks' if saved >= plain else ''}, "
            "and no block ran again in backward: run each segment through "
            "torch.utils.checkpoint.checkpoint(segment, x, use_reentrant=False)"
        )
    outside = [k for k in range(count) if k not in recomputed]
    if outside:
        raise Problem(
            f"block(s) {_listed(outside)} did not run again in backward: they ran outside "
            f"checkpoint, so their activations were saved ({saved} bytes in all) — checkpoint "
            "every segment, the last one too"
        )
    runs = [[recomputed[0]]]  # backward recomputes a segment at a time: consecutive blocks
    for k in recomputed[1:]:
        if k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    if len(runs) != segments or any(len(run) != size for run in runs):
        shown = "; ".join(_listed(run) for run in reversed(runs))
        raise Problem(
            f"checkpoint recomputed the blocks in {len(runs)} segment(s) ({shown}), expected "
            f"{segments} segments of {size} blocks: `segments` is how many segments there are, "
            "each of len(blocks) // segments consecutive blocks"
        )


def _check_saved(saved: int, inputs: int, segments: int) -> None:
    """What checkpointing must save: the inputs of the segments, nothing else."""
    if saved != inputs:
        raise Problem(
            f"the forward saved {saved} bytes of activations, but {segments} checkpointed "
            f"segments keep only their inputs ({inputs} bytes): keep nothing else for backward"
        )


def _compare_gradients(
    checkpointed_segments, want, got, count: int, segments: int, given: str
) -> None:
    for n, (w, g) in enumerate(zip(want, got, strict=True)):
        if not torch.allclose(w, g, rtol=1e-10, atol=1e-12):
            if _matches_without_dropout(checkpointed_segments, count, segments):
                raise Problem(
                    "the gradients match without dropout but not with it: the recomputation "
                    "drew other dropout masks — keep preserve_rng_state=True (the default) so "
                    "checkpoint replays the random state"
                )
            index = (w - g).abs().argmax()
            raise Problem(
                f"the gradient of block {n // 4}'s parameters differs (expected "
                f"{num(w.flatten()[index])}, got {num(g.flatten()[index])}) for {given}"
            )


def _matches_without_dropout(checkpointed_segments, count: int, segments: int) -> bool:
    reference, pieces = blocks(count, 0.0), blocks(count, 0.0)
    x = _data()
    want = torch.autograd.grad(_plain(reference, x).pow(2).sum(), _parameters(reference))
    out = _run(checkpointed_segments, pieces, x, segments)[0]
    got = torch.autograd.grad(out.pow(2).sum(), _parameters(pieces))
    return all(torch.allclose(w, g, rtol=1e-10, atol=1e-12) for w, g in zip(want, got, strict=True))


CHECKS = {
    "HalfPrecisionSaves": check_half_precision_saves,
    "checkpointed_segments": check_checkpointed_segments,
}
