"""`lab data download` (invoke download-data) and `lab data labels` (invoke generate-labels).

Host side: stdlib + tqdm, never torch. Errors are one line on stderr with a non-zero exit:
1 when a download failed, 2 for bad input (unknown dataset, broken registry).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from lab.data.registry import dataset_choices
from lab.paths import data_dir as default_data_dir


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="datasets root (default: $LAB_DATA_DIR or ./data)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    download = sub.add_parser(
        "download",
        help="download and verify datasets (resumable, parallel)",
        description="Download datasets into the layout torchvision reads; verified, resumable.",
    )
    download.add_argument(
        "--dataset",
        default="all",
        help=f"{dataset_choices()} (default: all; --registry may name others)",
    )
    _data_dir_option(download)
    download.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry TOML to use instead of the built-in one (e.g. an institution's mirror)",
    )
    download.add_argument(
        "--jobs",
        type=int,
        default=8,
        help="connections at once, across files and byte ranges (default: 8)",
    )
    download.add_argument("--quiet", action="store_true", help="print nothing but errors")
    download.add_argument(
        "--json", action="store_true", help="print a JSON summary on stdout (no progress bar)"
    )
    labels = sub.add_parser(
        "labels",
        help="build hymenoptera_labeled/ (image + label folders) from hymenoptera",
        description="Build <data>/hymenoptera_labeled/{train,val}/{cls_image,cls_label}.",
    )
    _data_dir_option(labels)
    labels.add_argument("--quiet", action="store_true", help="print nothing but errors")
    labels.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def _fail(message: str, code: int) -> int:
    print(f"lab data download: {message}", file=sys.stderr)
    return code


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def _print_summary(summary: dict, out=None) -> None:
    out = out or sys.stdout
    for name, ds in summary["datasets"].items():
        fetched = sum(f["fetched"] for f in ds["files"])
        count = len(ds["files"])
        extra = f", {_size(fetched)} fetched" if fetched else ""
        print(
            f"{name}: {ds['status']} ({count} file{'s' * (count != 1)}{extra}) -> {ds['path']}",
            file=out,
        )
    if summary["ok"] and summary["requests"] == 0:
        print(
            f"everything present and verified in {summary['data_dir']}; "
            "nothing downloaded (0 requests)"
        )
    elif summary["ok"]:
        print(
            f"done in {summary['seconds']:.1f} s: {summary['requests']} requests, "
            f"{_size(summary['bytes_downloaded'])} downloaded"
        )


def run_download(args: argparse.Namespace) -> int:
    from lab.data.download import Run
    from lab.data.progress import Bar, Quiet
    from lab.data.registry import RegistryError, load

    try:
        registry = load(args.registry)
    except RegistryError as exc:
        return _fail(f"{exc}; pass --registry a valid file or leave it out for the built-in one", 2)
    known = list(registry.datasets)
    names = known if args.dataset == "all" else [args.dataset]
    if names[0] not in registry.datasets:
        return _fail(f"unknown dataset {args.dataset!r}; choose one of {', '.join(known)}, all", 2)
    if args.jobs < 1:
        return _fail(f"--jobs must be at least 1 (got {args.jobs})", 2)
    root = args.data_dir if args.data_dir is not None else default_data_dir()
    reporter = Quiet() if (args.quiet or args.json) else Bar()
    try:
        summary = Run(registry, root, args.jobs, reporter).run(names)
    except OSError as exc:
        return _fail(write_problem(root, exc), 1)
    except KeyboardInterrupt:
        return _fail("interrupted; what arrived is kept, rerun the same command to resume", 130)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        # A failed run reports on stderr only: its summary and error lines then come out in
        # this order, whole lines, even where a reader interleaves two streams (docker exec).
        _print_summary(summary, sys.stdout if summary["ok"] else sys.stderr)
    sys.stdout.flush()
    for error in summary["errors"]:
        sys.stderr.write(f"lab data download: {error}\n")
    sys.stderr.flush()
    return 0 if summary["ok"] else 1


def write_problem(root: Path, exc: OSError) -> str:
    """One line naming why ``root`` could not be written, and the fix for that cause."""
    where = exc.filename or root
    if exc.errno in (errno.EACCES, errno.EPERM) and not hasattr(os, "getuid"):  # Windows
        return f"cannot write {where}: access denied; fix its permissions or use another --data-dir"
    if exc.errno in (errno.EACCES, errno.EPERM):
        owner = _owner(Path(where))
        me = f"{os.getuid()}:{os.getgid()}"
        fix = (
            "restart the lab (`invoke down && invoke up`): it hands data/ to its user"
            if os.environ.get("LAB_CONTAINER_USER")
            else f"`sudo chown -R {me} {Path(root).resolve()}`"
        )
        return (
            f"cannot write {where}: permission denied (it belongs to uid {owner}, this runs "
            f"as uid {me.split(':')[0]}); {fix}, or choose another --data-dir"
        )
    if exc.errno == errno.EROFS:
        return f"cannot write {where}: read-only file system; choose another --data-dir"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {where}: no space left; free some space or choose another --data-dir"
    return f"cannot write {where} ({exc.strerror or exc}); choose another --data-dir"


def _owner(path: Path) -> str:
    """The uid owning ``path``, or its nearest existing parent."""
    for candidate in (path, *path.parents):
        try:
            return str(candidate.stat().st_uid)
        except OSError:
            continue
    return "?"


def run(args: argparse.Namespace) -> int:
    if args.data_command == "download":
        return run_download(args)
    from lab.data.labels import main as labels_main

    return labels_main(args.data_dir, quiet=args.quiet, as_json=args.json)
