"""The GPU report, driven through a fake NVML at lab.gpu.nvml's boundary."""

from __future__ import annotations

import inspect
import json
import subprocess
import time
from pathlib import Path

import pynvml
import pytest
from support.fake_pynvml import MIB, NOT_SUPPORTED, FakeGpu, FakeMig, FakePynvml

from lab.gpu import report
from lab.gpu.nvml import NvmlUnavailable, open_nvml

VISIBLE_PID, SAME_PID_BOTH, CMDLINE_ONLY_PID, FOREIGN_PID = 4242, 4343, 5151, 999_999


def four_gpus() -> FakePynvml:
    """A healthy GPU with processes, one in MIG mode, one that reports little, one lost."""
    return FakePynvml(
        [
            FakeGpu(
                compute=[
                    (VISIBLE_PID, 1000 * MIB),
                    (SAME_PID_BOTH, 300 * MIB),
                    (FOREIGN_PID, None),
                ],
                graphics=[(SAME_PID_BOTH, 300 * MIB), (CMDLINE_ONLY_PID, 200 * MIB)],
                mig=[],
            ),
            FakeGpu(
                name="NVIDIA A100-SXM4-40GB",
                uuid="GPU-aaaa",
                utilization=(3, 1),
                memory_used=600 * MIB,
                memory_total=40_960 * MIB,
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
                    "nvmlDeviceGetTemperature": NOT_SUPPORTED,
                    "nvmlDeviceGetPowerUsage": NOT_SUPPORTED,
                    "nvmlDeviceGetEnforcedPowerLimit": NOT_SUPPORTED,
                    "nvmlDeviceGetComputeRunningProcesses": NOT_SUPPORTED,
                    "nvmlDeviceGetGraphicsRunningProcesses": NOT_SUPPORTED,
                    "nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NO_PERMISSION,
                },
            ),
            FakeGpu(uuid="GPU-cccc", lost=True),
        ]
    )


def fake_process(root: Path, pid: int, comm: str, cmdline: bytes, open_files: list[str]):
    (root / str(pid) / "fd").mkdir(parents=True)
    (root / str(pid) / "comm").write_text(comm)
    (root / str(pid) / "cmdline").write_bytes(cmdline)
    for descriptor, target in enumerate(open_files):
        (root / str(pid) / "fd" / str(descriptor)).symlink_to(target)


@pytest.fixture
def proc_root(tmp_path) -> Path:
    """A /proc with the processes this machine can see. FOREIGN_PID is a host pid seen from a
    container: here that number belongs to an unrelated process that has no GPU open."""
    root = tmp_path / "proc"
    gpu_files = ["/dev/null", "/dev/nvidiactl", "/dev/nvidia0"]
    fake_process(root, VISIBLE_PID, "python3\n", b"python3\0train.py\0", gpu_files)
    fake_process(root, SAME_PID_BOTH, "Xorg\n", b"/usr/lib/Xorg\0", gpu_files)
    fake_process(root, CMDLINE_ONLY_PID, "", b"/opt/bin/blender\0-b\0", ["/dev/nvidia-uvm"])
    fake_process(root, FOREIGN_PID, "bash\n", b"bash\0", ["/dev/pts/0", "/dev/null"])
    return root


@pytest.fixture
def document(proc_root) -> dict:
    with open_nvml(four_gpus()) as nvml:
        return report.collect(nvml, proc_root=proc_root)


def test_header_and_a_healthy_gpu(document):
    assert document["schema_version"] == report.SCHEMA_VERSION == 1
    assert document["available"] is True and document["error"] is None
    assert (document["driver_version"], document["cuda_version"]) == ("580.65.06", "13.0")
    assert [gpu["index"] for gpu in document["gpus"]] == [0, 1, 2, 3]
    gpu = document["gpus"][0]
    assert gpu["status"] == "ok" and gpu["error"] is None
    assert (gpu["name"], gpu["uuid"]) == (
        "NVIDIA H100 80GB HBM3",
        "GPU-00000000-1111-2222-3333-444444444444",
    )
    assert gpu["utilization"] == {"gpu_percent": 87, "memory_percent": 45}
    assert gpu["memory"] == {"used_mib": 12_345, "total_mib": 81_559}
    assert gpu["temperature_c"] == 54
    assert gpu["power"] == {"draw_w": pytest.approx(312.4), "limit_w": pytest.approx(700.0)}
    assert gpu["mig"] == {"enabled": False, "devices": []}


@pytest.mark.parametrize(
    "nvml_answer, shown", [(13000, "13.0"), (12080, "12.8"), (12040, "12.4"), (11080, "11.8")]
)
def test_cuda_version_the_driver_supports(nvml_answer, shown):
    with open_nvml(FakePynvml([FakeGpu()], cuda=nvml_answer)) as nvml:
        assert report.collect(nvml)["cuda_version"] == shown


def test_processes_are_merged_across_compute_and_graphics_and_named(document):
    processes = document["gpus"][0]["processes"]
    assert processes == [
        {"pid": VISIBLE_PID, "name": "python3", "type": "C", "used_memory_mib": 1000},
        {"pid": SAME_PID_BOTH, "name": "Xorg", "type": "C+G", "used_memory_mib": 300},
        {"pid": CMDLINE_ONLY_PID, "name": "blender", "type": "G", "used_memory_mib": 200},
        # a host pid seen from a container: that number here is someone else, so no name
        {"pid": FOREIGN_PID, "name": None, "type": "C", "used_memory_mib": None},
    ]


def test_process_name_on_the_real_proc_needs_an_nvidia_device_open():
    child = subprocess.Popen(["sleep", "60"])
    try:
        comm = Path(f"/proc/{child.pid}/comm")
        deadline = time.monotonic() + 10
        while comm.read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)  # the child is visible before its exec() has happened
        assert comm.read_text().strip() == "sleep"
        assert report.process_name(child.pid) is None  # visible, but it has no GPU open
    finally:
        child.kill()
        child.wait()
    assert report.process_name(2**22 + 12345) is None  # above Linux's pid_max: not visible


def test_mig_devices_are_listed_with_their_memory(document):
    mig = document["gpus"][1]["mig"]
    assert mig["enabled"] is True
    assert mig["devices"] == [
        {
            "slot": 0,
            "uuid": "MIG-0000",
            "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
            "gpu_instance_id": 1,
            "compute_instance_id": 0,
            "memory": {"used_mib": 100, "total_mib": 4864},
        },
        {
            "slot": 3,
            "uuid": "MIG-0003",
            "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
            "gpu_instance_id": 5,
            "compute_instance_id": 1,
            "memory": {"used_mib": 250, "total_mib": 9856},
        },
    ]
    text = report.render_text(document)
    assert "MIG          on, 2 devices" in text
    assert "MIG 3  NVIDIA A100-SXM4-40GB MIG 1g.5gb  MIG-0003  GI 5 CI 1" in text


def test_unsupported_fields_are_null_in_json_and_na_in_text(document):
    gpu = document["gpus"][2]
    assert gpu["status"] == "ok"
    assert gpu["temperature_c"] is None
    assert gpu["power"] == {"draw_w": None, "limit_w": None}
    assert gpu["utilization"] == {"gpu_percent": None, "memory_percent": None}
    assert gpu["processes"] is None  # NVML cannot list them: unknown, not "none"
    assert gpu["mig"] == {"enabled": None, "devices": []}
    assert gpu["memory"] == {"used_mib": 12_345, "total_mib": 81_559}  # what it does answer
    block = report.render_text(document).split("GPU 2  ")[1].split("GPU 3  ")[0]
    assert "temperature  n/a" in block and "power        n/a / n/a W" in block
    assert "utilization  gpu n/a  memory n/a" in block and "processes    n/a" in block
    assert "MIG" not in block


def test_a_lost_gpu_is_reported_and_the_others_still_are(document):
    lost = document["gpus"][3]
    assert lost["status"] == "lost" and lost["error"] == "GPU is lost"
    assert lost["name"] is None and lost["memory"] == {"used_mib": None, "total_mib": None}
    assert all(gpu["status"] == "ok" for gpu in document["gpus"][:3])
    assert "GPU 3  LOST: GPU is lost" in report.render_text(document)


def test_a_gpu_lost_in_the_middle_of_the_query_is_lost_not_a_crash():
    fake = FakePynvml(
        [FakeGpu(errors={"nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_GPU_IS_LOST}), FakeGpu()]
    )
    with open_nvml(fake) as nvml:
        document = report.collect(nvml)
    assert [gpu["status"] for gpu in document["gpus"]] == ["lost", "ok"]
    assert document["gpus"][0]["utilization"]["gpu_percent"] is None  # nothing half-filled


def test_other_nvml_errors_mark_the_gpu_as_error_with_the_reason():
    fake = FakePynvml([FakeGpu(errors={"nvmlDeviceGetTemperature": pynvml.NVML_ERROR_TIMEOUT})])
    with open_nvml(fake) as nvml:
        gpu = report.collect(nvml)["gpus"][0]
    assert (gpu["status"], gpu["error"]) == ("error", "Timeout")


def test_json_schema_is_the_same_for_every_kind_of_gpu(document):
    keys = {frozenset(gpu) for gpu in document["gpus"]}
    assert len(keys) == 1
    assert set(next(iter(keys))) == {
        "index",
        "status",
        "error",
        "name",
        "uuid",
        "utilization",
        "memory",
        "temperature_c",
        "power",
        "mig",
        "processes",
    }
    assert json.loads(report.to_json(document)) == json.loads(json.dumps(document))
    unavailable = report.unavailable(NvmlUnavailable("Driver Not Loaded", "reboot"))
    assert set(unavailable) == set(document)
    assert unavailable["available"] is False and unavailable["gpus"] == []


def test_text_report_has_header_and_one_block_per_gpu(document):
    text = report.render_text(document)
    assert text.startswith(
        "NVIDIA driver 580.65.06, CUDA 13.0 (newest this driver supports), 4 GPUs shown\n"
    )
    assert "GPU 0  NVIDIA H100 80GB HBM3  GPU-00000000-1111-2222-3333-444444444444" in text
    assert "utilization  gpu 87 %  memory 45 %" in text
    assert "memory       12345 / 81559 MiB" in text
    assert "power        312.4 / 700.0 W" in text
    assert "MIG          off" in text
    assert "    4343  C+G   Xorg                  300 MiB" in text
    assert "  999999  C     n/a                   n/a" in text


def test_nvml_session_is_shut_down_after_use():
    fake = four_gpus()
    with open_nvml(fake) as nvml:
        report.collect(nvml)
        assert fake.initialised == 1
    assert fake.initialised == 0


def test_fake_matches_the_real_binding():
    """Every NVML function the fake offers exists in nvidia-ml-py with the same parameters."""
    for name, method in inspect.getmembers(FakePynvml, inspect.isfunction):
        if not name.startswith("nvml"):
            continue
        real = list(inspect.signature(getattr(pynvml, name)).parameters.values())
        fake = list(inspect.signature(method).parameters.values())[1:]  # drop self
        assert [(p.kind, p.default) for p in real] == [(p.kind, p.default) for p in fake], name
