"""`lab gpu`: selection, JSON, --watch, exit codes; a fake NVML library, the real no-driver path."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest
from support.fake_pynvml import FakeGpu, needs_no_driver

from lab.cli import build_parser
from lab.gpu import cli as gpu_cli

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parents[1]  # tests/: `support` is importable from there


@pytest.fixture
def three_gpus(fake_nvml):
    return fake_nvml(
        [FakeGpu(uuid="GPU-0"), FakeGpu(uuid="GPU-1"), FakeGpu(uuid="GPU-2", lost=True)]
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def gpu(argv: list[str], out=None, **kwargs) -> tuple[int, str, str]:
    """Run `lab gpu ARGV` in-process against whatever NVML library the binding has."""
    args = build_parser().parse_args(["gpu", *argv])
    out, err = out or io.StringIO(), io.StringIO()
    code = gpu_cli.run(args, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_json_report_of_selected_gpus_in_the_order_asked(three_gpus):
    code, out, err = gpu(["--json", "--id", "1,0", "--id", "1"])
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert [g["uuid"] for g in document["gpus"]] == ["GPU-1", "GPU-0"]
    assert document["schema_version"] == 2 and document["cuda_version"] == "13.0"


def test_text_report_of_every_gpu_and_a_lost_one_sets_exit_4(three_gpus):
    code, out, _ = gpu([])
    assert code == gpu_cli.EXIT_GPU_FAILED == 4
    assert "GPU 0  NVIDIA H100" in out and "GPU 1  NVIDIA H100" in out
    assert "GPU 2  LOST: GPU is lost" in out


def test_an_id_no_gpu_has_is_a_usage_error_naming_the_valid_ones(three_gpus):
    code, out, err = gpu(["--id", "0,7"])
    assert (code, out) == (2, "")
    assert err == "lab gpu: no GPU with index 7: this machine has 3 (valid: 0..2)\n"


@pytest.mark.parametrize(
    "argv", [["--id", "x"], ["--id", "-1"], ["--watch", "0"], ["--watch", "soon"]]
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["gpu", *argv])
    assert exit_info.value.code == 2
    assert "lab gpu: error:" in capsys.readouterr().err


class TwoRefreshes:
    """A ``sleep`` for --watch: changes the GPU between frames, then Ctrl-C on the second."""

    def __init__(self, fake) -> None:
        self.fake, self.intervals = fake, []

    def __call__(self, seconds: float) -> None:
        self.intervals.append(seconds)
        if len(self.intervals) == 2:
            raise KeyboardInterrupt
        self.fake.gpus[0].utilization = (3, 2)


def test_watch_refreshes_until_ctrl_c_which_exits_0(fake_nvml):
    fake = fake_nvml([FakeGpu()])
    sleep = TwoRefreshes(fake)
    code, out, err = gpu(["--watch"], sleep=sleep)
    assert (code, err) == (0, "")
    assert sleep.intervals == [2.0, 2.0]
    frames = out.split("every 2 s, Ctrl-C to stop\n")[1:]
    assert len(frames) == 2
    assert "gpu 87 %" in frames[0] and "gpu 3 %" in frames[1]
    assert fake.initialised == 0  # NVML opened once and shut down on Ctrl-C


def test_watch_on_a_terminal_redraws_in_place_without_clearing_the_screen(fake_nvml):
    fake = fake_nvml([FakeGpu()])
    code, out, _ = gpu(["--watch", "1"], out=Terminal(), sleep=TwoRefreshes(fake))
    assert code == 0
    assert "\033[2J" not in out  # clearing first is what makes a refresh flicker
    frames = out.split(gpu_cli.HOME)[1:]
    assert len(frames) == 2 and "gpu 3 %" in frames[1]
    assert all(frame.rstrip("\n").endswith(gpu_cli.ERASE_BELOW) for frame in frames)
    assert all(
        line.endswith(gpu_cli.ERASE_LINE) for line in frames[0].split("\n")[:-1]
    )  # a shorter line leaves nothing of the previous frame behind


def test_watch_json_prints_one_document_per_line(fake_nvml):
    fake = fake_nvml([FakeGpu(), FakeGpu(uuid="GPU-1")])
    sleep = TwoRefreshes(fake)
    code, out, _ = gpu(["--watch", "0.5", "--json", "--id", "0"], sleep=sleep)
    assert code == 0 and sleep.intervals == [0.5, 0.5]
    lines = out.splitlines()
    assert len(lines) == 2
    utilization = [json.loads(line)["gpus"][0]["utilization"]["gpu_percent"] for line in lines]
    assert utilization == [87, 3]
    assert all(len(json.loads(line)["gpus"]) == 1 for line in lines)


WATCH_WITH_FAKE_GPU = """
import sys
sys.path.insert(0, sys.argv[1])
import pynvml
from support.fake_pynvml import FakeGpu, FakeNvmlLibrary
import lab.cli
pynvml.nvmlLib = FakeNvmlLibrary([FakeGpu()])  # as if nvmlInit had loaded the driver's
sys.exit(lab.cli.main(["gpu", "--watch", "0.05"]))
"""


def test_a_real_ctrl_c_ends_watch_cleanly_with_status_0():
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCH_WITH_FAKE_GPU, str(HERE)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        frames = 0
        for line in watcher.stdout:
            frames += "Ctrl-C to stop" in line
            if frames == 2:
                break
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert frames == 2
    assert watcher.returncode == 0 and err == "" and "Traceback" not in out


def test_driver_not_loaded_gives_the_reason_the_advice_and_exit_3(fake_nvml):
    fake_nvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    code, out, err = gpu([])
    assert (code, out) == (gpu_cli.EXIT_NO_GPU, "") and gpu_cli.EXIT_NO_GPU == 3
    assert err.count("\n") == 1
    assert "NVML: Driver Not Loaded" in err and "modprobe nvidia" in err


def test_no_gpu_visible_exit_3_and_json_says_unavailable(fake_nvml):
    fake_nvml([])
    code, out, err = gpu(["--json"])
    assert code == 3
    assert "device count 0" in err and "--gpus all" in err
    document = json.loads(out)
    assert document["available"] is False and document["gpus"] == []
    assert "device count 0" in document["error"]


@needs_no_driver
def test_real_no_driver_path_in_process():
    code, out, err = gpu([])
    assert (code, out) == (3, "")
    assert err.startswith("lab gpu: no usable NVIDIA GPU/driver (NVML: ")
    assert "NVIDIA Container Toolkit" in err and "utility" in err


@needs_no_driver
def test_real_no_driver_path_as_a_command():
    done = subprocess.run(
        [sys.executable, "-m", "lab", "gpu"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "NVML Shared Library Not Found" in done.stderr  # the reason on a driverless box
    assert "install the NVIDIA driver" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "lab", "gpu", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and json.loads(done.stdout)["available"] is False


def test_help_documents_the_exit_codes():
    done = subprocess.run(
        [sys.executable, "-m", "lab", "gpu", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "3  no usable NVIDIA GPU" in done.stdout and "--watch [SECONDS]" in done.stdout
    assert "3  no usable NVIDIA GPU" in gpu_cli.__doc__


def test_host_side_gpu_modules_never_import_torch():
    code = (
        "import sys, lab.gpu, lab.gpu.nvml, lab.gpu.report, lab.gpu.cli, lab.gpu.sampler, "
        "lab.gpu.visible, lab.gpu.render, lab.gpu.procinfo, "
        "lab.host.doctor; lab.gpu.cli.run; "
        "print(sorted(m for m in ('torch', 'tensorboard') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_only_the_nvml_module_imports_pynvml():
    imports = re.compile(r"^\s*(import|from)\s+pynvml\b|import_module\(\s*['\"]pynvml", re.M)
    importers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "lab").rglob("*.py")
        if imports.search(path.read_text())
    )
    assert importers == ["lab/gpu/nvml.py"]
