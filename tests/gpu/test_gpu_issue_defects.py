"""One test per numbered defect of the GPU-reporting issue (1-10; 11-13 are in tests/host/),
each run through the real nvidia-ml-py binding over the fake NVML library. Defect 6's
sampler side, 8's sampler side and 9 are in test_gpu_sampler.py."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pynvml
import pytest
from support.fake_pynvml import MIB, NOT_SUPPORTED, PRE_R510, FakeGpu, FakeMig, OldBinding

from lab.cli import build_parser
from lab.gpu import cli as gpu_cli
from lab.gpu import report
from lab.gpu.nvml import open_nvml
from lab.gpu.render import render_text

ROOT = Path(__file__).resolve().parents[2]
PID = 4242


def collect(**kwargs) -> dict:
    with open_nvml(kwargs.pop("module", None)) as nvml:
        return report.collect(nvml, environ={}, **kwargs)


def lab_gpu(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = gpu_cli.run(build_parser().parse_args(["gpu", *argv]), out=out, err=err)
    return code, out.getvalue()


def test_1_a_driver_before_r510_lists_processes_through_the_v2_calls(fake_nvml):
    fake = fake_nvml([FakeGpu(compute=[(PID, 500 * MIB)])], driver="470.256.02", missing=PRE_R510)
    code, out = lab_gpu("--json")  # the binding's unversioned call raises a bare Exception
    assert code == 0
    gpu = json.loads(out)["gpus"][0]
    assert [(p["pid"], p["used_memory_mib"]) for p in gpu["processes"]] == [(PID, 500)]
    assert gpu["processes_complete"] is True
    assert ("nvmlDeviceGetComputeRunningProcesses_v2", FakeGpu().uuid) in fake.calls
    assert gpu["temperature_c"] == 54 and gpu["clocks_event_reasons"] == ["sw_power_cap"]


def test_2_a_process_name_cut_inside_a_utf8_character_is_shown_not_a_crash(fake_nvml, tmp_path):
    fake_nvml([FakeGpu(compute=[(PID, MIB)])])
    process = tmp_path / str(PID)
    (process / "fd").mkdir(parents=True)
    (process / "fd" / "3").symlink_to("/dev/nvidia0")
    (process / "comm").write_bytes(b"trainingsl\xc3\n")  # the kernel cut "ä" (c3 a4) in two
    (process / "cmdline").write_bytes(b"python\0tr\xc3\0")
    proc = collect(proc_root=tmp_path)["gpus"][0]["processes"][0]
    assert (proc["name"], proc["command"]) == ("trainingsl\ufffd", "python tr\ufffd")


def test_3_an_old_binding_returning_bytes_still_gives_json_and_clean_text(fake_nvml):
    fake_nvml([FakeGpu(mig=[FakeMig(0, "MIG-0")])])
    document = collect(module=OldBinding())
    text, as_json = render_text(document), report.to_json(document)
    gpu = document["gpus"][0]
    assert (gpu["name"], document["driver_version"]) == ("NVIDIA H100 80GB HBM3", "580.65.06")
    assert gpu["mig"]["devices"][0]["uuid"] == "MIG-0"
    assert "b'" not in text and json.loads(as_json)["gpus"][0]["pci_bus_id"] == "00000000:17:00.0"
    assert gpu["memory"]["used_mib"] == 12_345 + 544  # no v2 struct in an old binding: v1


def test_4_memory_used_is_nvidia_smis_figure_from_the_v2_struct(fake_nvml):
    fake_nvml([FakeGpu(memory_used=0, memory_reserved=544 * MIB)])  # an idle GPU
    assert collect()["gpus"][0]["memory"] == {"used_mib": 0, "total_mib": 81_559}


def test_4_a_driver_without_the_v2_struct_falls_back_to_v1(fake_nvml):
    fake_nvml([FakeGpu(memory_used=100 * MIB)], missing={"nvmlDeviceGetMemoryInfo_v2"})
    assert collect()["gpus"][0]["memory"]["used_mib"] == 100 + 544


def test_5_the_binding_floor_excludes_the_release_with_the_broken_process_struct():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(d for d in dependencies if d.startswith("nvidia-ml-py"))
    version = tuple(int(part) for part in floor.split(">=")[1].split("."))
    assert version >= (12, 535, 108), floor  # 12.535.77 misreads processes on >= 535.86


@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_TIMEOUT, pynvml.NVML_ERROR_DEPRECATED]
)
def test_6_one_failing_field_is_na_and_the_gpu_stays_ok(fake_nvml, code):
    fake_nvml([FakeGpu(errors={"nvmlDeviceGetPowerUsage": code})])
    exit_code, out = lab_gpu("--json")
    gpu = json.loads(out)["gpus"][0]
    assert exit_code == 0 and gpu["status"] == "ok" and gpu["error"] is None
    assert gpu["power"]["draw_w"] is None and gpu["power"]["limit_w"] == pytest.approx(700.0)
    assert gpu["name"] and gpu["memory"]["used_mib"] == 12_345
    assert gpu["field_errors"] == [f"nvmlDeviceGetPowerUsage: {pynvml.NVMLError(code)}"]


def test_7_refused_compute_processes_are_not_reported_as_none(fake_nvml):
    refused = {"nvmlDeviceGetComputeRunningProcesses_v3": pynvml.NVML_ERROR_NO_PERMISSION}
    fake_nvml([FakeGpu(compute=[(PID, MIB)], graphics=[], errors=refused)])
    document = collect()
    gpu = document["gpus"][0]
    assert gpu["processes"] == [] and gpu["processes_complete"] is False
    text = render_text(document)
    assert "processes    none" not in text and "NVML listed only some kinds" in text


def test_8_a_mig_gpu_reports_its_slices_processes_and_a_pending_mode_change(fake_nvml):
    refused = {"nvmlDeviceGetComputeRunningProcesses_v3": pynvml.NVML_ERROR_NO_PERMISSION}
    slices = [FakeMig(0, "MIG-a", gpu_instance_id=1), FakeMig(1, "MIG-b", gpu_instance_id=2)]
    fake_nvml(
        [
            FakeGpu(mig=slices, mig_pending=False, compute=[(PID, MIB, 2, 0)], errors=refused),
            FakeGpu(uuid="GPU-2", mig=[], mig_pending=True),
        ]
    )
    document = collect()
    parent, other = document["gpus"]
    # the parent refuses its list (unprivileged); each MIG device still lists its own
    assert [(p["pid"], p["mig_slot"]) for p in parent["processes"]] == [(PID, 1)]
    assert parent["utilization"]["gpu_percent"] is None  # NVML refuses it on a MIG parent
    assert [d["memory"]["used_mib"] for d in parent["mig"]["devices"]] == [100, 100]
    assert (parent["mig"]["pending"], other["mig"]["pending"]) == (False, True)
    assert "turns on at the next GPU reset" in render_text(document)


def test_10_temperature_uses_the_versioned_call_the_old_one_is_deprecated(fake_nvml):
    deprecated = {"nvmlDeviceGetTemperature": pynvml.NVML_ERROR_DEPRECATED}
    fake = fake_nvml([FakeGpu(temperature=61, errors=deprecated)])
    assert collect()["gpus"][0]["temperature_c"] == 61
    assert [s for s, _ in fake.calls if s.startswith("nvmlDeviceGetTemperature")] == [
        "nvmlDeviceGetTemperatureV"
    ]


def test_10_without_the_versioned_call_the_old_one_still_answers(fake_nvml):
    fake_nvml([FakeGpu(temperature=61)], missing={"nvmlDeviceGetTemperatureV"})
    assert collect()["gpus"][0]["temperature_c"] == 61


def test_processes_inside_a_container_say_why_names_are_missing(fake_nvml, tmp_path):
    fake_nvml([FakeGpu(compute=[(PID, MIB), (PID + 1, MIB)], errors={})])
    document = collect(proc_root=tmp_path)  # none of the host's pids exist here
    assert document["note"] == report.HOST_PIDS_NOTE
    assert "note: NVML lists host PIDs" in render_text(document)


def test_not_supported_everywhere_is_quiet_not_an_error(fake_nvml):
    unsupported = {
        symbol: NOT_SUPPORTED for symbol in ("nvmlDeviceGetFanSpeed", "nvmlDeviceGetTotalEccErrors")
    }
    fake_nvml([FakeGpu(errors=unsupported)])
    gpu = collect()["gpus"][0]
    assert gpu["fan_percent"] is None and gpu["ecc_volatile_uncorrected"] is None
    assert gpu["field_errors"] == []
