"""benchmarks/gpu_report.py runs its code paths: a driverless machine, and a faked GPU."""

from __future__ import annotations

import stat

import pytest
import torch
from support.benchmarks import load_benchmark
from support.fake_pynvml import FakeGpu, needs_no_driver


@needs_no_driver
def test_without_a_gpu_it_says_so_and_exits_0(capsys):
    assert load_benchmark("gpu_report").main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu_report benchmark needs an NVIDIA GPU; nothing measured here: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="would run the real matmul benchmark")
def test_with_a_faked_gpu_it_compares_against_nvidia_smi(fake_nvml, tmp_path, monkeypatch, capsys):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, GPU-0, 87, 45, 12345, 81559, "
        "54, 312.40, 700.00, 580.65.06'\n"
    )
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    benchmark = load_benchmark("gpu_report")
    fake_nvml([FakeGpu(), FakeGpu(uuid="GPU-1")])
    assert benchmark.main(["--rounds", "2"]) == 0
    out = capsys.readouterr().out
    for line in (
        "NVML full report, warm session:",
        "NVML one sampler read (GPU 0):",
        "ratio nvidia-smi / NVML sampler read:",
        "NVML full report, cold (init):",
        "nvidia-smi --query-gpu csv:",
        "ratio nvidia-smi / NVML warm:",
        "ratio nvidia-smi / NVML cold:",
        "sampler overhead skipped: torch sees no CUDA",
    ):
        assert line in out, line
