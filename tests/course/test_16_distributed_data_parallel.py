"""Lesson 16: DDP's gradients against one process's autograd, real runs of 2 and 3 gloo
processes under torchrun, two "nodes" on 127.0.0.1, and a rank killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_scalars, single_run_dir

from lab.lessons.ddp import checks, launch

F64 = torch.float64
RUN = "16_distributed_data_parallel"
LIMIT = 300  # seconds any one torchrun may take here (2 shared cores); never a hang
lesson = definitions("16")

# Small slips in what the lesson teaches; its own checks must catch each (all before launch).
MUTATIONS = [
    (
        "torch.stack(grads).sum(dim=0) / len(per_rank)",
        "torch.stack(grads).sum(dim=0)",
    ),
    (
        "(checks.loss_fn(model(xm), ym) * (len(xm) / len(x))).backward()",
        "checks.loss_fn(model(xm), ym).backward()",
    ),
    ("        sampler.set_epoch(epoch)\n", "        sampler.set_epoch(0)\n"),
    # equal weights: right only while the micro-batches are equal
    (
        "(checks.loss_fn(model(xm), ym) * (len(xm) / len(x))).backward()",
        "(checks.loss_fn(model(xm), ym) / accum).backward()",
    ),
    ("num_replicas=world, rank=rank, seed=seed)", "num_replicas=world, rank=0, seed=seed)"),
    # a new shuffle per epoch by moving the seed: not the order set_epoch gives
    ("rank=rank, seed=seed)", "rank=rank, seed=seed + epoch)"),
    # the oracle with a summed loss: the averaged shards come out B times too small for it
    ("loss = ((model(x) - y) ** 2).sum() / len(x)", "loss = ((model(x) - y) ** 2).sum()"),
]
MUTATION_IDS = [
    "no-divide",
    "unweighted",
    "one-epoch",
    "equal-weights",
    "same-shard",
    "seed-per-epoch",
    "summed-oracle",
]


def oracle(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """One process, the whole batch, built-in ops only."""
    loss = ((model(x) - y) ** 2).sum() / y.numel()
    return list(torch.autograd.grad(loss, list(model.parameters())))


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_mean_of_shard_gradients_is_the_whole_batch_gradient(world):
    torch.manual_seed(world)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    model = model.to(F64)
    x, y = torch.randn(12, 3, dtype=F64), torch.randn(12, 2, dtype=F64)
    got = lesson.all_reduce_mean(lesson.shard_gradients(model, x, y, world))
    for g, want in zip(got, oracle(model, x, y), strict=True):
        assert torch.allclose(g, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("accum", [1, 2, 3, 5])  # 5 does not divide 12: unequal micro-batches
def test_weighted_accumulation_is_the_whole_batch_gradient(accum):
    model = checks.make_model(seed=3)
    x, y = checks.make_data(12, seed=4)
    got = lesson.accumulated_gradients(model, x, y, accum)
    for g, want in zip(got, oracle(model, x, y), strict=True):
        assert torch.allclose(g, want, rtol=1e-12, atol=1e-14)


def test_sampler_shards_partition_each_epoch_and_epochs_differ():
    epochs = [lesson.shards_for_epoch(30, 3, epoch) for epoch in range(3)]
    for shards in epochs:
        assert sorted(i for shard in shards for i in shard) == list(range(30))
    assert epochs[0] != epochs[1] != epochs[2]


@pytest.mark.parametrize(("n", "world"), [(12, 1), (12, 2), (30, 3), (96, 4)])
def test_the_sampler_rule_by_hand_is_distributed_samplers(n, world):
    for epoch in range(3):
        for rank in range(world):
            assert checks.shard_by_hand(n, rank, world, epoch) == checks.sampler_indices(
                n, rank, world, epoch
            )
    with pytest.raises(ValueError, match="do not split evenly"):
        checks.shard_by_hand(10, 0, 3, 0)


def test_one_sampler_without_set_epoch_replays_its_first_epoch():
    passes = checks.sampler_passes(24, 1, 2)
    assert passes["first"] == passes["second"] == checks.shard_by_hand(24, 1, 2, 0)
    assert passes["after_set_epoch_1"] == checks.shard_by_hand(24, 1, 2, 1) != passes["first"]


def test_epochs_covered_sees_overlap_gaps_and_stale_epochs():
    n, world = 12, 2
    right = [[checks.shard_by_hand(n, r, world, e) for e in range(2)] for r in range(world)]
    assert checks.epochs_covered(right, n)
    partial = [[*epochs[:1], epochs[1][:3]] for epochs in right]  # epoch 1 cut short
    assert checks.epochs_covered(partial, n)
    same_shard = [[checks.shard_by_hand(n, 0, world, e) for e in range(2)]] * world
    assert not checks.epochs_covered(same_shard, n)  # every rank trains on rank 0's shard
    short = [[epochs[0][:-1]] for epochs in right]  # a finished-looking epoch, one sample lost
    assert checks.epochs_covered(short, n), "unfinished: only overlap counts"
    lost = [[[*epochs[0][:-1], epochs[0][0]]] for epochs in right]  # one sample drawn twice
    assert not checks.epochs_covered(lost, n)


def test_gradients_are_ready_last_layer_first():
    order = lesson.ready_order(checks.make_model(), *checks.make_data(8))
    assert order == ["4.bias", "4.weight", "2.bias", "2.weight", "0.bias", "0.weight"]


def test_overlap_needs_a_gradient_outside_the_first_bucket_after_its_launch():
    one_bucket = [("grad", "b"), ("grad", "a"), ("all-reduce", 0, ["a", "b"])]
    assert not checks.overlaps(one_bucket)
    assert not checks.overlaps([*one_bucket[:2], ("all-reduce", 0, ["a", "b"]), ("grad", "b")])
    assert checks.overlaps([("grad", "b"), ("all-reduce", 0, ["b"]), ("grad", "a")])


@pytest.mark.parametrize(
    ("value", "device", "gpus", "expected"),
    [
        ("auto", "cpu", 0, 2),
        ("3", "cpu", 0, 3),
        (" 1 ", "cpu", 0, 1),
        ("auto", "cuda", 4, 4),
        ("gpu", "cuda", 2, 2),
        ("2", "cuda", 2, 2),
    ],
)
def test_nproc_setting(value, device, gpus, expected):
    assert launch.resolve_nproc(value, device, gpus) == expected


@pytest.mark.parametrize(
    ("value", "device", "gpus", "says"),
    [
        ("3", "cuda", 2, "--nproc 3 exceeds the 2 GPU(s) present"),
        ("gpu", "cpu", 0, "--nproc gpu needs CUDA"),
        ("0", "cpu", 0, "got '0'"),
        ("two", "cpu", 0, "got 'two'"),
        ("99", "cpu", 0, "from 1 to 32"),
    ],
)
def test_bad_nproc_is_one_line_saying_what_to_do(value, device, gpus, says):
    with pytest.raises(launch.BadProcessCount) as error:
        launch.resolve_nproc(value, device, gpus)
    assert says in error.value.message and "\n" not in error.value.message


def test_more_processes_than_gpus_is_refused_before_anything_starts(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(launch.BadProcessCount, match="exceeds the 1 GPU"):
        lesson.plan("2", torch.device("cuda"), 24, 2)
    with pytest.raises(launch.BadProcessCount, match="multiple of 6"):
        lesson.plan("3", torch.device("cpu"), 20, 2)


def test_nproc_gpu_without_a_gpu_stops_the_lesson_and_leaves_no_run(runs_dir):
    with pytest.raises(launch.BadProcessCount):
        run_lesson("16", "--nproc", "gpu")
    assert not (runs_dir / RUN).exists() or not list((runs_dir / RUN).iterdir())


# A tiny rank program: DDP's gradients and the no_sync ones, saved for the oracle here.
RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from lab.lessons.ddp import checks
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ddp = DistributedDataParallel(checks.make_model(seed=5))
    x, y = checks.make_data(12, seed=6)
    plain = checks.ddp_gradients(ddp, x, y, rank, world)
    accumulated = checks.no_sync_gradients(ddp, x, y, rank, world, accum=2)
    with open(os.path.join(sys.argv[1], f"{rank}.json"), "w") as out:
        json.dump([[g.tolist() for g in plain], [g.tolist() for g in accumulated]], out)
    # DDP's reducer goes before its process group (left to interpreter exit, its threads
    # die with std::terminate), and the ranks leave together (gloo aborts a rank whose peer
    # closed mid-read).
    del ddp
    dist.barrier()
    dist.destroy_process_group()
    """
)


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_gradients_equal_one_process_gradient_of_the_whole_batch(tmp_path, world):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={world}",
        str(script),
        str(tmp_path),
    ]
    done = subprocess.run(
        command, env=launch.child_env(), capture_output=True, text=True, timeout=LIMIT
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    want = oracle(checks.make_model(seed=5), *checks.make_data(12, seed=6))
    for rank in range(world):
        for got in json.loads((tmp_path / f"{rank}.json").read_text()):  # plain, then no_sync
            for g, w in zip(got, want, strict=True):
                assert torch.allclose(torch.tensor(g, dtype=F64), w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nproc", [2, 3])
def test_lesson_runs_with_n_gloo_processes_and_logs_every_rank(runs_dir, nproc):
    # 4 batches per epoch: 6 steps reach into a second epoch, with its own shuffle
    ns = run_lesson("16", "--nproc", str(nproc), "--steps", "6")
    assert ns.nproc == nproc and len(ns.results) == nproc
    assert ns.lesson.figures == ["ranks"]
    assert sum("on all" in claim for claim in ns.lesson.checks) == 11
    run = single_run_dir(runs_dir, RUN)
    ranks = [read_scalars(run / f"rank{k}") for k in range(nproc)]
    for scalars in ranks:
        assert [step for step, _ in scalars["loss/shard"]] == list(range(6))
    # every rank took the same step (the same averaged gradient) on different data
    for tag in ("grad_norm", "loss/global"):
        assert all(r[tag] == ranks[0][tag] for r in ranks[1:]), tag
    assert ranks[0]["loss/shard"] != ranks[1]["loss/shard"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_nodes(command: list[str]) -> tuple[list[str], list[int]]:
    """The same torchrun command started twice, as on two machines; never left running."""
    nodes = [
        subprocess.Popen(command, env=launch.child_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
        for _ in range(2)
    ]  # fmt: skip
    try:
        outputs = [node.communicate(timeout=LIMIT)[0] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    return outputs, [node.returncode for node in nodes]


def two_node_command(out, *worker_args: str) -> list[str]:
    return launch.torchrun_command(
        1,
        ["--out", str(out), "--device", "cpu", "--timeout", "30", *worker_args],
        nnodes=2,
        rdzv_endpoint=f"127.0.0.1:{free_port()}",
        rdzv_id="test",
        rdzv_conf="join_timeout=120",
    )


def test_two_nodes_on_one_machine_meet_at_a_c10d_rendezvous(tmp_path):
    outputs, codes = two_nodes(two_node_command(tmp_path, "--steps", "3"))
    assert codes == [0, 0], outputs
    results = launch.read_results(tmp_path, 2)
    assert [r["world"] for r in results] == [2, 2]
    assert all(item["ok"] for r in results for item in r["claims"])


def test_a_killed_rank_on_one_node_stops_the_other_node_too(tmp_path):
    outputs, codes = two_nodes(two_node_command(tmp_path, "--steps", "6", "--kill-rank", "1"))
    assert all(code != 0 for code in codes), outputs
    everything = "".join(outputs)
    assert "[rank 1] killing myself" in everything
    assert "[rank 0] stopped: a collective failed, another rank died or timed out" in everything


def test_a_killed_rank_stops_the_lesson_with_one_line_naming_it(tmp_path):
    env = {**launch.child_env(), "LAB_RUNS_DIR": str(tmp_path)}
    command = [
        sys.executable,
        "-m",
        "lab",
        "lesson",
        "16",
        "--device",
        "cpu",
        "--no-gpu-metrics",
        "--nproc",
        "2",
        "--steps",
        "6",
        "--kill-rank",
        "1",
        "--timeout",
        "20",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LIMIT)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lab lesson: rank 1 of 2 failed (killed by SIGKILL)"), done.stderr
    assert "Traceback" not in done.stderr
    assert "[rank 1] killing myself" in done.stdout


def test_one_bucket_means_no_overlap_and_the_lesson_says_so(runs_dir):
    with pytest.raises(AssertionError, match="lesson claim failed: .*overlap"):
        run_lesson("16", "--bucket-cap-mb", "1000", "--steps", "2")


def test_the_worker_outside_torchrun_says_how_to_start_it(tmp_path):
    env = {k: v for k, v in launch.child_env().items() if k != "RANK"}
    done = subprocess.run(
        [sys.executable, "-m", "lab.lessons.ddp.worker", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "torchrun" in done.stderr


@pytest.mark.parametrize(("old", "new"), MUTATIONS, ids=MUTATION_IDS)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("16", old, new)


def test_a_stuck_run_is_stopped_at_its_limit_with_its_process_group(tmp_path):
    # stands in for torchrun: a parent that starts a child in its group, then hangs
    hang = ("import subprocess, sys, time; child = subprocess.Popen(['sleep', '120']); "
            "print(f'[rank 0] child {child.pid}', flush=True); time.sleep(120)")  # fmt: skip
    seen = []
    with pytest.raises(launch.RankFailed, match="did not finish within 3 s"):
        launch.run_torchrun([sys.executable, "-c", hang], tmp_path / "log", 3, seen.append)
    child = int(seen[0].split()[-1])
    assert gone(child, within=10), "the hanging run's child outlived it"


def gone(pid: int, within: float) -> bool:
    """The process exited (or is a zombie awaiting its reaper) within ``within`` seconds:
    SIGKILL is delivered when the process is next scheduled, on a busy machine not at once."""
    state, deadline = Path(f"/proc/{pid}/stat"), time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if state.read_text().split()[2] in ("Z", "X"):
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.1)
    return False


def test_a_relaunch_forgets_the_previous_ranks_but_nothing_else(tmp_path):
    for name in ("rank0", "rank1", "rank12"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text("{}")
    (tmp_path / "ranks.txt").write_text("kept")
    (tmp_path / "rankings").mkdir()
    launch.clear_ranks(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rankings", "ranks.txt"]
    assert launch.read_results(tmp_path, 2) == [None, None]


def test_lab_lesson_16_nproc_gpu_on_the_cpu_is_one_line(runs_dir, capsys):
    from lab.cli import main

    assert main(["lesson", "16", "--device", "cpu", "--nproc", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lab lesson: --nproc gpu needs CUDA")
