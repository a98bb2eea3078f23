"""``lab gpu`` (``invoke gpu``): what each NVIDIA GPU is doing, via NVML. Never imports torch.

Exit status:
  0  the report was printed (also when Ctrl-C ends ``--watch``)
  2  bad arguments, e.g. an ``--id`` that no GPU has
  3  no usable NVIDIA GPU: no driver / NVML library, driver not loaded, or no GPU visible
  4  a selected GPU is lost or did not answer (it is still in the report); a single
     field NVML will not give is n/a, not a failure
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from lab.gpu import report
from lab.gpu.nvml import Nvml, NvmlUnavailable, open_nvml
from lab.gpu.render import render_text

EXIT_OK, EXIT_USAGE, EXIT_NO_GPU, EXIT_GPU_FAILED = 0, 2, 3, 4
DEFAULT_WATCH_SECONDS = 2.0
# Redraw in place without clearing first (a cleared screen flickers): cursor home, each line
# ends by erasing what an older, longer line left, and the rest of the screen is erased last.
HOME, ERASE_LINE, ERASE_BELOW = "\033[H", "\033[K", "\033[J"

EPILOG = """\
exit status:
  0  report printed (also when Ctrl-C ends --watch)
  2  bad arguments (e.g. an --id no GPU has)
  3  no usable NVIDIA GPU: no driver / NVML library, driver not loaded, or no GPU
     visible (install the NVIDIA driver; in Docker, the NVIDIA Container Toolkit and
     NVIDIA_DRIVER_CAPABILITIES including `utility`)
  4  a selected GPU is lost or did not answer (still reported)

--json prints one document (schema_version, driver_version, cuda_version, gpus[...]);
with --watch, one compact JSON document per line per refresh.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the refresh interval must be > 0, got {text!r}")
    return value


def _indices(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--id takes GPU indices such as 0 or 0,1, got {text!r}"
        ) from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"--id takes GPU indices >= 0, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON (stable schema, for scripts)"
    )
    parser.add_argument(
        "--watch",
        nargs="?",
        type=_seconds,
        const=DEFAULT_WATCH_SECONDS,
        default=None,
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_WATCH_SECONDS:g}) until Ctrl-C",
    )
    parser.add_argument(
        "--id",
        dest="ids",
        action="append",
        type=_indices,
        metavar="INDEX",
        help="only these GPUs (repeat, or a comma list: --id 0,2)",
    )


def _selected(args: argparse.Namespace, nvml: Nvml) -> list[int]:
    """The GPU indices asked for, in order, each once; ValueError names a missing one."""
    count = nvml.device_count()
    if not args.ids:
        return list(range(count))
    wanted = list(dict.fromkeys(index for group in args.ids for index in group))
    missing = [index for index in wanted if index >= count]
    if missing:
        raise ValueError(
            f"no GPU with index {', '.join(map(str, missing))}: this machine has "
            f"{count} (valid: 0..{count - 1})"
        )
    return wanted


def run(
    args: argparse.Namespace,
    *,
    module=None,
    sleep: Callable[[float], None] = time.sleep,
    out=None,
    err=None,
) -> int:
    """``module`` swaps in another pynvml (tests); ``sleep`` paces ``--watch``."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        nvml = open_nvml(module)
    except NvmlUnavailable as exc:
        print(f"lab gpu: {exc}", file=err)
        if args.json:
            print(report.to_json(report.unavailable(exc)), file=out)
        return EXIT_NO_GPU
    with nvml:
        try:
            indices = _selected(args, nvml)
        except ValueError as exc:
            print(f"lab gpu: {exc}", file=err)
            return EXIT_USAGE
        if args.watch is None:
            document = report.collect(nvml, indices)
            out.write(report.to_json(document) + "\n" if args.json else render_text(document))
            failed = any(gpu["status"] != "ok" for gpu in document["gpus"])
            return EXIT_GPU_FAILED if failed else EXIT_OK
        return watch(nvml, indices, args.watch, as_json=args.json, sleep=sleep, out=out)


def watch(
    nvml: Nvml,
    indices: list[int],
    seconds: float,
    *,
    as_json: bool,
    sleep: Callable[[float], None],
    out,
) -> int:
    """Refresh until Ctrl-C, which ends it cleanly with status 0."""
    clear = not as_json and out.isatty()
    try:
        while True:
            document = report.collect(nvml, indices)
            if as_json:
                out.write(report.to_json(document, indent=None) + "\n")
            else:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                frame = f"{stamp}  every {seconds:g} s, Ctrl-C to stop\n" + render_text(document)
                if clear:
                    frame = HOME + frame.replace("\n", ERASE_LINE + "\n") + ERASE_BELOW
                out.write(frame if clear else frame + "\n")
            out.flush()
            sleep(seconds)
    except KeyboardInterrupt:
        if clear:
            out.write("\n")
        return EXIT_OK
