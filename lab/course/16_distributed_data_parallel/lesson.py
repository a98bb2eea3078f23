# %% [markdown]
# # 16 · Gradients across processes: DistributedDataParallel with torchrun
#
# When one device is not enough, `torch.nn.parallel.DistributedDataParallel` (DDP) runs one
# copy of the model per process, gives each process its own shard of every batch, and makes
# all copies take the same step. How? It is an autograd story: DDP hooks into the moment each
# parameter's gradient is accumulated and **all-reduces** buckets of gradients while
# `backward()` is still running, so every process ends up holding the average.
#
# The cells first show, in this one process, what each rank will compute; then one cell starts
# the real thing with `torchrun` (N processes: gloo on CPUs, NCCL with one process per GPU)
# and prints what every rank reports under it. The last sections read those reports back.

# %% tags=["parameters"]
NPROC = "auto"  # processes: a number, "gpu" (one per visible GPU) or "auto" (gpu on CUDA, else 2)
BATCH = 24  # global batch, split evenly over the processes
ACCUM = 2  # micro-batches accumulated under no_sync() before the all-reduce
STEPS = 12  # training steps of the launched run, logged per rank
BUCKET_CAP_MB = 0.0001  # DDP bucket size limit in MiB (this tiny: about one bucket per layer)
TIMEOUT = 60  # seconds a rank waits in a collective for a silent peer before it gives up
KILL_RANK = -1  # try it: this rank kills itself halfway through training (-1: none)

# %%
import matplotlib.pyplot as plt
import torch
from torch.utils.data import DistributedSampler

from lab.lessons.ddp import checks
from lab.lessons.ddp.launch import BadProcessCount, launch, resolve_nproc, shown, torchrun_command
from lab.lessons.harness import check, open_lesson, show

lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## How many processes, talking how
#
# `torchrun --nproc-per-node N script.py` starts N copies of the script and tells each who it
# is through environment variables: `RANK` (0 … WORLD_SIZE−1 over all machines),
# `LOCAL_RANK` (its number on this machine) and `WORLD_SIZE`. Each copy then calls
# `torch.distributed.init_process_group(backend)`:
#
# - **CPU → gloo.** Any number of processes; they talk over TCP (here: loopback 127.0.0.1).
# - **GPU → NCCL.** One process per GPU: the process calls `torch.cuda.set_device(LOCAL_RANK)`
#   and wraps its model as `DistributedDataParallel(model, device_ids=[LOCAL_RANK])`. NCCL moves
#   gradients GPU to GPU (NVLink, PCIe, InfiniBand) without a trip through the CPU.
#
# `NPROC = "gpu"` means one process per visible GPU; a number larger than the GPUs present on
# CUDA is refused (two processes on one GPU would fight over it).


# %%
def plan(nproc_setting, device: torch.device, batch: int, accum: int) -> tuple[int, str]:
    """(processes, backend) for this machine, or a one-line error saying what to change."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    nproc = resolve_nproc(nproc_setting, device.type, gpus)
    ways = max(nproc, 2)  # the cells below simulate at least two ranks
    if batch % ways or batch // nproc < accum:
        raise BadProcessCount(
            f"--batch {batch} must split evenly over {ways} ranks with at least "
            f"--accum {accum} samples each; use a multiple of {ways * accum}"
        )
    return nproc, "nccl" if device.type == "cuda" else "gloo"


nproc, backend = plan(NPROC, device, BATCH, ACCUM)
ranks = max(nproc, 2)  # one rank would hide every mistake in the averaging: simulate two
print(f"NPROC={NPROC!r} -> {nproc} process(es), backend {backend}\n")
print("RANK  LOCAL_RANK  WORLD_SIZE  device     shard of the batch")
for rank in range(nproc):
    where = f"cuda:{rank}" if backend == "nccl" else "cpu"
    first, last = rank * BATCH // nproc, (rank + 1) * BATCH // nproc - 1
    print(f"{rank:>4}  {rank:>10}  {nproc:>10}  {where:<9}  samples {first}..{last}")

# %% [markdown]
# ## Each rank its own shard: `DistributedSampler`
#
# In a training loop the shards come from `DistributedSampler(dataset, num_replicas, rank)`:
# every rank shuffles the same way (same seed), then takes every `WORLD_SIZE`-th index starting
# at its rank, so the shards are disjoint and together cover the dataset. The shuffle is seeded
# with `seed + epoch` — and the epoch is whatever you last passed to `sampler.set_epoch(epoch)`.
# Forget to call it and every epoch replays epoch 0's order. The rule, worked out by hand
# (`torch.randperm` with a generator seeded `seed + epoch`, then `[rank::WORLD_SIZE]`), is
# `checks.shard_by_hand`. Here the simulated ranks (`NPROC` of them, at least two) share
# `BATCH` samples.


# %%
def shards_for_epoch(n: int, world: int, epoch: int, seed: int = 0) -> list[list[int]]:
    """What each of ``world`` ranks draws from a dataset of ``n`` samples in ``epoch``."""
    shards = []
    for rank in range(world):
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, seed=seed)
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
    return shards


epoch0, epoch1 = shards_for_epoch(BATCH, ranks, 0), shards_for_epoch(BATCH, ranks, 1)
for rank in range(ranks):
    print(f"rank {rank}: epoch 0 {epoch0[rank]}\n        epoch 1 {epoch1[rank]}")
everything = [i for shard in epoch0 for i in shard]
check(sorted(everything) == list(range(BATCH)), "the shards are disjoint and cover the dataset")
check(
    all(
        shards == [checks.shard_by_hand(BATCH, rank, ranks, epoch) for rank in range(ranks)]
        for epoch, shards in enumerate((epoch0, epoch1))
    ),
    "rank r's shard is every WORLD_SIZE-th index from r of the (seed + epoch) shuffle, by hand",
)
check(epoch0 != epoch1, "set_epoch gives each epoch its own shuffle")
forgetful = DistributedSampler(range(BATCH), num_replicas=ranks, rank=0, seed=0)
first_pass, second_pass = list(forgetful), list(forgetful)  # two epochs, no set_epoch
print(f"rank 0 without set_epoch: {first_pass}, then {second_pass}")
check(
    first_pass == second_pass == epoch0[0],
    "without set_epoch the same sampler's second epoch replays epoch 0's order",
)

# %% [markdown]
# ## Why the averaged gradient is the whole batch's
#
# The loss is a **mean** over the batch of B samples. Cut the batch into N equal shards of
# B/N: the mean over the batch is the mean of the N shard means,
#
# `L = (1/B) Σᵢ lᵢ = (1/N) Σᵣ Lᵣ`,  so  `∇L = (1/N) Σᵣ ∇Lᵣ`.
#
# Each rank computes `∇Lᵣ` on its shard; the all-reduce sums them over ranks and DDP divides
# by N. That is exactly one process's gradient of the whole batch — provided the shards are
# equal (a mean of unequal means is not the overall mean) and the loss is a mean (with a summed
# loss the average comes out N times too small). Here the N ranks are simulated in one process,
# and the whole batch's gradient comes from the mean squared error written out.


# %%
def shard_gradients(model, x: torch.Tensor, y: torch.Tensor, world: int) -> list[list]:
    """What each rank's backward() produces on its own shard, before any communication."""
    return [
        checks.full_batch_gradients(model, xs, ys)
        for xs, ys in zip(x.chunk(world), y.chunk(world), strict=True)
    ]


def all_reduce_mean(per_rank: list[list]) -> list:
    """What DDP leaves in every rank's .grad: the sum over ranks, divided by the world size."""
    return [torch.stack(grads).sum(dim=0) / len(per_rank) for grads in zip(*per_rank, strict=True)]


def whole_batch_gradients(model, x: torch.Tensor, y: torch.Tensor) -> list:
    """The oracle: one process, the whole batch, (1/B) Σ (f(x) - y)² by hand."""
    loss = ((model(x) - y) ** 2).sum() / len(x)
    return list(torch.autograd.grad(loss, list(model.parameters())))


model = checks.make_model(seed=0)
x, y = checks.make_data(BATCH, seed=1)
per_rank = shard_gradients(model, x, y, ranks)
averaged = all_reduce_mean(per_rank)
whole = whole_batch_gradients(model, x, y)
for rank, grads in enumerate(per_rank):
    print(f"rank {rank}: |∇L_r| of the first layer's weight = {grads[0].norm().item():.6f}")
print(f"average over ranks:                  {averaged[0].norm().item():.6f}")
print(f"one process, whole batch:            {whole[0].norm().item():.6f}")
check(checks.close(averaged, whole), "the mean of the shards' gradients is the whole batch's")

# %% [markdown]
# ## Accumulation under `no_sync()`
#
# Lesson 06: k micro-batches whose losses are weighted by their share of the batch accumulate
# the big batch's gradient. Under DDP each micro-batch's backward would all-reduce — wasted
# traffic, since only the sum matters. `with ddp.no_sync():` turns the hooks off, gradients
# accumulate locally, and the backward of the last micro-batch (outside `no_sync`) all-reduces
# the accumulated sum once. In one process, the accumulation half of that:


# %%
def accumulated_gradients(model, x: torch.Tensor, y: torch.Tensor, accum: int) -> list:
    """``accum`` micro-batches, each loss weighted by its share, summed into .grad."""
    model.zero_grad(set_to_none=True)
    for xm, ym in zip(x.tensor_split(accum), y.tensor_split(accum), strict=True):
        (checks.loss_fn(model(xm), ym) * (len(xm) / len(x))).backward()
    return checks.gradients(model)


mine_x, mine_y = x.chunk(ranks)[0], y.chunk(ranks)[0]
accumulated = accumulated_gradients(model, mine_x, mine_y, ACCUM)
gap = checks.max_difference(accumulated, per_rank[0])
print(f"rank 0's shard in {ACCUM} micro-batches: max |accumulated - one step| = {gap:.1e}")
check(checks.close(accumulated, per_rank[0]), f"{ACCUM} weighted micro-batches equal one step")

# %% [markdown]
# Equal micro-batches would hide a wrong weight (1/k is each one's share then): cut the shard
# into k pieces that cannot be equal, and the weights `len(piece) / len(shard)` must still
# give the one-step gradient.

# %%
uneven = next((k for k in range(2, len(mine_x)) if len(mine_x) % k), None)
if uneven:
    sizes = [len(piece) for piece in mine_x.tensor_split(uneven)]
    accumulated = accumulated_gradients(model, mine_x, mine_y, uneven)
    print(f"{uneven} micro-batches of {sizes} samples")
    check(
        checks.close(accumulated, per_rank[0]),
        "micro-batches of unequal sizes, each weighted by its share, equal one step",
    )
else:
    print(f"a shard of {len(mine_x)} samples cannot be cut unevenly")

# %% [markdown]
# ## When is a gradient ready? The hook view
#
# `backward()` walks the graph from the loss back to the inputs, so the **last** layer's
# gradients are ready first and the first layer's last. DDP registers a hook on each
# parameter's gradient accumulation; when all parameters of a bucket are ready it launches
# that bucket's all-reduce right away, while autograd keeps computing the earlier layers —
# communication overlaps computation. (After the first step DDP rebuilds its buckets in the
# order the gradients actually arrived.) Here the same kind of hook, in one process:


# %%
def ready_order(model, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """Parameter names in the order backward() finishes their gradients."""
    order: list[str] = []
    handles = [
        p.register_post_accumulate_grad_hook(lambda _p, name=name: order.append(name))
        for name, p in model.named_parameters()
    ]
    model.zero_grad(set_to_none=True)
    checks.loss_fn(model(x), y).backward()
    for handle in handles:
        handle.remove()
    return order


order = ready_order(model, x, y)
print("gradients ready in this order:", " → ".join(order))
layers = [int(name.split(".")[0]) for name in order]  # "4.bias" -> layer 4
check(
    layers == sorted(layers, reverse=True), "gradients arrive layer by layer, the last layer first"
)

# %% [markdown]
# ## Now for real: N processes under torchrun
#
# This cell starts `torchrun --standalone --nproc-per-node N -m lab.lessons.ddp.worker …`
# (`--standalone`: a rendezvous on a free local port). Every rank, in float64:
#
# 1. wraps the model in DDP and checks its gradient against one process's whole-batch gradient,
#    and against the mean of every rank's own shard gradient (gathered without DDP);
# 2. accumulates under `no_sync()` and checks no all-reduce ran until the last micro-batch;
# 3. records, with a gradient hook and a DDP communication hook, when each bucket is launched;
# 4. checks its `DistributedSampler` shard against the other ranks' and against the rule by
#    hand, and that a sampler without `set_epoch` replays its first epoch;
# 5. trains `STEPS` steps, logging to TensorBoard under this run as `rank<k>/`: the first step
#    must be the one worked out by hand, and every batch must come from its own shard.
#
# The ranks' lines appear below as they come (their order between ranks varies).

# %%
flags = {
    "--device": device.type,
    "--batch": BATCH,
    "--accum": ACCUM,
    "--steps": STEPS,
    "--bucket-cap-mb": BUCKET_CAP_MB,
    "--timeout": TIMEOUT,
    "--kill-rank": KILL_RANK,
}
worker_args = [str(part) for flag in flags.items() for part in flag]
results = launch(nproc, lesson.log_dir, worker_args, limit_s=120 + 3 * TIMEOUT)
print(f"\n{len(results)} rank(s) reported; TensorBoard: {lesson.log_dir}/rank0 … rank{nproc - 1}")

# %% [markdown]
# ## What every rank reported
#
# Each claim must hold on every rank. On top, the gradient DDP left in each rank's `.grad` is
# compared here with the simulation above (this process's whole-batch oracle).

# %%
verdicts = [{item["claim"]: item["ok"] for item in result["claims"]} for result in results]
for claim in verdicts[0]:
    check(all(verdict.get(claim) for verdict in verdicts), f"{claim} — on all {nproc} rank(s)")
for result in results:
    got = [torch.tensor(g, dtype=torch.float64) for g in result["ddp_grads"]]
    want = [g.flatten() for g in whole]
    print(
        f"rank {result['rank']}: max |DDP .grad - oracle| = {checks.max_difference(got, want):.1e}"
    )
    check(
        checks.close(got, want),
        f"rank {result['rank']}'s DDP gradient equals this process's oracle",
    )

# %% [markdown]
# ## Look at it
#
# Left: each rank's loss on its own shard — different data, different losses — while every
# rank takes the same step (TensorBoard overlays the runs `rank0`, `rank1`, …: compare
# `loss/shard` with `loss/global` and `grad_norm`, which coincide on all ranks). Right:
# rank 0's backward pass as events — gradients becoming ready (dots) and bucket all-reduces
# launched (bars) before the last gradient is in.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
for result in results:
    left.plot(result["losses"], label=f"rank {result['rank']}")
left.plot(results[0]["global_losses"], "k--", label="whole batch (all-reduced)")
left.set(title="loss on each rank's shard", xlabel="step", ylabel="MSE")
left.legend()
events = results[0]["timeline"]
for position, event in enumerate(events):
    if event[0] == "grad":
        right.scatter(position, 0, color="tab:blue")
        right.annotate(
            event[1],
            (position, 0),
            rotation=60,
            fontsize=7,
            xytext=(0, 6),
            textcoords="offset points",
        )
    else:
        right.bar(position, 1, bottom=-1.2, color="tab:orange", width=0.6)
        right.annotate(f"bucket {event[1]}", (position, -1.25), fontsize=7, ha="center", va="top")
right.set(
    title="rank 0's backward(): grads ready, all-reduces launched",
    xlabel="event order",
    yticks=[0, -0.7],
    yticklabels=["gradient\nready", "bucket\nall-reduce"],
    ylim=(-1.8, 1.2),
)
fig.tight_layout()
show(fig, "ranks")
for event in events:
    print("  grad ready:" if event[0] == "grad" else "  ALL-REDUCE bucket", *event[1:])

# %% [markdown]
# ## When a rank dies
#
# Collectives wait for every rank. If one process dies, torchrun notices, stops the others and
# exits non-zero; the lesson then stops with one line naming the rank (`--kill-rank 1` shows
# it). Across machines the surviving ranks' launcher cannot see the dead process, so
# `init_process_group(timeout=…)` bounds the wait: after `TIMEOUT` seconds the collective
# raises instead of hanging forever.
#
# ## Many machines, on paper
#
# The same worker runs on several nodes: start the same torchrun command on every node, all
# pointing at one c10d rendezvous endpoint (a host:port on one of them). `RANK` then runs over
# all nodes, `LOCAL_RANK` within one. The tests run exactly this with two "nodes" on 127.0.0.1.

# %%
two_nodes = torchrun_command(
    4,
    ["--out", "/shared/runs/ddp", "--device", "cuda"],
    nnodes=2,
    rdzv_endpoint="node0.example:29400",
    rdzv_id="job42",
)
print("on each of the 2 nodes (4 GPUs each):\n ", shown(two_nodes))

# %% [markdown]
# **Slurm**: one task per node, torchrun inside it starts the per-GPU processes.
#
# ```bash
# #SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=4
# head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# srun torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d \
#      --rdzv-endpoint="$head:29400" --rdzv-id="$SLURM_JOB_ID" \
#      -m lab.lessons.ddp.worker --out /shared/runs/ddp --device cuda
# ```
#
# **Kubernetes** (Kubeflow training operator): a `PyTorchJob` runs one pod per node and sets the
# rendezvous for you; the container runs plain `torchrun … -m lab.lessons.ddp.worker …`.
#
# ```yaml
# apiVersion: kubeflow.org/v1
# kind: PyTorchJob
# metadata: {name: lesson16}
# spec:
#   nprocPerNode: "4"
#   pytorchReplicaSpecs:
#     Master:
#       replicas: 1
#       template: &pod
#         spec:
#           containers:
#             - name: pytorch
#               image: autograd-lab/lab:latest
#               command: [torchrun, -m, lab.lessons.ddp.worker, --out, /runs/ddp, --device, cuda]
#               resources: {limits: {nvidia.com/gpu: 4}}
#     Worker:
#       replicas: 1
#       template: *pod
# ```
#
# ## What to take away
#
# - DDP = the same model in every process + an all-reduce of gradient buckets, launched by
#   autograd hooks during `backward()`; the average equals the whole batch's gradient because
#   the loss is a mean over equal shards.
# - `no_sync()` skips the all-reduce while accumulating; `DistributedSampler` + `set_epoch`
#   gives each rank its own fresh shard every epoch.
# - CPU: gloo, any number of processes. GPU: NCCL, one process per GPU, `LOCAL_RANK` picks it.

# %%
lesson.done()
