"""``fake_nvml(gpus, ...)``: the real nvidia-ml-py binding over a fake NVML library."""

from __future__ import annotations

import pytest
from support.fake_pynvml import FakeNvmlLibrary, install

from lab.gpu import sampler


@pytest.fixture
def fake_nvml(monkeypatch):
    def make(gpus, **kwargs) -> FakeNvmlLibrary:
        monkeypatch.setattr(sampler, "_shared", None)  # no session left from another test
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        return install(monkeypatch, FakeNvmlLibrary(gpus, **kwargs))

    return make
