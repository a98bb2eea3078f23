"""CUDA index -> NVML device, as CUDA enumerates under CUDA_VISIBLE_DEVICES (real binding over
the fake NVML library)."""

from __future__ import annotations

import pytest
from support.fake_pynvml import FakeGpu, FakeMig

from lab.gpu.nvml import open_nvml
from lab.gpu.visible import cuda_devices, cuda_index_of


def gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid="GPU-aaaa-0"),
        FakeGpu(
            uuid="GPU-bbbb-1",
            mig=[
                FakeMig(1, "MIG-m1", gpu_instance_id=3),
                FakeMig(4, "MIG-m4", gpu_instance_id=7, compute_instance_id=2),
            ],
        ),
        FakeGpu(uuid="GPU-abcd-2"),
        FakeGpu(uuid="GPU-cccc-3", lost=True),
    ]


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        (None, [(0, None), (1, 1)]),  # MIG GPU: its first MIG device, then CUDA stops
        ("2,0", [(2, None), (0, None)]),
        ("GPU-abcd,GPU-aaaa", [(2, None), (0, None)]),  # unique UUID prefixes
        ("GPU-a", []),  # ambiguous prefix: CUDA resolves nothing
        ("2,7,0", [(2, None)]),  # an index no GPU has ends the list
        ("0,0", []),  # a repeated device: CUDA sees none
        ("MIG-m4", [(1, 4)]),
        ("MIG-GPU-bbbb-1/7/2", [(1, 4)]),  # the legacy MIG spelling
        ("MIG-m4,0", [(1, 4)]),  # one MIG device per process
        ("", []),
        ("NoDevFiles", []),
        ("3,0", []),  # a lost GPU: nothing CUDA can use in its place
    ],
)
def test_cuda_enumeration(fake_nvml, listed, expected):
    fake_nvml(gpus())
    environ = {} if listed is None else {"CUDA_VISIBLE_DEVICES": listed}
    with open_nvml() as nvml:
        devices = cuda_devices(nvml, environ)
    assert [(d.nvml_index, d.mig_slot) for d in devices] == expected
    assert [d.cuda_index for d in devices] == list(range(len(expected)))
    for device in devices:
        assert cuda_index_of(devices, device.nvml_index, device.mig_slot) == device.cuda_index
