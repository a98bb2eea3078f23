"""One rank of lesson 16. torchrun starts this once per process and gives it RANK, WORLD_SIZE,
LOCAL_RANK and a rendezvous; on one machine::

    torchrun --standalone --nproc-per-node 2 -m lab.lessons.ddp.worker --out runs/ddp

Each rank checks the lesson's claims in float64 against a single-process oracle, trains a few
steps logging to TensorBoard under ``<out>/rank<k>`` (so all ranks' curves overlay), writes
``<out>/rank<k>/result.json`` and exits 1 if any claim failed. CPU processes talk over gloo;
with ``--device cuda`` each process takes the GPU numbered by its LOCAL_RANK and talks NCCL.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lab.lessons.ddp import checks

BATCHES_PER_EPOCH = 4


def at_least_one(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One rank of lesson 16 (start it with torchrun).")
    parser.add_argument(
        "--out", type=Path, required=True, help="run folder; rank k logs in rank<k>"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cuda: a GPU per process, NCCL; cpu: gloo (default: auto)",
    )
    parser.add_argument("--batch", type=int, default=24, help="global batch (default: 24)")
    parser.add_argument(
        "--steps", type=at_least_one, default=20, help="training steps (default: 20)"
    )
    parser.add_argument("--accum", type=int, default=2, help="no_sync micro-batches (default: 2)")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default: 0.1)")
    parser.add_argument(
        "--bucket-cap-mb",
        type=float,
        default=1e-4,
        help="DDP bucket size limit in MiB (default: 1e-4, about a bucket per layer)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60,
        help="seconds a collective waits for a peer (default: 60)",
    )
    parser.add_argument(
        "--kill-rank",
        type=int,
        default=-1,
        help="this rank SIGKILLs itself halfway through training (default: -1: none)",
    )
    parser.add_argument("--dry-run", action="store_true", help="the checks and one training step")
    return parser.parse_args(argv)


def say(rank: int, text: str) -> None:
    # one write per line: ranks share torchrun's pipe, and short writes do not interleave
    sys.stdout.write(f"[rank {rank}] {text}\n")
    sys.stdout.flush()


class Claims:
    """This rank's verdicts, printed as they are made and reported in result.json."""

    def __init__(self, rank: int) -> None:
        self.rank, self.items = rank, []

    def __call__(self, ok: bool, claim: str, detail: str = "") -> None:
        self.items.append({"claim": claim, "ok": bool(ok), "detail": detail})
        say(self.rank, f"{'✓' if ok else '✗'} {claim}" + (f"  ({detail})" if detail else ""))


def pick_device(choice: str, local_rank: int) -> tuple[torch.device, str]:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), "gloo"
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise SystemExit(
            f"local rank {local_rank} has no GPU: {count} visible; start at most {count} "
            "processes per node (--nproc-per-node), or use --device cpu"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank), "nccl"


def check_gradients(ddp, model, x, y, rank, world, accum, claim: Claims) -> list:
    recorder = checks.BucketRecorder(ddp)
    oracle = checks.full_batch_gradients(model, x, y)
    got = checks.ddp_gradients(ddp, x, y, rank, world)
    claim(
        checks.close(got, oracle),
        "DDP's averaged gradient equals the one-process gradient of the whole batch",
        f"max |diff| {checks.max_difference(got, oracle):.1e}",
    )
    # Plain autograd on this rank's shard, gathered from every rank by another collective and
    # averaged here: what DDP's all-reduce must have left in .grad — and, with several ranks,
    # not this rank's own gradient.
    mine = checks.full_batch_gradients(
        model, checks.shard(x, rank, world), checks.shard(y, rank, world)
    )
    everyone = checks.gather([g.cpu() for g in mine])
    mean = [torch.stack(grads).mean(dim=0) for grads in zip(*everyone, strict=True)]
    got_here, mine_here = [g.cpu() for g in got], [g.cpu() for g in mine]
    claim(
        checks.close(got_here, mean) and (world == 1 or not checks.close(got_here, mine_here)),
        "DDP's .grad is the mean of every rank's own shard gradient (gathered), not this rank's",
        f"max |diff| {checks.max_difference(got_here, mean):.1e}; "
        f"from this rank's own {checks.max_difference(got_here, mine_here):.1e}",
    )
    recorder.clear()
    counts: list[int] = []  # all-reduces launched so far, after each micro-batch
    accumulated = checks.no_sync_gradients(
        ddp, x, y, rank, world, accum, after_each=lambda: counts.append(recorder.all_reduces())
    )
    claim(
        checks.close(accumulated, oracle),
        f"{accum} micro-batches, all but the last under no_sync(), equal one big step",
        f"max |diff| {checks.max_difference(accumulated, oracle):.1e}",
    )
    launched = [b - a for a, b in zip([0, *counts], counts, strict=False)]
    claim(
        all(n == 0 for n in launched[:-1]) and launched[-1] > 0,
        "no all-reduce inside no_sync(); the last micro-batch's backward all-reduced",
        f"all-reduces per micro-batch {launched}",
    )
    recorder.clear()  # buckets were rebuilt after the first backward, in gradient-ready order
    checks.ddp_gradients(ddp, x, y, rank, world)
    claim(
        checks.overlaps(recorder.events),
        "a bucket's all-reduce was launched before backward() had all gradients (overlap)",
        f"{recorder.all_reduces()} buckets",
    )
    recorder.recording = False
    return recorder.events


def check_sampler(n: int, rank: int, world: int, claim: Claims) -> dict:
    epoch0 = checks.gather(checks.sampler_indices(n, rank, world, epoch=0))
    flat = [i for shard in epoch0 for i in shard]
    claim(
        len(set(flat)) == len(flat) == n,
        "DistributedSampler: the ranks' shards are disjoint and cover the dataset",
        f"rank {rank} got {len(epoch0[rank])} of {n}",
    )
    epoch1 = checks.sampler_indices(n, rank, world, epoch=1)
    claim(
        [epoch0[rank], epoch1] == [checks.shard_by_hand(n, rank, world, e) for e in (0, 1)],
        "this rank's shard is every WORLD_SIZE-th index, from its rank, of the (seed + epoch) "
        "shuffle, worked out by hand for epochs 0 and 1",
    )
    passes = checks.sampler_passes(n, rank, world)  # one sampler, three epochs
    claim(
        passes["second"] == passes["first"] == epoch0[rank]
        and passes["after_set_epoch_1"] == epoch1 != epoch0[rank],
        "without set_epoch a sampler's second epoch repeats its first; set_epoch(1) reshuffles",
    )
    return {"epoch0": epoch0[rank], "epoch1": epoch1}


def train(ddp, x, y, args, rank, world, writer, claim: Claims) -> tuple[list, list]:
    n, share = len(x), args.batch // world
    data = TensorDataset(x, y, torch.arange(n, device=x.device))  # each sample with its index
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, seed=0)
    loader = DataLoader(data, batch_size=share, sampler=sampler)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr)
    steps = 1 if args.dry_run else args.steps
    # The first step, by hand: the global batch is every rank's first share of epoch 0's
    # shuffle; one plain SGD step on its mean loss, from the starting weights.
    first = [i for r in range(world) for i in checks.shard_by_hand(n, r, world, 0)[:share]]
    start = [p.detach().clone() for p in ddp.module.parameters()]
    gradient = checks.full_batch_gradients(ddp.module, x[first], y[first])
    first_step = [p - args.lr * g for p, g in zip(start, gradient, strict=True)]
    losses, global_losses, step, epoch, trained = [], [], 0, 0, []
    while step < steps:
        sampler.set_epoch(epoch)  # a fresh shuffle per epoch, the same one on every rank
        trained.append([])
        for xb, yb, ib in loader:
            if step == steps // 2 and rank == args.kill_rank:
                say(rank, f"killing myself (SIGKILL) at step {step}, as --kill-rank asked")
                os.kill(os.getpid(), signal.SIGKILL)
            optimizer.zero_grad(set_to_none=True)
            loss = checks.loss_fn(ddp(xb), yb)
            loss.backward()
            optimizer.step()
            trained[-1] += ib.tolist()
            if step == 0:
                after_first = [p.detach().clone() for p in ddp.module.parameters()]
            mean = loss.detach().clone()
            dist.all_reduce(mean)  # the global batch's loss: the average of the shards' means
            grad_norm = torch.cat([p.grad.flatten() for p in ddp.parameters()]).norm()
            writer.add_scalar("loss/shard", loss.item(), step)
            writer.add_scalar("loss/global", mean.item() / world, step)
            writer.add_scalar("grad_norm", grad_norm.item(), step)
            losses.append(loss.item())
            global_losses.append(mean.item() / world)
            step += 1
            if step == steps:
                break
        epoch += 1
    claim(
        checks.close(after_first, first_step),
        "the first step moved every weight by -lr × the gradient of the global batch (all "
        "ranks' first batches, by hand)",
        f"max |diff| {checks.max_difference(after_first, first_step):.1e}",
    )
    claim(
        all(
            indices == checks.shard_by_hand(n, rank, world, e)[: len(indices)]
            for e, indices in enumerate(trained)
        )
        and checks.epochs_covered(checks.gather(trained), n),
        "in training each rank drew its own shard of each epoch's shuffle (by hand): no sample "
        "twice in an epoch, a finished epoch covers them all",
        f"epochs {[len(indices) for indices in trained]} samples",
    )
    flat = torch.nn.utils.parameters_to_vector(ddp.parameters()).detach().cpu()
    spread = max((other - flat).abs().max().item() for other in checks.gather(flat))
    claim(spread == 0.0, f"after {steps} steps every rank holds the same parameters")
    return losses, global_losses


def run_rank(args, rank: int, world: int, device: torch.device, backend: str) -> dict:
    from torch.utils.tensorboard import SummaryWriter

    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} does not split evenly over {world} processes")
    claim = Claims(rank)
    model = checks.make_model(seed=0, device=device)
    ddp = DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        bucket_cap_mb=args.bucket_cap_mb,
    )
    say(rank, f"world={world} backend={backend} device={device} shard={args.batch // world}")
    xb, yb = checks.make_data(args.batch, seed=1, device=device)  # the lesson's batch
    events = check_gradients(ddp, model, xb, yb, rank, world, args.accum, claim)
    x, y = checks.make_data(args.batch * BATCHES_PER_EPOCH, seed=2, device=device)
    shards = check_sampler(len(x), rank, world, claim)
    grads = [g.cpu().flatten().tolist() for g in checks.gradients(model)]
    writer = SummaryWriter(log_dir=str(args.out / f"rank{rank}"), flush_secs=2)
    try:
        losses, global_losses = train(ddp, x, y, args, rank, world, writer, claim)
    finally:
        writer.close()
    return {
        "rank": rank,
        "world": world,
        "backend": backend,
        "device": str(device),
        "claims": claim.items,
        "timeline": events,
        "sampler": shards,
        "ddp_grads": grads,
        "losses": losses,
        "global_losses": global_losses,
    }


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(data), encoding="utf-8")
    partial.replace(path)  # a reader never sees half a file


def lost_peer(error: RuntimeError) -> bool:
    """A collective that failed because a peer died or stayed silent past --timeout (gloo
    reports it from inside backward() as a plain RuntimeError)."""
    text = str(error)
    signs = ("Connection reset", "Connection closed", "Timed out", "timed out", "NCCL error")
    return isinstance(error, dist.DistError) or any(sign in text for sign in signs)


def main(argv=None) -> int:
    args = parse_args(argv)
    if "RANK" not in os.environ:
        print(
            "run this under torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK), e.g. "
            "`torchrun --standalone --nproc-per-node 2 -m lab.lessons.ddp.worker --out DIR`",
            file=sys.stderr,
        )
        return 2
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device, backend = pick_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout))
    try:
        result = run_rank(args, rank, world, device, backend)
        # DDP's reducer (in reference cycles through its hooks) goes before its process group,
        # or its threads die with std::terminate at exit; and nobody closes its connections
        # while a peer may still be reading its last bytes (gloo aborts the reader): leave
        # together.
        gc.collect()
        dist.barrier()
    except RuntimeError as error:
        if not lost_peer(error):
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        say(rank, f"stopped: a collective failed, another rank died or timed out ({first})")
        return 1
    finally:
        dist.destroy_process_group()
    write_json(args.out / f"rank{rank}" / "result.json", result)
    return 0 if all(item["ok"] for item in result["claims"]) else 1


if __name__ == "__main__":
    sys.exit(main())
