"""The GPU report as text for people: a header line, then one block per GPU (``n/a`` for what
NVML would not say), in the spirit of gpustat's one-screen view."""

from __future__ import annotations

NA = "n/a"


def _na(value, unit: str = "", fmt: str = "{}") -> str:
    return NA if value is None else fmt.format(value) + unit


def _pair(a, b, unit: str, fmt: str = "{}") -> str:
    return f"{_na(a, fmt=fmt)} / {_na(b, fmt=fmt)}{unit}"


def render_text(document: dict) -> str:
    if not document["available"]:
        return document["error"] + "\n"
    gpus = document["gpus"]
    lines = [
        f"NVIDIA driver {_na(document['driver_version'])}, "
        f"CUDA {_na(document['cuda_version'])} (newest this driver supports), "
        f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} shown"
    ]
    for gpu in gpus:
        lines.append("")
        lines.extend(_gpu_lines(gpu))
    if document.get("note"):
        lines += ["", f"note: {document['note']}"]
    return "\n".join(lines) + "\n"


def _cuda(index) -> str:
    return "not visible to CUDA" if index is None else f"cuda:{index}"


def _gpu_lines(gpu: dict) -> list[str]:
    if gpu["status"] != "ok":
        what = "LOST" if gpu["status"] == "lost" else "ERROR"
        return [
            f"GPU {gpu['index']}  {what}: {gpu['error']} "
            "(check `nvidia-smi`; a lost GPU needs a reset or reboot)"
        ]
    util, memory, power, clocks, pcie = (
        gpu[key] for key in ("utilization", "memory", "power", "clocks", "pcie")
    )
    reasons = gpu["clocks_event_reasons"]
    lines = [
        f"GPU {gpu['index']}  {_na(gpu['name'])}  {_na(gpu['uuid'])}  "
        f"bus {_na(gpu['pci_bus_id'])}  {_cuda(gpu['cuda_index'])}",
        f"  utilization  gpu {_na(util['gpu_percent'], ' %')}"
        f"  memory {_na(util['memory_percent'], ' %')}",
        f"  memory       {_pair(memory['used_mib'], memory['total_mib'], ' MiB')}",
        f"  temperature  {_na(gpu['temperature_c'], ' C')}  fan {_na(gpu['fan_percent'], ' %')}"
        f"  state {_na(gpu['performance_state'])}",
        f"  power        {_pair(power['draw_w'], power['limit_w'], ' W', '{:.1f}')}",
        f"  clocks       sm {_na(clocks['sm_mhz'], ' MHz')}  memory "
        f"{_na(clocks['memory_mhz'], ' MHz')}  held down by: "
        + (NA if reasons is None else ", ".join(reasons) or "nothing"),
        f"  ECC          {_na(gpu['ecc_volatile_uncorrected'])} volatile uncorrected errors",
        f"  PCIe         gen {_na(pcie['generation'])} x{_na(pcie['width'])}  "
        f"tx {_na(pcie['tx_kib_s'], ' KiB/s')}  rx {_na(pcie['rx_kib_s'], ' KiB/s')}",
    ]
    lines += _mig_lines(gpu["mig"])
    lines += _process_lines(gpu)
    if gpu["field_errors"]:
        lines.append(f"  n/a because  {'; '.join(gpu['field_errors'])}")
    return lines


def _mig_lines(mig: dict) -> list[str]:
    if mig["enabled"] is None:
        return []
    line = f"  MIG          {'on' if mig['enabled'] else 'off'}"
    if mig["enabled"]:
        line += f", {len(mig['devices'])} devices"
    if mig["pending"] is not None:
        line += f" (turns {'on' if mig['pending'] else 'off'} at the next GPU reset)"
    lines = [line]
    for dev in mig["devices"]:
        lines.append(
            f"    MIG {dev['slot']}  {_na(dev['name'])}  {_na(dev['uuid'])}  "
            f"GI {_na(dev['gpu_instance_id'])} CI {_na(dev['compute_instance_id'])}  "
            f"memory {_pair(dev['memory']['used_mib'], dev['memory']['total_mib'], ' MiB')}  "
            f"{_cuda(dev['cuda_index'])}"
        )
    return lines


def _process_lines(gpu: dict) -> list[str]:
    processes = gpu["processes"]
    if processes is None:
        return [f"  processes    {NA} (NVML would not list them)"]
    partial = "" if gpu["processes_complete"] else " (NVML listed only some kinds)"
    if not processes:
        return [f"  processes    {'none' if not partial else NA}{partial}"]
    lines = [
        f"  processes    {'PID':>8}  {'USER':<10} {'TYPE':<4} {'MIG':>3}  {'GPU MEM':>10}  "
        f"{'SM':>4}  COMMAND{partial}"
    ]
    for proc in processes:
        command = proc["command"] or proc["name"]
        lines.append(
            f"               {proc['pid']:>8}  {_na(proc['user']):<10} {proc['type']:<4} "
            f"{_na(proc['mig_slot']):>3}  {_na(proc['used_memory_mib'], ' MiB'):>10}  "
            f"{_na(proc['sm_percent'], '%'):>4}  {_na(command)}"
        )
    return lines
