"""``lab`` / ``python -m lab``: the lab's command line. Stdlib only until a lesson runs.

Each command lives in the module that owns it; none of them imports torch at import time,
so ``lab --help`` and the host-side commands stay light. Only running a lesson loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lab.errors import LabError

# command -> module exposing add_arguments(parser) and run(args) -> int
COMMANDS = {
    "lesson": ("lab.lessons.cli", "run a lesson by number or name (or all of them)"),
    "data": ("lab.data.cli", "download datasets and generate label folders"),
    "gpu": ("lab.gpu.cli", "GPU usage via NVML"),
    "course": (
        "lab.copies",
        "your copies of the lessons and exercises in work/: sync, status, reset",
    ),
    "exercise": ("lab.exercises.cli", "copy a lesson's exercises into work/NN_name/ (yours)"),
    "check": ("lab.exercises.cli", "check your copy of a lesson's exercises"),
    "hint": ("lab.exercises.cli", "the next hint for an exercise, e.g. 07.1"),
    "progress": ("lab.exercises.cli", "lessons run and exercises passed"),
    "grade": (
        "lab.exercises.grade",
        "check every exercise in a work folder, record nothing, report (a teacher's grader)",
    ),
    "doctor": ("lab.host.doctor", "check Docker, Compose, the NVIDIA runtime, driver, ports, disk"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Autograd Lab command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    module = args._module
    if extra and not getattr(module, "ACCEPTS_EXTRA_ARGS", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(module.run(args) or 0)
    except LabError as exc:  # one line, what was wrong and what to do; no traceback
        print(f"lab {args.command}: {exc.message}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
