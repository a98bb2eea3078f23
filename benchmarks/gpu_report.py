"""Benchmark (needs an NVIDIA GPU): `lab gpu`'s NVML query vs nvidia-smi, and sampler overhead.

    python benchmarks/gpu_report.py            # no arguments needed [--rounds 5] [--size 4096]

1. One full NVML report (every field of every GPU, processes and MIG included) against
   ``nvidia-smi --query-gpu=... --format=csv`` for the same GPU fields. Target: >= 10x
   faster; also one sampler read (utilization, memory, power of one GPU). Timed warm (an
   open NVML session, as ``--watch`` and the sampler use it)
   and cold (nvmlInit + query + shutdown, as one ``lab gpu`` does), medians of repeated runs.
2. Sampler overhead on lesson 08's matmul loop (its ``time_matmul``, on the GPU): rounds with
   and without ``GpuSampler`` alternate; overhead = median with / median without - 1.
   Target: <= 1 % at the default 500 ms interval.

Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.gpu import report  # noqa: E402
from lab.gpu.nvml import NvmlUnavailable, open_nvml  # noqa: E402
from lab.gpu.sampler import DEFAULT_INTERVAL_MS, GpuSampler  # noqa: E402

SMI_FIELDS = (
    "index,name,uuid,utilization.gpu,utilization.memory,memory.used,memory.total,"
    "temperature.gpu,power.draw,power.limit,driver_version"
)


def median_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cold_query() -> None:
    with open_nvml() as nvml:
        report.collect(nvml)


def bench_query(repeats: int) -> None:
    with open_nvml() as nvml:
        report.collect(nvml)  # first touch of every call path
        warm = median_ms(lambda: report.collect(nvml), repeats * 5)
        handle = nvml.device(0)
        one = median_ms(
            lambda: (nvml.utilization(handle), nvml.memory(handle), nvml.power_w(handle)),
            repeats * 50,
        )
    print(f"NVML one sampler read (GPU 0):  {one:8.3f} ms (median of {repeats * 50})")
    cold = median_ms(cold_query, repeats)
    print(f"NVML full report, warm session: {warm:8.3f} ms (median of {repeats * 5})")
    print(f"NVML full report, cold (init):  {cold:8.3f} ms (median of {repeats})")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        print("nvidia-smi not found: no anchor to compare with")
        return
    command = [smi, f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits"]
    subprocess.run(command, check=True, capture_output=True)
    anchor = median_ms(lambda: subprocess.run(command, check=True, capture_output=True), repeats)
    print(f"nvidia-smi --query-gpu csv:     {anchor:8.3f} ms (median of {repeats})")
    for label, ours in (("sampler read", one), ("warm", warm), ("cold", cold)):
        ratio = anchor / ours
        verdict = "meets" if ratio >= 10 else "MISSES"
        print(f"ratio nvidia-smi / NVML {label}: {ratio:7.1f}x  ({verdict} the >= 10x target)")


def bench_sampler(rounds: int, size: int, interval_ms: float) -> None:
    try:
        import torch
        from torch.utils.tensorboard import SummaryWriter

        from lab.course import find

        time_matmul = find("08").load().time_matmul
    except ImportError as exc:
        print(f"sampler overhead skipped: {exc} (needs the lab extra: torch, tensorboard)")
        return
    if not torch.cuda.is_available():
        print(
            "sampler overhead skipped: torch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda})"
        )
        return
    a = torch.randn(size, size, device="cuda")
    b = torch.randn(size, size, device="cuda")
    per_matmul_ms = time_matmul(a, b, repeats=20)
    repeats = max(50, int(3000 / max(per_matmul_ms, 1e-3)))  # ~3 s of matmuls per round
    print(
        f"\nlesson 08 matmul loop: {size}x{size} on {torch.cuda.get_device_name()}, "
        f"{repeats} matmuls per round, {rounds} rounds each way, "
        f"sampler every {interval_ms:g} ms"
    )
    without, with_sampler = [], []
    with tempfile.TemporaryDirectory() as log_dir, closing(SummaryWriter(log_dir)) as writer:
        for round_number in range(rounds):
            # alternate which goes first, so clock and thermal drift do not favour one side
            for sampled in (False, True) if round_number % 2 == 0 else (True, False):
                with GpuSampler(
                    writer, device=a.device, interval_ms=interval_ms, enabled=sampled
                ) as sampler:
                    started = time.perf_counter()
                    time_matmul(a, b, repeats=repeats)
                    elapsed = time.perf_counter() - started
                (with_sampler if sampled else without).append(elapsed)
                if sampled and not sampler.active:
                    print("the sampler found no GPU through NVML; overhead not measured")
                    return
    base, slowed = statistics.median(without), statistics.median(with_sampler)
    overhead = (slowed / base - 1) * 100
    print(f"round without sampler: {base:.3f} s   with: {slowed:.3f} s (medians)")
    print(
        f"sampler overhead: {overhead:+.2f} %  "
        f"({'meets' if overhead <= 1 else 'MISSES'} the <= 1 % target)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds each way (default 5)")
    parser.add_argument("--size", type=int, default=4096, help="matmul size (default 4096)")
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=DEFAULT_INTERVAL_MS,
        help=f"sampler interval (default {DEFAULT_INTERVAL_MS})",
    )
    args = parser.parse_args(argv)
    try:
        open_nvml().close()
    except NvmlUnavailable as exc:
        print(f"gpu_report benchmark needs an NVIDIA GPU; nothing measured here: {exc}")
        return 0
    bench_query(repeats=max(args.rounds, 10))
    bench_sampler(args.rounds, args.size, args.interval_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
