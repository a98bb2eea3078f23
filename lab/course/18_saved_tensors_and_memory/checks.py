"""18 · saved tensors and memory: the answers run on small models whose plain gradients torch
computes (float64); what the answer saves is weighed with the check's own saved-tensor hooks."""

from __future__ import annotations

import gc
import warnings
import weakref

import torch
from torch import nn

from lab.exercises.feedback import Problem, call, num, same

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
    """Bytes of every tensor in what a pack hook returned (tuples, lists, dicts looked into)."""
    if isinstance(packed, torch.Tensor):
        return packed.nbytes
    if isinstance(packed, tuple | list):
        return sum(stored_bytes(item) for item in packed)
    if isinstance(packed, dict):
        return sum(stored_bytes(item) for item in packed.values())
    return 0


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
    _round_trip_floats(pack, unpack)
    _round_trip_others(pack, unpack)
    ratio = _in_a_model(pack, unpack)
    return (
        f"floats saved in 2 bytes per element ({ratio:.1f}× fewer than float64) and given back "
        "in their dtype; indices and masks untouched; gradients within float16 rounding; "
        "nothing kept alive"
    )


def _round_trip_floats(pack, unpack) -> None:
    generator = torch.Generator().manual_seed(1)
    originals = [
        torch.randn(6, 5, generator=generator, dtype=dtype) for dtype in (F64, torch.float32)
    ]
    packed = [call(pack, t.clone(), who="pack") for t in originals]  # all packed, then unpacked
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
        same(original, back, "unpack(pack(t))", given=given, rtol=4e-3, atol=1e-6)


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
        x = torch.randn(8, 6, dtype=F64)
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
REENTRANT = "None of the inputs have requires_grad"


def _run(checkpointed_segments, pieces, x, segments):
    """(output, warnings raised, forward runs per block — counted on into backward)."""
    calls = [0] * len(pieces)
    for k, block in enumerate(pieces):
        block.register_forward_pre_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
    torch.manual_seed(SEED)  # the plain run draws its dropout masks from the same state
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call(checkpointed_segments, list(pieces), x, segments, who="checkpointed_segments")
    if not isinstance(out, torch.Tensor):
        raise Problem(f"checkpointed_segments should return a tensor, got {type(out).__name__}")
    return out, [str(w.message) for w in caught], calls


def _plain(pieces, x):
    torch.manual_seed(SEED)
    for block in pieces:
        x = block(x)
    return x


def _parameters(pieces) -> list[torch.Tensor]:
    return [p for block in pieces for p in block.parameters()]


def check_checkpointed_segments(checkpointed_segments) -> str:
    with torch.random.fork_rng(devices=[]):  # the learner's random state is left alone
        for segments in (2, 3):
            saved, plain_saved = _check_segments(checkpointed_segments, segments)
    return (
        f"gradients equal the plain blocks' (dropout included); {segments} segments save "
        f"{saved} bytes of activations instead of {plain_saved}, each block recomputed once"
    )


def _check_segments(checkpointed_segments, segments: int) -> tuple[int, int]:
    reference, pieces = blocks(6, 0.25), blocks(6, 0.25)
    x = torch.randn(4, 8, dtype=F64, generator=torch.Generator().manual_seed(2))
    plain = Weighing(_parameters(reference))
    with plain:
        want_out = _plain(reference, x)
    want = torch.autograd.grad(want_out.pow(2).sum(), _parameters(reference))
    weighing = Weighing(_parameters(pieces))
    with weighing:
        out, caught, calls = _run(checkpointed_segments, pieces, x, segments)
    if calls != [1] * len(calls):
        k = next(k for k, n in enumerate(calls) if n != 1)
        raise Problem(
            f"block {k}'s forward ran {calls[k]} times in the forward: run each segment once "
            "(checkpoint runs it once more, in backward)"
        )
    same(want_out.detach(), out, "the output", given=f"6 blocks in {segments} segments")
    if not out.requires_grad:
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
    _compare_gradients(checkpointed_segments, want, got, segments)
    _check_saved(weighing.activations, plain.activations, segments * x.nbytes, segments)
    if calls != [2] * len(calls):
        k = next(k for k, n in enumerate(calls) if n != 2)
        raise Problem(
            f"block {k}'s forward ran {calls[k]} times in all: checkpoint runs each segment "
            "once more in backward, so twice in all"
        )
    return weighing.activations, plain.activations


def _check_saved(saved: int, plain: int, inputs: int, segments: int) -> None:
    """What checkpointing must save: the inputs of the segments, nothing else."""
    if saved >= plain:
        raise Problem(
            f"the gradients are right, but nothing was checkpointed: the forward saved {saved} "
            "bytes of activations, as many as the plain blocks: run each segment through "
            "torch.utils.checkpoint.checkpoint(segment, x, use_reentrant=False)"
        )
    if saved > inputs:
        raise Problem(
            f"the forward saved {saved} bytes of activations, but {segments} checkpointed "
            f"segments keep only their inputs ({inputs} bytes): is a segment (the last one?) "
            "run outside checkpoint?"
        )
    if saved < inputs:
        raise Problem(
            f"the forward saved {saved} bytes, fewer than the inputs of {segments} segments "
            f"({inputs} bytes): cut the 6 blocks into exactly {segments} checkpointed segments"
        )


def _compare_gradients(checkpointed_segments, want, got, segments: int) -> None:
    missing = sorted({n // 4 for n, g in enumerate(got) if g is None})  # 4 parameters a block
    if missing:
        raise Problem(
            f"block(s) {', '.join(map(str, missing))} got no gradient: the gradient stops "
            "where a segment's input is detached — pass each segment's output on as it is"
        )
    for n, (w, g) in enumerate(zip(want, got, strict=True)):
        if not torch.allclose(w, g, rtol=1e-10, atol=1e-12):
            if _matches_without_dropout(checkpointed_segments, segments):
                raise Problem(
                    "the gradients match without dropout but not with it: the recomputation "
                    "drew other dropout masks — keep preserve_rng_state=True (the default) so "
                    "checkpoint replays the random state"
                )
            index = (w - g).abs().argmax()
            raise Problem(
                f"the gradient of block {n // 4}'s parameters differs (expected "
                f"{num(w.flatten()[index])}, got {num(g.flatten()[index])}) for 6 blocks in "
                f"{segments} segments"
            )


def _matches_without_dropout(checkpointed_segments, segments: int) -> bool:
    reference, pieces = blocks(6, 0.0), blocks(6, 0.0)
    x = torch.randn(4, 8, dtype=F64, generator=torch.Generator().manual_seed(2))
    want = torch.autograd.grad(_plain(reference, x).pow(2).sum(), _parameters(reference))
    out = _run(checkpointed_segments, pieces, x, segments)[0]
    got = torch.autograd.grad(out.pow(2).sum(), _parameters(pieces))
    return all(torch.allclose(w, g, rtol=1e-10, atol=1e-12) for w, g in zip(want, got, strict=True))


CHECKS = {
    "HalfPrecisionSaves": check_half_precision_saves,
    "checkpointed_segments": check_checkpointed_segments,
}
