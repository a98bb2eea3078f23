"""The GPU report: the real nvidia-ml-py binding over a fake NVML library."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pynvml
import pytest
from support.fake_pynvml import MIB, NOT_SUPPORTED, FakeGpu, FakeMig

from lab.gpu import procinfo, report
from lab.gpu.nvml import NvmlUnavailable, open_nvml
from lab.gpu.render import render_text

VISIBLE_PID, SAME_PID_BOTH, CMDLINE_ONLY_PID, FOREIGN_PID = 4242, 4343, 5151, 999_999
NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION


def four_gpus() -> list[FakeGpu]:
    """A healthy GPU with processes, one in MIG mode, one that reports little, one lost."""
    return [
        FakeGpu(
            compute=[(VISIBLE_PID, 1000 * MIB), (SAME_PID_BOTH, 300 * MIB), (FOREIGN_PID, None)],
            graphics=[(SAME_PID_BOTH, 300 * MIB), (CMDLINE_ONLY_PID, 200 * MIB)],
            sm_samples={VISIBLE_PID: 71},
            mig=[],
        ),
        FakeGpu(
            name="NVIDIA A100-SXM4-40GB",
            uuid="GPU-aaaa",
            bus_id="00000000:41:00.0",
            memory_used=600 * MIB,
            memory_total=40_960 * MIB,
            compute=[(VISIBLE_PID + 1, 90 * MIB, 5, 1)],
            mig=[
                FakeMig(0, "MIG-0000", memory_used=100 * MIB),
                FakeMig(
                    3,
                    "MIG-0003",
                    gpu_instance_id=5,
                    compute_instance_id=1,
                    memory_used=250 * MIB,
                    memory_total=9_856 * MIB,
                ),
            ],
        ),
        FakeGpu(
            name="NVIDIA GeForce GT 1030",
            uuid="GPU-bbbb",
            errors={
                "nvmlDeviceGetTemperatureV": NOT_SUPPORTED,
                "nvmlDeviceGetPowerUsage": NOT_SUPPORTED,
                "nvmlDeviceGetEnforcedPowerLimit": NOT_SUPPORTED,
                "nvmlDeviceGetComputeRunningProcesses_v3": NOT_SUPPORTED,
                "nvmlDeviceGetGraphicsRunningProcesses_v3": NOT_SUPPORTED,
                "nvmlDeviceGetUtilizationRates": NO_PERMISSION,
                "nvmlDeviceGetFanSpeed": NOT_SUPPORTED,
                "nvmlDeviceGetTotalEccErrors": NOT_SUPPORTED,
            },
        ),
        FakeGpu(uuid="GPU-cccc", lost=True),
    ]


def fake_process(root: Path, pid: int, comm: bytes, cmdline: bytes, open_files: list[str]):
    (root / str(pid) / "fd").mkdir(parents=True)
    (root / str(pid) / "comm").write_bytes(comm)
    (root / str(pid) / "cmdline").write_bytes(cmdline)
    for descriptor, target in enumerate(open_files):
        (root / str(pid) / "fd" / str(descriptor)).symlink_to(target)


@pytest.fixture
def proc_root(tmp_path) -> Path:
    """A /proc with the processes this machine can see. FOREIGN_PID is a host pid seen from a
    container: here that number belongs to an unrelated process that has no GPU open."""
    root = tmp_path / "proc"
    gpu_files = ["/dev/null", "/dev/nvidiactl", "/dev/nvidia0"]
    fake_process(
        root,
        VISIBLE_PID,
        b"python3\n",
        b"\0".join([b"python3", b"train.py", b"--lr", b"0.1", b""]),
        gpu_files,
    )
    fake_process(root, SAME_PID_BOTH, b"Xorg\n", b"/usr/lib/Xorg\0", gpu_files)
    fake_process(root, CMDLINE_ONLY_PID, b"", b"/opt/bin/blender\0-b\0", ["/dev/nvidia-uvm"])
    fake_process(root, FOREIGN_PID, b"bash\n", b"bash\0", ["/dev/pts/0", "/dev/null"])
    return root


@pytest.fixture
def document(fake_nvml, proc_root) -> dict:
    fake_nvml(four_gpus())
    with open_nvml() as nvml:
        return report.collect(nvml, proc_root=proc_root, environ={})


def test_header_and_a_healthy_gpu(document):
    assert document["schema_version"] == report.SCHEMA_VERSION == 2
    assert document["available"] is True and document["error"] is None
    assert (document["driver_version"], document["cuda_version"]) == ("580.65.06", "13.0")
    assert [gpu["index"] for gpu in document["gpus"]] == [0, 1, 2, 3]
    gpu = document["gpus"][0]
    assert gpu["status"] == "ok" and gpu["error"] is None and gpu["field_errors"] == []
    assert (gpu["name"], gpu["uuid"], gpu["pci_bus_id"]) == (
        "NVIDIA H100 80GB HBM3",
        "GPU-00000000-1111-2222-3333-444444444444",
        "00000000:17:00.0",
    )
    assert gpu["utilization"] == {"gpu_percent": 87, "memory_percent": 45}
    assert gpu["memory"] == {"used_mib": 12_345, "total_mib": 81_559}
    assert gpu["temperature_c"] == 54
    assert gpu["power"] == {"draw_w": pytest.approx(312.4), "limit_w": pytest.approx(700.0)}
    assert (gpu["fan_percent"], gpu["performance_state"]) == (41, "P0")
    assert gpu["clocks"] == {"sm_mhz": 1980, "memory_mhz": 2619}
    assert gpu["clocks_event_reasons"] == ["sw_power_cap"]
    assert gpu["ecc_volatile_uncorrected"] == 0
    assert gpu["pcie"] == {"generation": 5, "width": 16, "tx_kib_s": 1200, "rx_kib_s": 3400}
    assert gpu["mig"] == {"enabled": False, "pending": None, "devices": []}
    assert gpu["cuda_index"] == 0


@pytest.mark.parametrize(
    "nvml_answer, shown", [(13000, "13.0"), (12080, "12.8"), (12040, "12.4"), (11080, "11.8")]
)
def test_cuda_version_the_driver_supports(fake_nvml, nvml_answer, shown):
    fake_nvml([FakeGpu()], cuda=nvml_answer)
    with open_nvml() as nvml:
        assert report.collect(nvml)["cuda_version"] == shown


def test_processes_are_merged_described_and_carry_sm_use(document):
    processes = document["gpus"][0]["processes"]
    user = procinfo._user(Path("/").stat().st_uid)  # the test files belong to us
    assert [(p["pid"], p["name"], p["type"], p["used_memory_mib"]) for p in processes] == [
        (VISIBLE_PID, "python3", "C", 1000),
        (SAME_PID_BOTH, "Xorg", "C+G", 300),
        (CMDLINE_ONLY_PID, "blender", "G", 200),
        # a host pid seen from a container: that number here is someone else, so no name
        (FOREIGN_PID, None, "C", None),
    ]
    first = processes[0]
    assert first["command"] == "python3 train.py --lr 0.1" and first["sm_percent"] == 71
    assert first["user"] is not None and isinstance(first["user"], str) and user
    assert processes[3]["user"] is None and processes[3]["command"] is None
    assert document["gpus"][0]["processes_complete"] is True
    assert document["note"] is None  # some pids are visible here: not a container's view


def test_process_name_on_the_real_proc_needs_an_nvidia_device_open():
    child = subprocess.Popen(["sleep", "60"])
    try:
        comm = Path(f"/proc/{child.pid}/comm")
        deadline = time.monotonic() + 10
        while comm.read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)  # the child is visible before its exec() has happened
        assert comm.read_text().strip() == "sleep"
        assert procinfo.describe(child.pid) == procinfo.UNKNOWN  # visible, but no GPU open
    finally:
        child.kill()
        child.wait()
    assert procinfo.describe(2**22 + 12345) == procinfo.UNKNOWN  # above Linux's pid_max


def test_mig_devices_are_listed_with_their_memory_and_processes(document):
    gpu = document["gpus"][1]
    mig = gpu["mig"]
    assert mig["enabled"] is True and mig["pending"] is None
    assert mig["devices"][1] == {
        "slot": 3,
        "cuda_index": None,  # CUDA sees one MIG device: the first
        "uuid": "MIG-0003",
        "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
        "gpu_instance_id": 5,
        "compute_instance_id": 1,
        "memory": {"used_mib": 250, "total_mib": 9856},
    }
    assert mig["devices"][0]["cuda_index"] == 1
    assert [(p["pid"], p["mig_slot"]) for p in gpu["processes"]] == [(VISIBLE_PID + 1, 3)]
    assert gpu["utilization"] == {"gpu_percent": None, "memory_percent": None}  # MIG parent
    text = render_text(document)
    assert "MIG          on, 2 devices" in text
    assert "MIG 3  NVIDIA A100-SXM4-40GB MIG 1g.5gb  MIG-0003  GI 5 CI 1" in text


def test_unsupported_fields_are_null_in_json_and_na_in_text(document):
    gpu = document["gpus"][2]
    assert gpu["status"] == "ok"
    assert gpu["temperature_c"] is None and gpu["fan_percent"] is None
    assert gpu["power"] == {"draw_w": None, "limit_w": None}
    assert gpu["utilization"] == {"gpu_percent": None, "memory_percent": None}
    assert gpu["processes"] is None  # NVML cannot list them: unknown, not "none"
    assert gpu["mig"] == {"enabled": None, "pending": None, "devices": []}
    assert gpu["memory"] == {"used_mib": 12_345, "total_mib": 81_559}  # what it does answer
    assert gpu["field_errors"] == ["nvmlDeviceGetUtilizationRates: Insufficient Permissions"]
    block = render_text(document).split("GPU 2  ")[1].split("GPU 3  ")[0]
    assert "temperature  n/a  fan n/a" in block and "power        n/a / n/a W" in block
    assert "utilization  gpu n/a  memory n/a" in block and "processes    n/a" in block
    assert "MIG" not in block


def test_a_lost_gpu_is_reported_and_the_others_still_are(document):
    lost = document["gpus"][3]
    assert lost["status"] == "lost" and lost["error"] == "GPU is lost"
    assert lost["name"] is None and lost["memory"] == {"used_mib": None, "total_mib": None}
    assert all(gpu["status"] == "ok" for gpu in document["gpus"][:3])
    assert "GPU 3  LOST: GPU is lost" in render_text(document)


def test_a_gpu_lost_in_the_middle_of_the_query_is_lost_not_a_crash(fake_nvml):
    lost = pynvml.NVML_ERROR_GPU_IS_LOST
    fake_nvml([FakeGpu(errors={"nvmlDeviceGetMemoryInfo_v2": lost}), FakeGpu()])
    with open_nvml() as nvml:
        document = report.collect(nvml)
    assert [gpu["status"] for gpu in document["gpus"]] == ["lost", "ok"]
    assert document["gpus"][0]["utilization"]["gpu_percent"] is None  # nothing half-filled


def test_json_schema_is_the_same_for_every_kind_of_gpu(document):
    keys = {frozenset(gpu) for gpu in document["gpus"]}
    assert len(keys) == 1
    assert set(next(iter(keys))) == set(report._empty_entry(0))
    assert json.loads(report.to_json(document)) == json.loads(json.dumps(document))
    unavailable = report.unavailable(NvmlUnavailable("Driver Not Loaded", "reboot"))
    assert set(unavailable) == set(document)
    assert unavailable["available"] is False and unavailable["gpus"] == []


def test_text_report_has_header_and_one_block_per_gpu(document):
    text = render_text(document)
    assert text.startswith(
        "NVIDIA driver 580.65.06, CUDA 13.0 (newest this driver supports), 4 GPUs shown\n"
    )
    assert (
        "GPU 0  NVIDIA H100 80GB HBM3  GPU-00000000-1111-2222-3333-444444444444  "
        "bus 00000000:17:00.0  cuda:0" in text
    )
    assert "utilization  gpu 87 %  memory 45 %" in text
    assert "memory       12345 / 81559 MiB" in text
    assert "power        312.4 / 700.0 W" in text
    assert "clocks       sm 1980 MHz  memory 2619 MHz  held down by: sw_power_cap" in text
    assert "PCIe         gen 5 x16  tx 1200 KiB/s  rx 3400 KiB/s" in text
    assert "MIG          off" in text
    assert "python3 train.py --lr 0.1" in text
    assert "  999999  n/a        C    n/a         n/a    0%  n/a" in text  # no SM sample: idle


def test_nvml_session_is_shut_down_after_use(fake_nvml):
    fake = fake_nvml(four_gpus())
    with open_nvml() as nvml:
        report.collect(nvml)
        assert fake.initialised == 1
    assert fake.initialised == 0
