"""What every rank verifies, in float64, inside a process group that torchrun (or a test) set up.

The functions return plain data (gradients, event lists, index lists) so the worker can report
them and tests can compare them with the single-process oracle: autograd on the whole batch in
one process, no DistributedDataParallel involved.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.utils.data import DistributedSampler

F64 = torch.float64


def make_model(seed: int = 0, device: str | torch.device = "cpu") -> nn.Sequential:
    """Three layers, so backward() produces gradients one layer after another."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1))
    with torch.no_grad():  # every rank builds the same weights from the seed
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.to(device, F64)


def make_data(n: int, seed: int = 1, device: str | torch.device = "cpu"):
    """The same ``n`` samples on every rank (a stand-in for a dataset on shared storage)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator, dtype=F64)
    y = torch.sin(x.sum(dim=1, keepdim=True)) + 0.1 * torch.randn(n, 1, generator=generator)
    return x.to(device), y.to(device, F64)


def loss_fn(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(prediction, target)  # a MEAN over the samples


def gradients(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def full_batch_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list:
    """The oracle: one process, the whole batch, plain autograd (``.grad`` left untouched)."""
    return list(torch.autograd.grad(loss_fn(model(x), y), list(model.parameters())))


def shard(tensor: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s equal, contiguous share of a batch."""
    if tensor.shape[0] % world:
        raise ValueError(f"a batch of {tensor.shape[0]} does not split evenly over {world} ranks")
    return tensor.chunk(world)[rank]


def ddp_gradients(ddp, x: torch.Tensor, y: torch.Tensor, rank: int, world: int) -> list:
    """One DDP backward on this rank's shard; DDP all-reduces and averages during it."""
    ddp.zero_grad(set_to_none=True)
    loss_fn(ddp(shard(x, rank, world)), shard(y, rank, world)).backward()
    return gradients(ddp.module)


def no_sync_gradients(ddp, x, y, rank: int, world: int, accum: int, after_each=None) -> list:
    """This rank's shard in ``accum`` micro-batches: the first ones under ``no_sync()`` (local
    accumulation, no communication), the last one synchronizes. Each micro-batch loss is
    weighted by its share of the shard (lesson 06), so the sum is the shard's mean loss.
    ``after_each()`` is called after each micro-batch's backward."""
    ddp.zero_grad(set_to_none=True)
    x_local, y_local = shard(x, rank, world), shard(y, rank, world)
    pieces = list(zip(x_local.tensor_split(accum), y_local.tensor_split(accum), strict=True))
    for index, (xm, ym) in enumerate(pieces):
        last = index == len(pieces) - 1
        with nullcontext() if last else ddp.no_sync():
            (loss_fn(ddp(xm), ym) * (len(xm) / len(x_local))).backward()
        if after_each is not None:
            after_each()
    return gradients(ddp.module)


class BucketRecorder:
    """The order of events inside ``backward()``: a hook per parameter notes when its gradient
    is ready, and DDP's communication hook notes when a bucket's all-reduce is launched."""

    def __init__(self, ddp) -> None:
        self.events: list[tuple] = []
        self.recording = True  # the hooks stay (DDP keeps its comm hook); the notes can stop
        self._names = {p.data_ptr(): name for name, p in ddp.module.named_parameters()}
        for name, parameter in ddp.module.named_parameters():
            parameter.register_post_accumulate_grad_hook(
                lambda _p, name=name: self._note(("grad", name))
            )
        ddp.register_comm_hook(state=None, hook=self._all_reduce)

    def _all_reduce(self, group, bucket):
        names = [self._names.get(p.data_ptr(), "?") for p in bucket.parameters()]
        self._note(("all-reduce", bucket.index(), names))
        return default_hooks.allreduce_hook(group, bucket)  # average, as DDP does by default

    def _note(self, event: tuple) -> None:
        if self.recording:
            self.events.append(event)

    def clear(self) -> None:
        self.events.clear()

    def all_reduces(self) -> int:
        return sum(event[0] == "all-reduce" for event in self.events)


def overlaps(events: list[tuple]) -> bool:
    """True when the first bucket's all-reduce was launched before the gradient of some
    parameter outside that bucket was ready: communication started while backward() was
    still computing."""
    launches = [i for i, event in enumerate(events) if event[0] == "all-reduce"]
    if not launches:
        return False
    first = launches[0]
    in_bucket = set(events[first][2])
    return any(e[0] == "grad" and e[1] not in in_bucket for e in events[first + 1 :])


def sampler_indices(n: int, rank: int, world: int, epoch: int, seed: int = 0) -> list:
    """The sample indices DistributedSampler gives ``rank`` in ``epoch``."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def sampler_passes(n: int, rank: int, world: int, seed: int = 0) -> dict[str, list]:
    """Three epochs drawn from ONE sampler: two without ``set_epoch`` (a forgotten call), then
    one after ``set_epoch(1)``."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    first, second = list(sampler), list(sampler)
    sampler.set_epoch(1)
    return {"first": first, "second": second, "after_set_epoch_1": list(sampler)}


def shard_by_hand(n: int, rank: int, world: int, epoch: int, seed: int = 0) -> list[int]:
    """What DistributedSampler gives ``rank``, worked out without it: every rank shuffles
    ``range(n)`` with a generator seeded ``seed + epoch`` (the same order everywhere) and takes
    every ``world``-th index starting at its rank. ``n`` must split evenly (no padding)."""
    if n % world:
        raise ValueError(f"{n} samples do not split evenly over {world} ranks")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return order[rank::world]


def epochs_covered(per_rank: list[list[list[int]]], n: int) -> bool:
    """``per_rank[r][e]``: the indices rank ``r`` trained on in epoch ``e``. True when within
    each epoch no index comes twice (over all ranks) and each finished epoch (every rank drew
    its full share, ``n // world``) covers all ``n``."""
    world = len(per_rank)
    for epoch in range(max(len(epochs) for epochs in per_rank)):
        drawn = [i for epochs in per_rank for i in (epochs[epoch] if epoch < len(epochs) else [])]
        if len(set(drawn)) != len(drawn):
            return False
        finished = all(
            epoch < len(epochs) and len(epochs[epoch]) == n // world for epochs in per_rank
        )
        if finished and sorted(drawn) != list(range(n)):
            return False
    return True


def gather(obj) -> list:
    """``obj`` from every rank, in rank order."""
    found = [None] * dist.get_world_size()
    dist.all_gather_object(found, obj)
    return found


def max_difference(a: list, b: list) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def close(a: list, b: list) -> bool:
    """float64 equality up to summation order (all-reduce adds in its own order)."""
    return all(torch.allclose(x, y, rtol=1e-10, atol=1e-12) for x, y in zip(a, b, strict=True))
